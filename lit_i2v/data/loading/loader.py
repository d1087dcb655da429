"""The training DataLoader: it tells the dataset the epoch, and it can resume part-way into an epoch.

Lightning sets epochs on samplers only; datasets that draw per-sample randomness from ``(seed, epoch, index)``
(``VideoClipDataset``) or plan epochs themselves (``ShardedClips``) need it too, in every persistent worker: the
loader writes it into the dataset's shared memory before each pass.

Resuming: Lightning saves a loader's ``state_dict()`` in each checkpoint and hands it back through
``load_state_dict`` before the resumed fit starts iterating. The state is the epoch and the number of batches the
trainer has processed in it (read from the trainer, not counted here, because Lightning fetches a batch ahead); the
next pass over that epoch skips those batches, at the sampler (no decoding) for file datasets and in the stream's
plan for shards. With the per-sample seeding, the remaining batches are exactly those of an uninterrupted run.

Workers keep the memory they free (``keep_freed_memory``), so that decoding a batch does not page memory in again.
"""

from __future__ import annotations

import ctypes
import multiprocessing
from collections.abc import Callable

from torch.utils.data import DataLoader


class SharedEpoch:
    """An ``epoch`` attribute kept in shared memory: the loader sets it in the main process before each pass and
    persistent workers read it when the pass starts. Call ``_share_epoch()`` in ``__init__``."""

    def _share_epoch(self) -> None:
        self._epoch = multiprocessing.RawValue("q", 0)

    @property
    def epoch(self) -> int:
        return self._epoch.value

    @epoch.setter
    def epoch(self, value: int) -> None:
        self._epoch.value = value


class SplitLoaders:
    """``train/val/test/predict_dataloader`` of a DataModule that builds every loader with ``_loader(split)``
    (prediction reads the test split)."""

    def train_dataloader(self) -> DataLoader:
        return self._loader("train")

    def val_dataloader(self) -> DataLoader:
        return self._loader("val")

    def test_dataloader(self) -> DataLoader:
        return self._loader("test")

    def predict_dataloader(self) -> DataLoader:
        return self._loader("test")


M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # glibc's mallopt parameters (malloc.h)


def keep_freed_memory(worker_id: int = 0) -> None:
    """Have glibc's malloc keep the blocks this process frees for its next allocations (a worker's init function).

    A worker decodes a batch into a few hundred blocks of a few hundred KiB (a frame each), holds them until the
    batch is packed, and frees them. With glibc's defaults, whether freed memory goes back to the kernel depends on
    the order of allocations and frees (its thresholds adapt to them), and when it does, the next batch pages it in
    again, each page zeroed by the kernel: reading JPEG shards, some of our runs took 140-475 page faults a clip
    (1.6 ms of a worker's 6.0 ms a clip in the one comparison that caught them), others none. Blocks up to 32 MiB
    (glibc's ceiling) served from the heap, and a heap that shrinks only past 256 MiB free, leave a worker at its
    peak working set (a few batches) and take no page faults after the first batches in any run. No effect without
    glibc."""
    mallopt = getattr(ctypes.CDLL(None), "mallopt", None)
    if mallopt is not None:
        mallopt(M_MMAP_THRESHOLD, 32 << 20)
        mallopt(M_TRIM_THRESHOLD, 256 << 20)


class EpochLoader(DataLoader):
    """Args: as ``DataLoader``, plus ``epoch_of`` (the trainer's current epoch) and ``batches_done`` (batches the
    trainer has processed in the current epoch); without them the loader counts passes and cannot resume. Its workers
    start with ``keep_freed_memory`` unless given another ``worker_init_fn``."""

    def __init__(
        self, *args, epoch_of: Callable[[], int] | None = None, batches_done: Callable[[], int] | None = None, **kwargs
    ) -> None:
        kwargs.setdefault("worker_init_fn", keep_freed_memory)
        super().__init__(*args, **kwargs)
        self.epoch_of, self.batches_done = epoch_of, batches_done
        self._passes = 0
        self._resume: dict | None = None

    def __iter__(self):
        epoch = self.epoch_of() if self.epoch_of is not None else self._passes
        self._passes += 1
        if hasattr(self.dataset, "epoch"):
            self.dataset.epoch = epoch
        skip = 0
        if self._resume is not None:
            if self._resume["epoch"] == epoch:
                skip = self._resume["batches"]
            self._resume = None
        if hasattr(self.sampler, "set_epoch"):
            self.sampler.set_epoch(epoch)  # Lightning sets it too, but after a resumed run's first iter()
        if hasattr(self.sampler, "start"):
            self.sampler.start = skip * (self.batch_size or 1)
        elif hasattr(self.dataset, "skip_batches"):
            self.dataset.skip_batches = skip
        elif skip:
            raise RuntimeError(f"{type(self.dataset).__name__} cannot resume part-way into an epoch")
        return super().__iter__()

    def state_dict(self) -> dict:
        epoch = self.epoch_of() if self.epoch_of is not None else max(self._passes - 1, 0)
        return {"epoch": epoch, "batches": self.batches_done() if self.batches_done is not None else 0}

    def load_state_dict(self, state: dict) -> None:
        self._resume = dict(state)
