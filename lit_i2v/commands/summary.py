"""Parameters, FLOPs per view, frames and views of a config's model, built where its weights may be absent.

Counting parameters and FLOPs needs shapes, not values: on the meta device a ViT-L recipe is summarised in a second,
and attention inside ``nn.MultiheadAttention`` is counted as its matrix products (the CPU's fused kernel is
invisible to the FLOP counter). Weights and class-name files that are not on this machine are replaced, with a
warning, by random weights and placeholder names: counts do not depend on them.
"""

from __future__ import annotations

import argparse
import json
import os
import warnings
from typing import Any

import torch
from jsonargparse import Namespace

from lit_i2v.cli import LitI2VCLI
from lit_i2v.commands import add_config_argument, config_args

OVERRIDES = True


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_argument(parser)
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--merged", action="store_true", help="merge a mergeable strategy into the weights first")
    parser.add_argument(
        "--device", default="meta", help="where to build the model: meta (shapes only: no memory, no time) or cpu"
    )


def run(args: argparse.Namespace, overrides: list[str]) -> int:
    from lit_i2v.summary import format_summary, summarize

    with torch.device(args.device):
        cli = _SummaryCLI(args=config_args(args, overrides), run=False, only=("model",))
        if args.merged:
            if not cli.model.transfer.mergeable:
                raise ValueError(f"--merged: {type(cli.model.transfer).__name__} cannot be merged into the weights")
            cli.model.transfer.merge(cli.model.backbone)
        result = summarize(cli.model, cli.config.get("data"))
    print(json.dumps(result) if args.json else format_summary(result))
    return 0


def make_weights_optional(node: Any) -> None:
    """A backbone whose weights are not on this machine is built randomly, with a warning."""
    from lit_i2v.backbones.weights import is_available

    if not isinstance(node, Namespace):
        return
    init = node.get("init_args")
    configured = isinstance(init, Namespace) and "arch" in init and init.get("pretrained")
    if configured and not is_available(init.arch, init.pretrained):
        warnings.warn(
            f"weights {init.pretrained!r} are not on this machine: summarising a randomly initialised {init.arch}",
            stacklevel=2,
        )
        init.pretrained = None
    checkpoint = init.get("checkpoint") if isinstance(init, Namespace) else None
    if isinstance(checkpoint, str) and not os.path.exists(checkpoint):  # an extra model's weights file
        warnings.warn(
            f"weights {checkpoint!r} are not on this machine: summarising a randomly initialised model", stacklevel=2
        )
        init.checkpoint = None
        if "pretrained" in init:
            init.pretrained = False
    for value in vars(init if isinstance(init, Namespace) else node).values():
        make_weights_optional(value)


class _SummaryCLI(LitI2VCLI):
    def before_instantiate_classes(self) -> None:
        super().before_instantiate_classes()
        make_weights_optional(self.config.model)
        init = self.config.model.init_args
        names = init.get("class_names")
        if isinstance(names, str) and not os.path.exists(names) and init.get("num_classes"):
            # Counts do not depend on the names: summarise with placeholders rather than fail.
            warnings.warn(f"class names file {names} is absent: summarising with placeholder names", stacklevel=2)
            init.class_names = [f"class {i}" for i in range(init.num_classes)]
