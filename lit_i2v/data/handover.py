"""Shared memory that DataLoader workers reuse to hand batches of clips to the main process.

A worker passes a batch's tensors to the main process through shared memory: the main process maps the worker's
pages instead of receiving a copy. PyTorch's collation writes every batch into a *new* shared-memory segment, and
creating a segment and touching each of its pages for the first time costs far more than filling pages already in
use; every shared tensor also costs a file-descriptor hand-over between the processes, so the small ones (labels,
indices) travel inside the pickle here (``Inline``). On our 2-core CPU a batch of eight 8x224x224 clips took 9.0 ms
through a worker with ``default_collate`` and 1.7 ms this way (``benchmarks/batch_handover.py``); with shards, the
old hand-over took about a quarter of a worker's time.

``WorkerBuffers`` (one per worker process) keeps its segments and fills one again once the main process has let go
of the batch it last carried. A batch leaves the worker as a ``Handover``; the main process unpickles it into a plain
tensor and ties a finalizer to that tensor's storage. When the last view of the storage dies (the training step is
done with the batch, the pin-memory thread has copied it to pinned memory, or a batch of an abandoned epoch is
dropped), the finalizer clears the segment's flag in a small array shared with the worker. Nothing ever waits for a
release: a worker without a free segment of the right size creates one, as PyTorch would, so a main process that
keeps batches costs memory, never a deadlock.
"""

from __future__ import annotations

import os
import weakref

import torch
from torch import Tensor

SEGMENTS = 32  # segments a worker tracks; past this many batches held by the main process, a new one each batch


class Handover:
    """A batch tensor in a worker's segment ``index`` of ``flags`` (index -1: a segment nobody reuses); it unpickles
    into the tensor in the main process. Assign ``tensor`` a view of itself to send the view."""

    def __init__(self, tensor: Tensor, flags: Tensor, index: int) -> None:
        self.tensor, self.flags, self.index = tensor, flags, index

    def __reduce__(self):
        return _receive, (self.tensor, self.flags, self.index)


def _receive(tensor: Tensor, flags: Tensor, index: int) -> Tensor:
    """In the main process: the batch, whose segment returns to its worker when the batch's storage is freed."""
    if index >= 0:
        weakref.finalize(tensor.untyped_storage(), _release, flags, index).atexit = False
    return tensor


def _release(flags: Tensor, index: int) -> None:
    # The storage is gone, so no reads of the segment remain to be ordered before this store.
    flags[index] = 0


class WorkerBuffers:
    """The reusable shared-memory segments of one worker process; ``flags[i]`` is 1 while the main process may read
    segment ``i``."""

    def __init__(self, segments: int = SEGMENTS) -> None:
        self.flags = torch.zeros(segments, dtype=torch.uint8).share_memory_()
        self.segments: list[Tensor | None] = [None] * segments  # flat uint8, in shared memory
        self.created = 0  # segments made so far, the reused ones once each (read by tests and benchmarks)

    def empty(self, shape: tuple[int, ...], dtype: torch.dtype, headroom: float = 0.0) -> Handover:
        """A ``shape`` tensor to fill and send: in the smallest free segment it fits in when there is one, else in a
        new one, ``headroom`` larger (for batches whose size varies), that replaces a free segment too small; in a
        segment of its own when all are held."""
        nbytes = torch.Size(shape).numel() * dtype.itemsize
        busy = self.flags.tolist()
        free = [i for i, flag in enumerate(busy) if not flag]
        if not free:
            return Handover(_new_shared(nbytes).view(dtype).view(shape), self.flags, -1)
        fits = [i for i in free if self.segments[i] is not None and self.segments[i].numel() >= nbytes]
        if fits:
            index = min(fits, key=lambda i: self.segments[i].numel())
        else:
            index = next((i for i in free if self.segments[i] is None), free[0])
            self.segments[index] = _new_shared(nbytes + int(nbytes * headroom))  # a replaced one is unmapped here
            self.created += 1
        self.flags[index] = 1
        return Handover(self.segments[index][:nbytes].view(dtype).view(shape), self.flags, index)


def _new_shared(nbytes: int) -> Tensor:
    storage = torch.UntypedStorage._new_shared(nbytes)  # what default_collate does in a worker, untyped
    return torch.empty(0, dtype=torch.uint8).set_(storage)


INLINE_BYTES = 1 << 16  # tensors up to this size are pickled by value rather than shared


class Inline:
    """A small tensor that is pickled by value, not moved to a shared-memory segment of its own."""

    def __init__(self, tensor: Tensor) -> None:
        self.tensor = tensor

    def __reduce__(self):
        data = self.tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes()
        return _from_bytes, (data, self.tensor.dtype, tuple(self.tensor.shape))


def _from_bytes(data: bytes, dtype: torch.dtype, shape: tuple[int, ...]) -> Tensor:
    if not data:
        return torch.empty(shape, dtype=dtype)
    return torch.frombuffer(bytearray(data), dtype=torch.uint8).view(dtype).view(shape)


def inline_small(batch: dict) -> dict:
    """``batch`` with its tensors of at most ``INLINE_BYTES`` wrapped in ``Inline``."""
    return {
        key: Inline(value) if isinstance(value, Tensor) and value.nbytes <= INLINE_BYTES else value
        for key, value in batch.items()
    }


_buffers: tuple[int, WorkerBuffers] | None = None


def worker_buffers() -> WorkerBuffers:
    """This process's segments (created on first use, in the worker: a process forked later makes its own)."""
    global _buffers
    if _buffers is None or _buffers[0] != os.getpid():
        _buffers = (os.getpid(), WorkerBuffers())
    return _buffers[1]
