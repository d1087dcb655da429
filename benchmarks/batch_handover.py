"""What a DataLoader worker pays to hand a batch of clips to the main process, against a plain copy of the same bytes.

    python benchmarks/batch_handover.py [--batch 8] [--frames 8] [--size 224]

A worker collates its clips into a new shared-memory segment (``default_collate`` and ``collate_clips`` alike), so
that the main process maps the batch instead of receiving a copy. The segment is new for every batch: creating it,
and the first touch of each of its pages, is work a copy into memory already mapped does not do. This command times,
on one thread, stacking ``--batch`` uint8 clips of ``(frames, size, size, 3)`` into (1) a tensor reused across
batches (the bare copy), (2) fresh private memory, (3) a fresh shared-memory segment (the worker's collation), and
(4) creating and dropping that segment alone. Prints milliseconds per batch and per clip; the figure quoted in
benchmarks/RESULTS.md comes from this command.
"""

from __future__ import annotations

import argparse
import json
import time

import torch


def per_call_ms(fn, seconds: float = 2.0, rounds: int = 5) -> float:
    """Best, over ``rounds``, of the mean time of ``fn`` over at least ``seconds``."""
    fn()
    best = float("inf")
    for _ in range(rounds):
        start, calls = time.perf_counter(), 0
        while time.perf_counter() - start < seconds:
            fn()
            calls += 1
        best = min(best, (time.perf_counter() - start) / calls * 1e3)
    return best


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--frames", type=int, default=8)
    p.add_argument("--size", type=int, default=224)
    args = p.parse_args()
    torch.set_num_threads(1)  # as in a DataLoader worker
    shape = (args.frames, args.size, args.size, 3)
    clips = [torch.randint(0, 256, shape, dtype=torch.uint8) for _ in range(args.batch)]
    reused = torch.empty(args.batch, *clips[0].shape, dtype=torch.uint8)

    def shared() -> torch.Tensor:
        storage = clips[0]._typed_storage()._new_shared(args.batch * clips[0].numel())  # as default_collate does
        return clips[0].new(storage).view(args.batch, *clips[0].shape)

    figures = {
        "copy into reused memory": per_call_ms(lambda: torch.stack(clips, out=reused)),
        "copy into fresh private memory": per_call_ms(lambda: torch.stack(clips)),
        "copy into a fresh shared segment (a worker's collation)": per_call_ms(
            lambda: torch.stack(clips, out=shared())
        ),
        "create and drop the shared segment alone": per_call_ms(shared),
    }
    mb = args.batch * clips[0].numel() / 2**20
    print(f"batch of {args.batch} clips of {tuple(clips[0].shape)} uint8: {mb:.1f} MiB")
    for name, ms in figures.items():
        print(f"{name:58s} {ms:7.2f} ms a batch, {ms / args.batch:6.3f} ms a clip")
    print(json.dumps({"batch": args.batch, "mib": round(mb, 1), **{k: round(v, 3) for k, v in figures.items()}}))


if __name__ == "__main__":
    main()
