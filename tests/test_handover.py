"""Workers hand batches to the main process in shared memory they reuse, and send small tensors by value."""

from __future__ import annotations

import contextlib
import gc
import os
import pickle
from multiprocessing import resource_sharer
from multiprocessing.reduction import ForkingPickler

import pytest
import torch
from torch.utils.data import DataLoader, Dataset

from lit_i2v.data.loading.dataset import collate_clips
from lit_i2v.data.loading.handover import MAPPED, Inline, drop_ended_workers, inline_small, worker_buffers
from lit_i2v.data.video.transforms import ClipCrop, PackedClips

from .conftest import in_shared_memory


class NumberedClips(Dataset):
    """Clip i is filled with i (mod 256), channels-last as decoded clips are."""

    def __len__(self) -> int:
        return 40

    def __getitem__(self, index: int) -> dict:
        return {"video": torch.full((4, 8, 8, 3), index % 256, dtype=torch.uint8).movedim(-1, -3), "label": index}


def collate_and_report(samples: list[dict]) -> dict:
    """``collate_clips``, plus this worker's segments created so far and those busy (this batch's included)."""
    batch = collate_clips(samples)
    buffers = worker_buffers()
    return {**batch, "created": buffers.created, "busy": int(buffers.flags.sum())}


def intact(batch: dict) -> bool:
    """Whether every clip of ``batch`` still holds its own number in every pixel."""
    expected = (batch["label"] % 256).to(torch.uint8).view(-1, 1, 1, 1, 1).expand_as(batch["video"])
    return torch.equal(batch["video"], expected)


def epoch(loader: DataLoader) -> list[tuple[int, int]]:
    """(created, busy) of each batch of an epoch, each batch checked and dropped before the next."""
    reports = []
    for batch in loader:
        assert intact(batch) and in_shared_memory(batch["video"]) and batch["video"].movedim(-3, -1).is_contiguous()
        reports.append((batch["created"], batch["busy"]))
    return reports


def test_a_worker_reuses_batch_memory_once_the_main_process_lets_go():
    loader = DataLoader(NumberedClips(), batch_size=4, num_workers=1, persistent_workers=True,
                        collate_fn=collate_and_report)  # fmt: skip
    for _ in range(2):  # a handful of segments serve all 20 batches, and each epoch starts with all of them free
        reports = epoch(loader)
        assert len(reports) == 10 and max(created for created, _ in reports) <= 4 and reports[0][1] == 1

    held = list(loader)  # batches the main process keeps are never written over
    assert all(intact(batch) for batch in held)
    before = held[-1]["created"]
    assert before >= 10

    view = held[0]["video"][1:2]  # a view keeps its batch's segment busy
    del held
    batch = next(iter(loader))  # an epoch abandoned after one batch: its prefetched batches are dropped unread
    del batch
    reports = epoch(loader)
    assert reports[0][1] == 2  # the view's segment and the new batch's: the abandoned batches left none busy
    assert reports[-1][0] == before  # only freed segments were used again
    assert torch.equal(view, torch.full_like(view, 1))  # clip 1 of the first batch, untouched


class RaggedCrops(Dataset):
    """Training crops as the default transform leaves them (views, not yet resized), of a size that varies with the
    index; clip i is filled with i and mirrored when i is odd."""

    def __len__(self) -> int:
        return 40

    def __getitem__(self, index: int) -> dict:
        side = 6 + index % 5
        frames = torch.full((4, 12, 12, 3), index % 256, dtype=torch.uint8)[:, :side, : side + 1]
        return {"video": ClipCrop(list(frames), flip=bool(index % 2), size=8), "label": index}


def test_crops_of_varying_size_are_packed_into_a_few_reused_segments():
    loader = DataLoader(RaggedCrops(), batch_size=4, num_workers=1, persistent_workers=True,
                        collate_fn=collate_and_report)  # fmt: skip
    for _ in range(2):
        for batch in loader:
            packed, labels = batch["video"], batch["label"].tolist()
            assert isinstance(packed, PackedClips) and in_shared_memory(packed.data) and not packed.sizes.is_shared()
            assert packed.flip.tolist() == [bool(i % 2) for i in labels]
            for clip, i in zip(packed.clips(), labels, strict=True):  # (T, 3, h, w)
                assert clip.shape == (4, 3, 6 + i % 5, 7 + i % 5) and torch.equal(clip, torch.full_like(clip, i))
            assert packed.resize().shape == (4, 4, 3, 8, 8)
    # 20 batches of varying size: up to five are held at once (the loop's, two prefetched, the one being filled, the
    # previous one until the loop lets go), and a free segment too small for a batch is replaced; without reuse, 20
    assert batch["created"] <= 8


def test_each_segment_crosses_to_the_main_process_once(monkeypatch):
    fetched = []  # file descriptors the main process fetched from a worker (PyTorch's way of sharing a tensor)
    fetch = resource_sharer.DupFd.detach
    monkeypatch.setattr(resource_sharer.DupFd, "detach", lambda self: fetched.append(1) or fetch(self))
    loader = DataLoader(RaggedCrops(), batch_size=4, num_workers=1, persistent_workers=True,
                        collate_fn=collate_and_report)  # fmt: skip
    for _ in range(2):
        for batch in loader:
            assert all(torch.equal(clip, torch.full_like(clip, i)) for clip, i in zip(
                batch["video"].clips(), batch["label"].tolist(), strict=True))  # fmt: skip
    # 20 batches: the worker's flags and each segment it made came over once; the other batches named their segment
    assert len(fetched) == batch["created"] + 1 < 20


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="counts open files through /proc")
def test_workers_that_come_and_go_leave_no_open_files_behind():
    loader = DataLoader(NumberedClips(), batch_size=4, num_workers=2, collate_fn=collate_clips)  # new workers an epoch
    ended: set[int] = set()
    for _ in range(3):
        iterator = iter(loader)
        workers = {worker.pid for worker in iterator._workers}
        assert all(intact(batch) for batch in iterator)
        # the first batch of a new worker made the main process drop the mappings of the workers that had ended
        assert workers & {pid for pid, _ in MAPPED.flags} and not ended & {pid for pid, _ in MAPPED.flags}
        ended |= workers
    open_files = []
    for _ in range(6):
        assert all(intact(batch) for batch in loader)
        drop_ended_workers()  # this epoch's workers have ended too
        gc.collect()
        open_files.append(len(shared_memory_files()))
    assert len(set(open_files[1:])) == 1, open_files


def shared_memory_files() -> list[str]:
    """This process's open shared-memory files (segments and flag arrays). The DataLoader's own queue pipes are left
    out: ending workers close them from a thread, a moment after the epoch, which made the count flicker."""
    files = []
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(FileNotFoundError):  # the listing's own descriptor, closed by now
            if os.readlink(f"/proc/self/fd/{fd}").startswith("/dev/shm/"):
                files.append(fd)
    return files


@pytest.mark.parametrize(
    "tensor",
    [
        torch.arange(5),
        torch.tensor([True, False]),
        torch.tensor(2.5, dtype=torch.float64),
        torch.empty(0, 3),
        torch.arange(12, dtype=torch.bfloat16).view(3, 4)[:, ::2],
    ],  # fmt: skip
)
def test_small_tensors_travel_by_value(tensor):
    received = pickle.loads(ForkingPickler.dumps(Inline(tensor)))
    assert received.dtype == tensor.dtype and received.shape == tensor.shape and torch.equal(received, tensor)
    assert not received.is_shared()
    batch = inline_small({"small": tensor, "large": torch.zeros(1 << 15), "names": ["a"]})
    assert isinstance(batch["small"], Inline) and isinstance(batch["large"], torch.Tensor)
    assert batch["names"] == ["a"]


def test_labels_arrive_by_value_and_clips_in_shared_memory():
    batch = next(iter(DataLoader(NumberedClips(), batch_size=4, num_workers=1, collate_fn=collate_clips)))
    assert in_shared_memory(batch["video"]) and not batch["label"].is_shared()
    assert batch["label"].tolist() == [0, 1, 2, 3] and intact(batch)
