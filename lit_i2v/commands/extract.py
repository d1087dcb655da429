"""Embed every video (the task's frozen CLIP, model.init_args.extractor.rate frames a second) and query of a grounding
config's splits into data.features (resumable)."""

from __future__ import annotations

import argparse

import torch

from lit_i2v.cli import LitI2VCLI
from lit_i2v.commands import add_config_argument, config_args

OVERRIDES = True


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_argument(parser)
    parser.add_argument("--split", choices=["train", "val", "test"], action="append", help="default: every split set")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")


def run(args: argparse.Namespace, overrides: list[str]) -> int:
    from lit_i2v.extract import extract_for

    cli = LitI2VCLI(args=config_args(args, overrides), run=False, only=("model", "data"))
    dm, extractor = cli.datamodule, getattr(cli.model, "extractor", None)
    if extractor is None or not hasattr(dm, "features"):
        raise ValueError(
            f"extract: {type(cli.model).__name__} and {type(dm).__name__} train on pixels; features are extracted for "
            "tasks that train on them (TemporalGrounding with a GroundingDataModule)"
        )
    dm.prepare_data()  # a synthetic set is written first
    index = extract_for(dm, extractor, args.split, args.device)
    print(f"{index['videos']} videos and their queries embedded into {dm.features} ({index['arch']}, "
          f"{index['rate']} frames/s, {index['dim']}-d); {len(index['failed'])} failed")  # fmt: skip
    for failure in index["failed"]:
        print(f"  failed: {failure}")
    return 1 if index["failed"] else 0
