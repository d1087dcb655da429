"""A map-style dataset of decoded, transformed clips, and the unpadded sampler for exact distributed evaluation.

Batches are dicts with these keys:

===========  ====================================================================================================
``video``    training: ``PackedClips``, the B clips' crops, which the DataModule resizes to ``(B, T, 3, S, S)`` on
             the device (uint8 ``(B, T, 3, S, S)`` when the worker resizes: RandAugment, ``device_resize: false``;
             ``PackedJpegs``, the clips' JPEG frames and crop boxes, with shards and ``decode_on_device``);
             evaluation: uint8 ``(B, V, T, 3, S, S)``, V = clips x crops views
``label``    int64 ``(B,)`` class index
``index``    int64 ``(B,)`` position of the video in its annotation file
``video_id`` list of B strings
``valid``    bool ``(B,)``: False for an evaluation video that could not be decoded (zeros; masked from metrics)
``skipped``  int64 ``(B,)``: videos that failed before this sample was produced (training replaces them)
===========  ====================================================================================================

A uint8 ``video`` is channels-last in memory (``(..., S, S, 3)``, as decoded; see ``transforms.py``): ``collate_clips``
keeps it so, and the task makes it planar on its device.
"""

from __future__ import annotations

import logging
import os
import random
from collections.abc import Callable

import torch
from torch.utils.data import Dataset, DistributedSampler, default_collate, get_worker_info

from lit_i2v.data.formats.annotations import VideoRecord
from lit_i2v.data.loading.handover import Inline, inline_small, worker_buffers
from lit_i2v.data.loading.loader import SharedEpoch
from lit_i2v.data.video.decode import Backend, open_video
from lit_i2v.data.video.sampling import FrameSampler
from lit_i2v.data.video.transforms import (
    ClipCrop,
    EvalTransform,
    JpegCrop,
    TrainTransform,
    pack_clips,
    pack_jpegs,
    stack_clips,
)

log = logging.getLogger("lit_i2v.data")


def default_seed() -> int:
    """The run's seed: Lightning's ``seed_everything`` (the config's ``seed_everything``) exports it."""
    return int(os.environ.get("PL_GLOBAL_SEED", 0))


class VideoClipDataset(SharedEpoch, Dataset):
    """Clips of the videos in ``records``.

    A clip's randomness (its frames, crop, flip, RandAugment, a replacement for a broken video) is drawn from its
    own generator seeded by ``(seed, epoch, index)``: the same clip for the same epoch and index whichever worker or
    rank loads it, so runs repeat on any number of workers and GPUs and a run resumed mid-epoch sees exactly the
    clips an uninterrupted one would. The loader sets ``epoch`` (shared with persistent workers).

    A video that is missing or fails to decode is logged with its path and counted. In training it is replaced by
    another random video (up to ``max_retries`` times, then the error is raised: the data is broken beyond chance).
    In evaluation it is returned as zeros with ``valid=False`` so metrics can leave it out rather than count a
    different video twice.
    """

    def __init__(
        self,
        records: list[VideoRecord],
        sampler: FrameSampler,
        transform: TrainTransform | EvalTransform,
        training: bool,
        backend: Backend = "auto",
        max_retries: int = 10,
        seed: int | None = None,
        extras: list[dict] | None = None,
        annotate: Callable[[dict, bool, random.Random], dict] | None = None,
    ) -> None:
        self.records = records
        self.extras, self.annotate = extras, annotate  # what a sample carries besides clip and label (captions, ...)
        self.sampler = sampler
        self.transform = transform
        self.training = training
        self.backend = backend
        self.max_retries = max_retries
        self.seed = default_seed() if seed is None else seed
        self._share_epoch()

    def rng(self, index: int, salt: object = "") -> random.Random:
        """The generator of sample ``index`` in this epoch (``salt`` separates a sample's independent draws)."""
        return random.Random(f"{self.seed}:{self.epoch}:{index}:{salt}")

    def __len__(self) -> int:
        return len(self.records)

    @property
    def num_views(self) -> int:
        return 1 if self.training else self.sampler.test_clips * self.transform.crops

    def load(self, record: VideoRecord, rng: random.Random | None = None) -> torch.Tensor:
        """Decode and transform one video, drawing its randomness from ``rng``; any failure raises."""
        rng = rng or random.Random()
        reader = open_video(record.path, self.backend, record.num_frames, first_frame=record.first_frame)
        clips = self.sampler(reader.num_frames, self.training, rng)
        frames = reader.get_frames([i for clip in clips for i in clip])  # (V*T, H, W, 3)
        frames = frames.unflatten(0, (len(clips), self.sampler.num_frames))  # (V, T, H, W, 3)
        if self.training:
            return self.transform(frames[0], rng)  # (T, 3, S, S)
        return stack_clips([view for clip in frames for view in self.transform(clip, rng)])  # (clips*crops, T, 3, S, S)

    def __getitem__(self, index: int) -> dict:
        record, skipped = self.records[index], 0
        rng = self.rng(index)
        while True:
            try:
                video = self.load(record, rng)
                break
            except Exception as err:  # a corrupt file must never end a multi-day run
                log.warning("skipping %s: %s", record.path, err)
                skipped += 1
                if not self.training:
                    size = self.transform.size
                    video = torch.zeros(self.num_views, self.sampler.num_frames, 3, size, size, dtype=torch.uint8)
                    return self._sample(video, record, index, skipped, valid=False)
                if skipped > self.max_retries:
                    raise RuntimeError(f"{skipped} videos in a row failed to decode; the last: {record.path}") from err
                index = rng.randrange(len(self.records))
                record = self.records[index]
        return self._sample(video, record, index, skipped, valid=True)

    def _sample(self, video: torch.Tensor, record: VideoRecord, index: int, skipped: int, valid: bool) -> dict:
        sample = {
            "video": video,
            "label": record.label,
            "index": index,
            "video_id": record.video_id,
            "valid": valid,
            "skipped": skipped,
        }
        if self.extras is not None:  # the (possibly replaced) video's own captions or question
            extra = self.extras[index]
            sample.update(self.annotate(extra, self.training, self.rng(index, "caption")) if self.annotate else extra)
        return sample


class ResumableSampler(DistributedSampler):
    """The training sampler: this rank's share of a shuffled epoch, as ``DistributedSampler`` (order from
    ``seed + epoch`` only, padded so that ranks have equal lengths), that can start ``start`` items into the epoch
    (set once by a resumed loader). Being a ``DistributedSampler``, Lightning keeps it rather than replacing it."""

    def __init__(self, dataset: Dataset, num_replicas: int = 1, rank: int = 0, seed: int = 0) -> None:
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=True, seed=seed, drop_last=False)
        self.start = 0

    def __iter__(self):
        indices = list(super().__iter__())
        start, self.start = self.start, 0
        return iter(indices[start:])


class UnpaddedDistributedSampler(DistributedSampler):
    """Rank r takes items r, r + world, r + 2*world, ...: every item exactly once over all ranks, no padding.

    ``DistributedSampler`` pads the last round with repeated items so that ranks have equal lengths, which counts
    those videos twice in a metric. Evaluation needs no equal lengths (no gradient synchronisation), so this sampler
    leaves ranks one item apart at most; being a ``DistributedSampler``, Lightning does not replace it.
    """

    def __init__(self, dataset: Dataset, num_replicas: int, rank: int) -> None:
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=False, drop_last=False)
        self.num_samples = len(range(rank, len(dataset), num_replicas))  # type: ignore[arg-type]
        self.total_size = len(dataset)  # type: ignore[arg-type]

    def __iter__(self):
        return iter(range(self.rank, self.total_size, self.num_replicas))

    def __len__(self) -> int:
        return self.num_samples


def collate_clips(samples: list[dict]) -> dict:
    """PyTorch's default collation (lists, such as a question's candidates, stay one list a sample), but ``video`` is
    stacked in its channels-last memory order (``stack_clips``): one
    block copy per clip and no transposition (which would cost a worker about as much as the crop); crops to resize
    on the device (``ClipCrop``) are packed into one buffer (``pack_clips``), and so are clips to decode there
    (``JpegCrop``, ``pack_jpegs``). In a worker the pixels (or JPEGs) go into shared memory that the worker reuses
    from batch to batch and the other tensors are sent by value (``handover.py``): until the main process unpickles
    them, they are ``Handover`` and ``Inline`` wrappers."""
    videos = [sample["video"] for sample in samples]
    lists = [k for k, v in samples[0].items() if isinstance(v, list)]  # candidates, captions: one list a sample
    batch = default_collate([{k: v for k, v in s.items() if k != "video" and k not in lists} for s in samples])
    batch.update({key: [s[key] for s in samples] for key in lists})
    pack = pack_clips if isinstance(videos[0], ClipCrop) else pack_jpegs if isinstance(videos[0], JpegCrop) else None
    if get_worker_info() is None:
        batch["video"] = pack(videos) if pack else stack_clips(videos)  # stacked: (B, ..., 3, S, S)
        return batch
    batch = inline_small(batch)
    if pack:
        # batches of random crops vary in size: a segment a quarter larger than the first batch serves most of them
        handover = worker_buffers().empty((sum(crop.nbytes for crop in videos),), torch.uint8, headroom=0.25)
        batch["video"] = packed = pack(videos, out=handover.tensor)
        for name, value in vars(packed).items():  # sent as PackedClips or PackedJpegs: the rest of it by value
            if isinstance(value, torch.Tensor):
                setattr(packed, name, handover if name == "data" else Inline(value))
        return batch
    first = videos[0].movedim(-3, -1)  # (..., S, S, 3)
    batch["video"] = handover = worker_buffers().empty((len(videos), *first.shape), first.dtype)
    handover.tensor = stack_clips(videos, out=handover.tensor)  # sent as (B, ..., 3, S, S)
    return batch
