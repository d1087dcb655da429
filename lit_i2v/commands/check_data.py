"""Decode every video of a split and check its label; name every bad one (exit status 1 if any).

Videos are missing, undecodable or damaged (frames decoded of frames declared); with the model's ``num_classes``
every label outside the classes is listed with its file and line (``lit_i2v.check_data``).
"""

from __future__ import annotations

import argparse
import json

from lit_i2v.cli import LitI2VCLI
from lit_i2v.commands import add_config_argument, config_args

OVERRIDES = True


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_argument(parser)
    parser.add_argument("--split", choices=["train", "val", "test"], default="train")
    parser.add_argument("--workers", type=int, default=2, help="decoding processes")
    parser.add_argument("--json", action="store_true")


class _DataCheckCLI(LitI2VCLI):
    labels_from_model = False  # check-data reports every bad label itself, rather than the data failing at the first


def run(args: argparse.Namespace, overrides: list[str]) -> int:
    from lit_i2v.check_data import check_split, format_report

    cli = _DataCheckCLI(args=config_args(args, overrides), run=False, only=("data",))
    model = cli.config.get("model")
    num_classes = (model.get("init_args") or {}).get("num_classes") if model is not None else None
    report = check_split(cli.datamodule, args.split, args.workers, num_classes)
    print(json.dumps(report) if args.json else format_report(report))
    return 1 if report["missing"] or report["undecodable"] or report["bad_labels"] else 0
