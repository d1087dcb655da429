"""Re-encode a split's videos (short side, short keyframe interval, no B-frames) under --out.

The work is ``lit_i2v.preprocess``'s: parallel, resumable, failures listed; point data.root at --out afterwards.
"""

from __future__ import annotations

import argparse

from lit_i2v.cli import LitI2VCLI
from lit_i2v.commands import add_config_argument, config_args

OVERRIDES = True


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_argument(parser)
    parser.add_argument("--split", choices=["train", "val", "test"], action="append", help="default: every split set")
    parser.add_argument("--out", required=True, help="output folder: the videos keep their paths relative to data.root")
    parser.add_argument("--short-side", type=int, default=320)
    parser.add_argument("--gop", type=int, default=8, help="frames between keyframes")
    parser.add_argument("--workers", type=int, default=2)


def run(args: argparse.Namespace, overrides: list[str]) -> int:
    from lit_i2v.preprocess import preprocess_paths

    dm = LitI2VCLI(args=config_args(args, overrides), run=False, only=("data",)).datamodule
    splits = args.split or [s for s in ("train", "val", "test") if dm.files.get(s)]
    paths = sorted({r.path for s in splits for r in dm.records(s) if r.num_frames is None})
    report = preprocess_paths(paths, dm.root, args.out, args.short_side, args.gop, args.workers)
    print(
        f"{report['written']} written, {report['skipped']} already there, {len(report['failed'])} failed; "
        f"point data.root at {args.out}"
    )
    for failure in report["failed"]:
        print(f"  failed: {failure}")
    return 1 if report["failed"] else 0
