"""The LightningDataModule for video classification data in any supported annotation format.

Annotation files are checked when the module is built, so a missing dataset fails at once, naming the path, before
any model weights are loaded. Videos themselves are opened only in the DataLoader workers.
"""

from __future__ import annotations

from pathlib import Path

import lightning as L
import torch
from torch.utils.data import DataLoader

from lit_i2v.data.annotations import Format, VideoRecord, read_annotations, read_class_names
from lit_i2v.data.dataset import (
    ResumableSampler,
    UnpaddedDistributedSampler,
    VideoClipDataset,
    collate_clips,
    default_seed,
)
from lit_i2v.data.decode import Backend
from lit_i2v.data.loader import EpochLoader, SplitLoaders
from lit_i2v.data.sampling import FrameSampler, UniformSampler
from lit_i2v.data.shards import ShardedClips, read_index
from lit_i2v.data.transforms import EvalTransform, TrainTransform

SPLITS = ("train", "val", "test")


class VideoDataModule(SplitLoaders, L.LightningDataModule):
    """Clips for training and multi-view clips for evaluation.

    Args:
        train: annotation file of the training split (None: no training data).
        val: annotation file of the validation split.
        test: annotation file of the test split (defaults to ``val``).
        root: folder that relative video paths in the annotation files start from.
        labels: class names file: SSv2 labels JSON, or a text file with one class name per line.
        format: annotation format, ``auto`` to detect it from the file (see ``annotations.py``).
        video_ext: extension of SSv2-style ids on disk (``.webm`` for the original SSv2).
        path_template: where a Kinetics CSV row's video lies under ``root``.
        sampler: which frames make a clip, and how many temporal views evaluation takes.
        train_transform: crop/flip/augmentation of training clips.
        eval_transform: resize and spatial crops of evaluation clips.
        batch_size: clips per device and step in training.
        eval_batch_size: videos per device in evaluation (each with all its views); defaults to ``batch_size``.
        num_workers: DataLoader worker processes per device.
        backend: video decoder, ``auto`` (decord, falling back to PyAV), ``decord`` or ``pyav``.
        max_retries: consecutive undecodable training videos tolerated before giving up.
        prepare_hint: what to tell a user whose dataset is missing.
        shards: a folder written by ``python -m lit_i2v shard``: stream the splits from its tar shards instead of
            decoding the files listed in the annotations (which need not be present then).
        shuffle_buffer: with ``shards``, training samples each worker shuffles among.
        decode_on_device: with ``shards`` of JPEG frames, training clips travel as their JPEG bytes and the task
            decodes them (nvJPEG on a GPU), crops and resizes them on its device: the workers only read the shards.
            Needs the train transform's ``device_resize`` (no RandAugment). Evaluation decodes in the workers.
        seed: seed of the epoch order and of each clip's augmentation (default: the run's ``seed_everything``).
    """

    def __init__(
        self,
        train: str | None = None,
        val: str | None = None,
        test: str | None = None,
        root: str = "",
        labels: str | None = None,
        format: Format = "auto",
        video_ext: str = ".mp4",
        path_template: str = "{label}/{youtube_id}_{time_start:06d}_{time_end:06d}.mp4",
        sampler: FrameSampler | None = None,
        train_transform: TrainTransform | None = None,
        eval_transform: EvalTransform | None = None,
        batch_size: int = 8,
        eval_batch_size: int | None = None,
        num_workers: int = 4,
        backend: Backend = "auto",
        max_retries: int = 10,
        prepare_hint: str = "see docs/datasets.md for how to prepare each dataset",
        shards: str | None = None,
        shuffle_buffer: int = 256,
        decode_on_device: bool = False,
        seed: int | None = None,
    ) -> None:
        super().__init__()
        self.files = {"train": train, "val": val, "test": test or val}
        self.root, self.labels, self.format = root, labels, format
        self.video_ext, self.path_template = video_ext, path_template
        self.sampler = sampler or UniformSampler(8)
        self.train_transform = train_transform or TrainTransform()
        self.eval_transform = eval_transform or EvalTransform()
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size or batch_size
        self.num_workers = num_workers
        self.backend = backend
        self.max_retries = max_retries
        self.prepare_hint = prepare_hint
        self.shards, self.shuffle_buffer, self.seed = shards, shuffle_buffer, seed
        if decode_on_device and shards is None:
            raise ValueError("data.decode_on_device decodes JPEG frames of shards: set data.shards as well")
        self.decode_on_device = decode_on_device
        self.datasets: dict[str, VideoClipDataset | ShardedClips] = {}
        if shards is not None:
            self.shard_index = read_index(shards)
            self.files = {split: split if split in self.shard_index["splits"] else None for split in SPLITS}
            self.files["test"] = self.files["test"] or self.files["val"]
        elif not self.generates_data:
            self.check_files()

    # Subclasses that write their data in ``prepare_data`` (synthetic sets) skip the check at construction.
    generates_data = False

    def check_files(self) -> None:
        for key, path in [*self.files.items(), ("labels", self.labels)]:
            if path and not Path(path).exists():
                raise FileNotFoundError(f"data.{key}: {path} does not exist; {self.prepare_hint}")

    def describe(self) -> str:
        """Where the clips come from and who decodes them, in a few words (the start-up summary's data line)."""
        workers = f"{self.num_workers} worker(s) per device"
        if self.shards is None:
            return f"video files under {self.root or '.'} ({self.backend} decoder), {workers}"
        what = {"frames": "JPEG frames", "video": "video files"}[self.shard_index["mode"]]
        where = "decoded on the device in training" if self.decode_on_device else "decoded by the workers"
        return f"shards {self.shards} ({what}, {where}), {workers}"

    @property
    def num_views(self) -> int:
        return self.sampler.test_clips * self.eval_transform.crops

    def class_names(self) -> list[str] | None:
        if self.shards is not None:
            return self.shard_index["class_names"]
        return read_class_names(self.labels) if self.labels else None

    def records(self, split: str) -> list[VideoRecord]:
        path = self.files[split]
        if path is None:
            raise ValueError(f"data.{split} is not set, so there is no {split} split")
        return read_annotations(path, self.root, self.format, self.labels, self.video_ext, self.path_template)

    def setup(self, stage: str | None = None) -> None:
        wanted = {"fit": ["train", "val"], "validate": ["val"], "test": ["test"], "predict": ["test"]}
        for split in wanted.get(stage or "", SPLITS):
            if split in self.datasets or self.files[split] is None:
                continue
            self.datasets[split] = self.build_dataset(split)

    def clip_args(self, split: str) -> dict:
        """What every clip dataset of ``split`` is built with: sampler, transform, mode, decoder, retries."""
        training = split == "train"
        return dict(
            sampler=self.sampler,
            transform=self.train_transform if training else self.eval_transform,
            training=training,
            backend=self.backend,
            max_retries=self.max_retries,
            seed=self.run_seed,
        )

    @property
    def run_seed(self) -> int:
        return default_seed() if self.seed is None else self.seed

    def build_dataset(self, split: str) -> VideoClipDataset | ShardedClips:
        """The dataset of one split; task DataModules (captions, questions) override this alone."""
        if self.shards is not None:
            return ShardedClips(self.shards, self.files[split], shuffle_buffer=self.shuffle_buffer,
                                decode_on_device=self.decode_on_device, **self.clip_args(split))  # fmt: skip
        return VideoClipDataset(self.records(split), **self.clip_args(split))

    def _loader(self, split: str) -> DataLoader:
        if split not in self.datasets:
            self.setup(None)
        dataset = self.datasets[split]
        training = split == "train"
        trainer = self.trainer
        world, rank = (trainer.world_size, trainer.global_rank) if trainer is not None else (1, 0)
        sampler = None
        if isinstance(dataset, ShardedClips):  # it splits itself across ranks and workers (see shards.py)
            dataset.rank, dataset.world_size = rank, world
            dataset.batch_size = self.batch_size if training else self.eval_batch_size
        elif training:
            sampler = ResumableSampler(dataset, world, rank, seed=self.run_seed)
        elif world > 1:
            sampler = UnpaddedDistributedSampler(dataset, world, rank)
        progress = trainer.fit_loop.epoch_loop.batch_progress.current if trainer is not None else None
        return EpochLoader(
            dataset,
            batch_size=self.batch_size if training else self.eval_batch_size,
            sampler=sampler,
            drop_last=training,
            num_workers=self.num_workers,
            pin_memory=torch.cuda.is_available(),
            persistent_workers=self.num_workers > 0 and training,
            collate_fn=self.collate_fn(),
            epoch_of=(lambda: trainer.current_epoch) if trainer is not None else None,
            batches_done=(lambda: progress.processed) if training and progress is not None else None,
        )

    def collate_fn(self):
        """How samples become a batch; QA keeps its questions as lists."""
        return collate_clips
