"""Pack a config's splits into tar shards (pre-decoded JPEG frames or video files); train from them with
data.shards=DIR (``lit_i2v.data.shards``)."""

from __future__ import annotations

import argparse

from lit_i2v.cli import LitI2VCLI
from lit_i2v.commands import add_config_argument, config_args

OVERRIDES = True


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_argument(parser)
    parser.add_argument("--split", choices=["train", "val", "test"], action="append", help="default: every split set")
    parser.add_argument("--out", required=True, help="shard folder")
    parser.add_argument("--mode", choices=["frames", "video"], default="frames")
    parser.add_argument("--short-side", type=int, default=256, help="frames mode: resize the short side to this (px)")
    parser.add_argument("--frames", type=int, default=0, help="frames mode: frames kept per video, uniform (0: all)")
    parser.add_argument("--quality", type=int, default=90, help="frames mode: JPEG quality")
    parser.add_argument("--samples-per-shard", type=int, default=256)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0, help="order of the training videos across shards")


def run(args: argparse.Namespace, overrides: list[str]) -> int:
    from lit_i2v.data import Labels
    from lit_i2v.data.shards import ShardSpec, write_shards

    dm = LitI2VCLI(args=config_args(args, overrides), run=False, only=("data",)).datamodule
    annotations = getattr(dm, "annotations", None)
    if not isinstance(annotations, Labels):
        what = type(annotations).__name__ if annotations is not None else type(dm).__name__
        raise ValueError(f"shard: shards hold labelled clips (annotations: Labels); {what} cannot be read from them")
    if hasattr(dm, "prepare_data"):
        dm.prepare_data()  # a synthetic set is written on first use
    splits = args.split or [s for s in ("train", "val", "test") if dm.files.get(s)]
    if "test" in splits and dm.files["test"] == dm.files["val"] and "val" in splits:
        splits.remove("test")  # the test split is the validation split: readers fall back to it
    spec = ShardSpec(args.mode, args.short_side, args.frames, args.quality, args.samples_per_shard)
    index = write_shards({s: dm.records(s) for s in splits}, args.out, spec, dm.class_names(), args.workers,
                         args.seed, dm.backend)  # fmt: skip
    failed = 0
    for split in splits:
        info = index["splits"][split]
        failed += len(info["failed"])
        print(f"{split}: {info['samples']} of {info['videos']} videos in {len(info['shards'])} shards")
        for failure in info["failed"]:
            print(f"  failed: {failure}")
    print(f"train from them with --data.init_args.shards={args.out}")
    return 1 if failed else 0
