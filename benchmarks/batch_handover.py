"""What a DataLoader worker pays to hand a batch of clips to the main process, against a plain copy of the same bytes.

    python benchmarks/batch_handover.py [--batch 8] [--frames 8] [--size 224]

A worker collates its clips into shared memory, so that the main process maps the batch instead of receiving a copy.
PyTorch's ``default_collate`` writes every batch into a new segment: creating it, and the first touch of each of its
pages, is work a copy into memory already mapped does not do; and each small tensor of the batch (labels, indices)
gets a segment of its own and a file-descriptor hand-over. ``collate_clips`` reuses a worker's segments once the main
process is done with them, the main process keeps their mappings, and small tensors travel by value
(``lit_i2v/data/loading/handover.py``).

On one thread, this command times stacking ``--batch`` uint8 clips of ``(frames, size, size, 3)`` into (1) a tensor
reused across batches (the bare copy), (2) fresh private memory, (3) a fresh shared-memory segment (what
``default_collate`` does in a worker), and (4) creating and dropping that segment alone. Then, end to end, batches of
the same clips with the keys of a training batch through one persistent DataLoader worker, collated by (5)
``default_collate`` (given planar clips, so that it copies blocks too rather than transposing), (6)
``collate_clips`` and (7) ``collate_clips`` given the clips as training crops that the device would resize (packed,
not stacked: the training path), and (8) as (7) but with the worker's segment sent along with every batch, as
PyTorch sends a shared tensor (a file descriptor the main process fetches and maps afresh), rather than once. The
worker does nothing but collate and send, so these are the rates at which each hand-over alone could feed a run; for
these four, also the CPU time a batch of the worker and of the main process.
Prints milliseconds per batch and per clip; the figures quoted in benchmarks/RESULTS.md come from this command.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import time
from unittest import mock

import torch
from torch.utils.data import DataLoader, Dataset, default_collate


class SameClip(Dataset):
    """One clip and the other keys of a training sample, over and over: only collation and transfer cost anything.
    The clip is channels-last as decoded, or planar for ``default_collate``, which would otherwise transpose it; or,
    ``crops``, a training crop of the same size that the device would resize (``ClipCrop``, packed by the
    collation)."""

    def __init__(self, shape: tuple[int, ...], length: int, channels_last: bool, crops: bool = False) -> None:
        clip = torch.randint(0, 256, shape, dtype=torch.uint8).movedim(-1, -3)  # (T, 3, S, S), memory (T, S, S, 3)
        self.clip = clip if channels_last else clip.contiguous()
        if crops:
            from lit_i2v.data.video.transforms import ClipCrop

            self.clip = ClipCrop(list(clip.movedim(-3, -1)), flip=False, size=shape[1])
        self.length = length

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> dict:
        return {"video": self.clip, "label": index % 400, "index": index, "video_id": str(index), "valid": True,
                "skipped": 0}  # fmt: skip


def cpu_seconds(pid: int) -> float:
    """User and system CPU time of process ``pid`` so far (all its threads)."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def send_every_time(buffers, index: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``WorkerBuffers.first_send`` as if the main process kept no mappings: the segment and flags every time."""
    return buffers.segments[index], buffers.flags


def through_a_worker(
    collate, shape: tuple[int, ...], batch: int, channels_last: bool, crops: bool = False, fd_per_batch: bool = False
) -> dict[str, float]:
    """Milliseconds a batch through one persistent worker (best of 5 passes of 64 batches, after a warm-up pass),
    and the CPU milliseconds a batch of each side over the 5 passes: the worker's (collating, pickling, sending) and
    the main process's (receiving, unpickling, mapping, releasing). ``fd_per_batch``: the worker sends its segment
    with every batch, as PyTorch sends a shared tensor (a file descriptor, mapped afresh by the main process), rather
    than once."""
    loader = DataLoader(SameClip(shape, 64 * batch, channels_last, crops), batch_size=batch, num_workers=1,
                        persistent_workers=True, collate_fn=collate)  # fmt: skip
    from lit_i2v.data.loading.handover import WorkerBuffers

    patched = mock.patch.object(WorkerBuffers, "first_send", send_every_time)
    with patched if fd_per_batch else contextlib.nullcontext():  # the worker forks here and keeps what it forked with
        iter(loader)
    best, worker_cpu, main_cpu = float("inf"), 0.0, 0.0
    for rounds in range(6):
        iterator = iter(loader)
        worker, main = cpu_seconds(iterator._workers[0].pid), time.process_time()
        start = time.perf_counter()
        for _ in iterator:
            pass
        if rounds:
            best = min(best, (time.perf_counter() - start) / len(loader) * 1e3)
            worker_cpu += cpu_seconds(iterator._workers[0].pid) - worker
            main_cpu += time.process_time() - main
    batches = 5 * len(loader)
    return {"ms": best, "worker cpu ms": worker_cpu / batches * 1e3, "main cpu ms": main_cpu / batches * 1e3}


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
        "copy into a fresh shared segment (default_collate's)": per_call_ms(lambda: torch.stack(clips, out=shared())),
        "create and drop the shared segment alone": per_call_ms(shared),
    }
    from lit_i2v.data.loading.dataset import collate_clips

    workers = {
        "through a worker, default_collate (planar clips)": through_a_worker(default_collate, shape, args.batch, False),
        "through a worker, collate_clips": through_a_worker(collate_clips, shape, args.batch, True),
        "through a worker, collate_clips, training crops": through_a_worker(
            collate_clips, shape, args.batch, True, crops=True
        ),
        "the same, the segment sent with every batch": through_a_worker(
            collate_clips, shape, args.batch, True, crops=True, fd_per_batch=True
        ),
    }
    mb = args.batch * clips[0].numel() / 2**20
    print(f"batch of {args.batch} clips of {tuple(clips[0].shape)} uint8: {mb:.1f} MiB")
    for name, ms in figures.items():
        print(f"{name:58s} {ms:7.2f} ms a batch, {ms / args.batch:6.3f} ms a clip")
    for name, times in workers.items():
        print(f"{name:58s} {times['ms']:7.2f} ms a batch, {times['ms'] / args.batch:6.3f} ms a clip; CPU a batch: "
              f"worker {times['worker cpu ms']:.2f} ms, main process {times['main cpu ms']:.2f} ms")  # fmt: skip
    rounded = {k: round(v, 3) for k, v in figures.items()}
    rounded.update({k: {name: round(v, 3) for name, v in times.items()} for k, times in workers.items()})
    print(json.dumps({"batch": args.batch, "mib": round(mb, 1), **rounded}))


if __name__ == "__main__":
    main()
