"""Write the synthetic datasets: motion videos in SSv2 format (and captions, questions), or the grounding set."""

from __future__ import annotations

import argparse

DEFAULT_ROOT, DEFAULT_FRAMES = "data/synthetic-motion", 24


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--root", default=DEFAULT_ROOT)
    parser.add_argument("--num-train", type=int, default=480)
    parser.add_argument("--num-val", type=int, default=160)
    parser.add_argument("--num-test", type=int, default=160)
    parser.add_argument("--size", type=int, default=64, help="frame side in pixels")
    parser.add_argument("--frames", type=int, default=DEFAULT_FRAMES)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--captions", action="store_true", help="also captions for retrieval (captions_<split>.json)")
    parser.add_argument("--questions", action="store_true", help="also questions for video QA (qa_/mc_<split>.json)")
    parser.add_argument(
        "--grounding", action="store_true", help="instead: the grounding set (two timed events a video; Charades-STA)"
    )


def run(args: argparse.Namespace, overrides: list[str]) -> int:
    from lit_i2v.data.synthetic import EventSpec, SynthSpec, synthesize, write_captions, write_grounding, write_qa

    counts = (args.num_train, args.num_val, args.num_test)
    if args.grounding:
        root = "data/synthetic-grounding" if args.root == DEFAULT_ROOT else args.root
        frames = 64 if args.frames == DEFAULT_FRAMES else args.frames
        write_grounding(root, counts, EventSpec(size=args.size, frames=frames), seed=args.seed)
        print(f"synthetic grounding dataset at {root} (Charades-STA format: charades_sta_<split>.txt, videos/)")
        return 0
    root = synthesize(args.root, *counts, SynthSpec(size=args.size, frames=args.frames), seed=args.seed)
    written = "SSv2 format: train.json, validation.json, test.json, labels.json"
    if args.captions:
        write_captions(root)
        written += "; captions_<split>.json"
    if args.questions:
        write_qa(root, seed=args.seed)
        written += "; qa_<split>.json, mc_<split>.json, answers.json"
    print(f"synthetic motion dataset at {root} ({written})")
    return 0
