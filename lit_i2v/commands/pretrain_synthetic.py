"""Train a tiny CLIP (or SigLIP) on synthetic image-caption pairs; saved as the `synthetic` weights tag."""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--arch", default="ViT-S-8-tiny")
    parser.add_argument("--steps", type=int, default=500)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--seed", type=int, default=0)
    where = "the cache, as <arch>.synthetic.pt, or the folder <arch>.synthetic for a SigLIP arch"
    parser.add_argument("--out", default=None, help=f"where to write (default: {where})")


def run(args: argparse.Namespace, overrides: list[str]) -> int:
    from lit_i2v.pretrain import pretrain

    path, figures = pretrain(args.arch, args.steps, args.batch_size, args.lr, args.seed, args.out)
    print(f"wrote {path} (open_clip format): {figures}")
    return 0
