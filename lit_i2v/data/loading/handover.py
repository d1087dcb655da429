"""Shared memory that DataLoader workers reuse to hand batches of clips to the main process.

A worker passes a batch's tensors to the main process through shared memory: the main process maps the worker's
pages instead of receiving a copy. PyTorch's collation writes every batch into a *new* shared-memory segment, and
creating a segment and touching each of its pages for the first time costs far more than filling pages already in
use; every shared tensor also costs a file-descriptor hand-over between the processes, so the small ones (labels,
indices) travel inside the pickle here (``Inline``). On our 2-core CPU a batch of eight 8x224x224 clips took 9.5 ms
through a worker with ``default_collate`` and 1.2 ms this way (``benchmarks/batch_handover.py``); with shards, the
old hand-over took about a quarter of a worker's time.

``WorkerBuffers`` (one per worker process) keeps its segments and fills one again once the main process has let go
of the batch it last carried. A batch leaves the worker as a ``Handover``; the main process unpickles it into a plain
tensor and ties a finalizer to that tensor's storage. When the last view of the storage dies (the training step is
done with the batch, the pin-memory thread has copied it to pinned memory, or a batch of an abandoned epoch is
dropped), the finalizer clears the segment's flag in a small array shared with the worker. Nothing ever waits for a
release: a worker without a free segment of the right size creates one, as PyTorch would, so a main process that
keeps batches costs memory, never a deadlock.

A segment and the flags cross to the main process once (``MappedSegments``): PyTorch hands a shared tensor over as a
file descriptor, which the main process fetches from the worker's socket and maps afresh, touching each page for the
first time, every batch. Here the main process keeps each worker's segments mapped and later batches only name their
segment; the received tensor is a view of the kept mapping with a storage of its own, whose end releases the segment
as above. For a batch of eight 224-px training crops through one worker, that took the main process's CPU time from
1.1 to 0.5 ms and the worker's from 2.2-2.4 to 1.7-1.8 ms (``benchmarks/batch_handover.py``). A worker's mappings
are dropped once it has ended.
"""

from __future__ import annotations

import os
import threading
import time
import weakref

import torch
from torch import Tensor

SEGMENTS = 32  # segments a worker tracks; past this many batches held by the main process, a new one each batch
Token = tuple[int, int]  # a worker's process id and a random number (process ids are reused)


class Handover:
    """A batch tensor in segment ``index`` of a worker's ``buffers`` (index -1: a segment of its own that nobody
    reuses, sent as PyTorch sends a tensor); it unpickles into the tensor in the main process. Assign ``tensor`` a
    view of itself to send the view."""

    def __init__(self, tensor: Tensor, buffers: WorkerBuffers, index: int) -> None:
        self.tensor, self.buffers, self.index = tensor, buffers, index

    def __reduce__(self):
        if self.index < 0:
            return _itself, (self.tensor,)
        tensor, buffers = self.tensor, self.buffers
        layout = (tensor.dtype, tuple(tensor.shape), tensor.stride(), tensor.storage_offset())
        # pickled in order by the worker's queue thread, so the main process unpickles a segment's first batch first
        segment, flags = buffers.first_send(self.index)
        return _receive, (buffers.token, self.index, buffers.generation[self.index], segment, flags, layout)


def _itself(tensor: Tensor) -> Tensor:
    return tensor


def _receive(token: Token, index: int, generation: int, segment: Tensor | None, flags: Tensor | None, layout) -> Tensor:
    return MAPPED.batch(token, index, generation, segment, flags, layout)


def _release(flags: Tensor, index: int) -> None:
    # The storage is gone, so no reads of the segment remain to be ordered before this store.
    flags[index] = 0


class MappedSegments:
    """In the main process: the workers' segments it keeps mapped, so that a batch in a segment it has seen costs no
    file-descriptor transfer, no new mapping and no page faults. A worker's mappings (and its flags) are dropped once
    the worker has ended: checked when a new worker first sends, at most once a second as batches arrive, and on
    ``drop_ended_workers()``."""

    SWEEP_SECONDS = 1.0

    def __init__(self) -> None:
        self.lock = threading.Lock()  # batches may be unpickled by several pin-memory threads at once
        self.flags: dict[Token, Tensor] = {}
        self.segments: dict[tuple[Token, int], tuple[int, Tensor]] = {}  # (token, index) -> (generation, segment)
        self.swept = time.monotonic()

    def batch(self, token: Token, index: int, generation: int, segment: Tensor | None, flags: Tensor | None, layout):
        """The tensor ``layout`` (dtype, shape, stride, offset) in the worker's segment ``index``; ``segment`` and
        ``flags`` come with the first batch in that segment (``flags`` with the worker's first batch)."""
        with self.lock:
            if flags is not None:
                self._sweep()
                self.flags[token] = flags
            elif time.monotonic() - self.swept > self.SWEEP_SECONDS:
                self._sweep()
            if segment is not None:
                self.segments[token, index] = (generation, segment)
            kept, worker_flags = self.segments.get((token, index)), self.flags.get(token)
        if kept is None or kept[0] != generation or worker_flags is None:
            raise RuntimeError(
                f"a batch from DataLoader worker {token[0]} is in its shared-memory segment {index}, which this "
                "process never received: a worker's batches must be unpickled in one process, in the order sent"
            )
        dtype, shape, stride, offset = layout
        segment = kept[1]
        # a storage of its own over the kept mapping (keeping it alive), so that its end tells the batch's end
        if segment.numel():
            flat = torch.frombuffer(segment.numpy(), dtype=torch.uint8)
        else:
            flat = torch.empty(0, dtype=torch.uint8)
        tensor = flat[: flat.numel() // dtype.itemsize * dtype.itemsize].view(dtype).as_strided(shape, stride, offset)
        weakref.finalize(tensor.untyped_storage(), _release, worker_flags, index).atexit = False
        return tensor

    def drop_ended_workers(self) -> None:
        """Unmap the segments of workers that have ended."""
        with self.lock:
            self._sweep()

    def _sweep(self) -> None:
        self.swept = time.monotonic()
        ended = {token for token in self.flags if not _running(token[0])}
        if ended:
            self.flags = {token: flags for token, flags in self.flags.items() if token not in ended}
            self.segments = {key: kept for key, kept in self.segments.items() if key[0] not in ended}

    def _forget_all(self) -> None:
        """In a child just forked: what the parent kept is not the child's (its workers send to the parent)."""
        self.__init__()


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process now has the id: ours has ended
        return False
    return True


MAPPED = MappedSegments()
os.register_at_fork(after_in_child=MAPPED._forget_all)
drop_ended_workers = MAPPED.drop_ended_workers


class WorkerBuffers:
    """The reusable shared-memory segments of one worker process; ``flags[i]`` is 1 while the main process may read
    segment ``i``."""

    def __init__(self, segments: int = SEGMENTS) -> None:
        self.flags = torch.zeros(segments, dtype=torch.uint8).share_memory_()
        self.segments: list[Tensor | None] = [None] * segments  # flat uint8, in shared memory
        self.created = 0  # segments made so far, the reused ones once each (read by tests and benchmarks)
        self.token: Token = (os.getpid(), int.from_bytes(os.urandom(8), "little"))
        self.generation = [0] * segments  # bumped when a segment is replaced by a larger one
        self.sent = [False] * segments  # whether the main process has the segment's current generation
        self.flags_sent = False

    def first_send(self, index: int) -> tuple[Tensor | None, Tensor | None]:
        """The segment and the flags if the main process has not had them yet, else None for each (marked sent)."""
        segment = None if self.sent[index] else self.segments[index]
        flags = None if self.flags_sent else self.flags
        self.sent[index] = self.flags_sent = True
        return segment, flags

    def empty(self, shape: tuple[int, ...], dtype: torch.dtype, headroom: float = 0.0) -> Handover:
        """A ``shape`` tensor to fill and send: in the smallest free segment it fits in when there is one, else in a
        new one, ``headroom`` larger (for batches whose size varies), that replaces a free segment too small; in a
        segment of its own when all are held."""
        nbytes = torch.Size(shape).numel() * dtype.itemsize
        busy = self.flags.tolist()
        free = [i for i, flag in enumerate(busy) if not flag]
        if not free:
            return Handover(_new_shared(nbytes).view(dtype).view(shape), self, -1)
        fits = [i for i in free if self.segments[i] is not None and self.segments[i].numel() >= nbytes]
        if fits:
            index = min(fits, key=lambda i: self.segments[i].numel())
        else:
            index = next((i for i in free if self.segments[i] is None), free[0])
            self.segments[index] = _new_shared(nbytes + int(nbytes * headroom))  # a replaced one is unmapped here
            self.created += 1
            self.generation[index] += 1
            self.sent[index] = False
        self.flags[index] = 1
        return Handover(self.segments[index][:nbytes].view(dtype).view(shape), self, index)


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
