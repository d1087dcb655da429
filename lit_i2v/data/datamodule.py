"""The LightningDataModule of every task that reads videos: what the annotation files mean is its ``annotations``
argument (``Labels`` for recognition, ``Captions`` for retrieval, ``Questions`` for QA), so one signature serves them
all and a task is switched by that one entry.

What can be checked without decoding is checked when the module is built, before any model weights are loaded:
the annotation files exist and parse (every error names the file and line), every label lies within
``num_classes``, ``root`` exists and holds the listed videos (a sample of each split is looked up: none there is an
error naming ``data.root``, some missing a warning; ``check-data`` finds them all), and the training split fills at
least one batch. Videos themselves are opened only in the DataLoader workers.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import lightning as L
import torch
from jsonargparse import lazy_instance
from torch.utils.data import DataLoader

from lit_i2v.data.formats.annotations import AnnotationError, Annotations, Labels, VideoRecord, check_labels
from lit_i2v.data.loading.dataset import (
    ResumableSampler,
    UnpaddedDistributedSampler,
    VideoClipDataset,
    collate_clips,
    default_seed,
)
from lit_i2v.data.loading.loader import EpochLoader, SplitLoaders
from lit_i2v.data.shards import ShardedClips, read_index
from lit_i2v.data.synthetic import SYNTHETIC_ROOT, Synthetic
from lit_i2v.data.video.decode import Backend
from lit_i2v.data.video.sampling import FrameSampler, UniformSampler
from lit_i2v.data.video.transforms import EvalTransform, PackedClips, PackedJpegs, TrainTransform
from lit_i2v.errors import ConfigError

SPLITS = ("train", "val", "test")
SAMPLED = 64  # videos of each split looked up at start-up: enough to tell a wrong root from a few missing files
log = logging.getLogger("lit_i2v.data")


class VideoDataModule(SplitLoaders, L.LightningDataModule):
    """Clips for training and multi-view clips for evaluation.

    Args:
        train: annotation file of the training split (None: no training data).
        val: annotation file of the validation split.
        test: annotation file of the test split (defaults to ``val``).
        root: folder that relative video paths in the annotation files start from.
        annotations: what the files hold and how they are read: ``Labels`` (default; class labels in mmaction2,
            SSv2 or Kinetics formats), ``Captions`` or ``Questions``, each with its format options.
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
        num_classes: every label of the annotation files must lie in ``[0, num_classes)``; checked when they are
            read, naming the file and line of one that does not (not with ``shards``, which hold no annotation
            files). The CLI sets it from ``model.init_args.num_classes``.
        synthetic: write the synthetic motion set under ``root`` (default ``data/synthetic-motion``) on first use
            and read it (its files are the set's own, for the kind of ``annotations``: labels, captions or
            questions; without transforms given, crops of ``video_size`` and no flip).
    """

    def __init__(
        self,
        train: str | None = None,
        val: str | None = None,
        test: str | None = None,
        root: str = "",
        annotations: Annotations = lazy_instance(Labels),  # noqa: B008 (jsonargparse's way to default to a class)
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
        num_classes: int | None = None,
        synthetic: Synthetic | None = None,
    ) -> None:
        super().__init__()
        if isinstance(synthetic, dict):  # the YAML shape, from Python: what jsonargparse would have built
            try:
                synthetic = Synthetic(**synthetic)
            except TypeError as err:
                raise ConfigError(f"data.synthetic: {err} (the arguments of lit_i2v.data.Synthetic)") from None
        self.synthetic = synthetic
        if synthetic is not None:
            given = [k for k, v in (("train", train), ("val", val), ("test", test), *annotations.files().items()) if v]
            if given:
                raise ConfigError(
                    f"data.synthetic writes and reads its own annotation files, but data.{given[0]} is set too: "
                    "drop it, or set data.synthetic: null to read your own"
                )
            self.dataset_root = Path(root or SYNTHETIC_ROOT)
            annotations, layout = annotations.synthetic(self.dataset_root)
            train, val, test = layout["train"], layout["val"], layout["test"]
            root = str(self.dataset_root / "videos")
            size = synthetic.video_size  # no flip: the classes (left/right) depend on direction, as in SSv2
            train_transform = train_transform or TrainTransform(size=size, scale=(0.5, 1.0), hflip=False)
            eval_transform = eval_transform or EvalTransform(size=size)
        for key, value, least in [("batch_size", batch_size, 1), ("eval_batch_size", eval_batch_size or 1, 1),
                                  ("num_workers", num_workers, 0), ("max_retries", max_retries, 0)]:  # fmt: skip
            if value < least:
                raise ConfigError(f"data.{key}: must be at least {least}, got {value}")
        self.num_classes = num_classes
        self._records: dict[str, list[VideoRecord]] = {}
        self._extras: dict[str, list[dict] | None] = {}  # per split and record: captions, questions (``annotations``)
        self._absent: dict[str, str] = {}  # annotation files none of whose videos were found: why, for ``setup``
        self.files = {"train": train, "val": val, "test": test or val}
        self.root, self.annotations = root, annotations
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
            if not isinstance(annotations, Labels):
                raise ConfigError(
                    f"data.shards hold labelled clips; {type(annotations).__name__} are read from annotation files"
                )
            self.shard_index = read_index(shards)
            self.files = {split: split if split in self.shard_index["splits"] else None for split in SPLITS}
            self.files["test"] = self.files["test"] or self.files["val"]
        elif synthetic is None:  # a synthetic set is written in prepare_data: nothing to check yet
            self.check_files()
            self.check_videos()

    def write_synthetic(self) -> None:
        """Write the synthetic set (videos, and the files of this module's kind of annotations)."""
        self.annotations.write_synthetic(self.synthetic, self.dataset_root)

    def prepare_data(self) -> None:
        if self.synthetic is not None and self.shards is None:  # with shards, the set written by `shard` streams
            self.write_synthetic()

    def check_files(self) -> None:
        for key, path in [*self.files.items(), *self.annotations.files().items()]:
            if path and not Path(path).exists():
                raise FileNotFoundError(f"data.{key}: {path} does not exist; {self.prepare_hint}")

    def check_videos(self) -> None:
        """Read every configured split's annotations (checking their labels) and look a sample of each split's
        videos up. When no split has any of its videos there (a mistyped root), the error names ``data.root``
        and what it holds. A split with none while others have theirs (a machine that holds the evaluation videos
        only) is a warning here, and an error when a stage asks for that split (``setup``)."""
        where = self.root or "the working directory"
        # annotation file -> the first split that reads it (the test file is often val's); a format whose one file
        # holds every split (MSR-VTT's MSRVTT_data.json) is checked split by split
        per_split = getattr(self.annotations, "splits_share_a_file", False)
        splits: dict[str, str] = {}
        for split in SPLITS:
            if self.files[split] is not None:
                splits.setdefault(self._absent_key(split) if per_split else self.files[split], split)
        for file, split in splits.items():
            records = self.records(split)
            if not records:
                raise AnnotationError(f"data.{split} ({file}): no videos left to read")
            sample = records[:: max(1, len(records) // SAMPLED)][:SAMPLED]
            missing = [r.path for r in sample if not _exists(r)]
            if len(missing) == len(sample):
                self._absent[file] = (
                    f"data.root: none of {len(sample)} videos of data.{split} looked up is under {where} (e.g. "
                    f"{missing[0]}); it holds {_listing(self.root)}"
                )
            elif missing:
                log.warning("%d of %d videos of data.%s looked up are missing under %s (e.g. %s); "
                            "`python -m lit_i2v check-data` lists every one", len(missing), len(sample), split,
                            where, missing[0])  # fmt: skip
        if splits and len(self._absent) == len(splits):
            if self.root and not Path(self.root).is_dir():
                raise FileNotFoundError(f"data.root: {self.root} does not exist; {self.prepare_hint}")
            raise FileNotFoundError(next(iter(self._absent.values())))
        for message in self._absent.values():
            log.warning("%s; a stage that reads that split will stop", message)

    def _absent_key(self, split: str) -> str:
        return f"{self.files[split]}#{split}"

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
        return self.annotations.class_names()

    def records(self, split: str) -> list[VideoRecord]:
        """The videos of ``split`` (read once), their labels checked against ``num_classes`` when it is set."""
        if self.files[split] is None:
            raise ValueError(f"data.{split} is not set, so there is no {split} split")
        if split not in self._records:
            records, self._extras[split] = self.annotations.read(self.files[split], self.root, split)
            if self.num_classes is not None and isinstance(self.annotations, Labels):  # captions, answers: -1 is fine
                check_labels(records, self.num_classes, f"data.{split} ({self.files[split]})")
            self._records[split] = records
        return self._records[split]

    def references(self, split: str) -> list[list[str]]:
        """Every video's captions in ``split`` (``Captions`` annotations), in file order: the corpus whose document
        frequencies CIDEr-D rewards use in self-critical training."""
        if self.shards is not None:
            raise ConfigError(f"data.shards: the shards keep no captions, so there are no {split} references to read")
        self.records(split)
        extras = self._extras[split] or []
        if not extras or "captions" not in extras[0]:
            raise ConfigError(
                f"data.annotations: {type(self.annotations).__name__} gives no captions to read ({split})"
            )
        return [extra["captions"] for extra in extras]

    def check_labels(self, num_classes: int) -> None:
        """Check the labels of every split read so far, and of those read later, against ``num_classes`` (the task
        calls this in ``setup`` when the module was built without ``num_classes``)."""
        self.num_classes = num_classes
        for split, records in self._records.items():
            check_labels(records, num_classes, f"data.{split} ({self.files[split]})")

    def setup(self, stage: str | None = None) -> None:
        if self.synthetic is not None:
            self.prepare_data()  # idempotent; for use without a Trainer (check-data, benchmarks)
        wanted = {"fit": ["train", "val"], "validate": ["val"], "test": ["test"], "predict": ["test"]}
        for split in wanted.get(stage or "", SPLITS):
            if split in self.datasets or self.files[split] is None:
                continue
            key = self._absent_key(split) if getattr(self.annotations, "splits_share_a_file", False) else (
                self.files[split])  # fmt: skip
            if key in self._absent:  # none of its videos is there (``check_videos``)
                raise FileNotFoundError(self._absent[key])
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
        """The dataset of one split: the shards', or the annotated videos' (samples with their captions or
        questions)."""
        if self.shards is not None:
            return ShardedClips(self.shards, self.files[split], shuffle_buffer=self.shuffle_buffer,
                                decode_on_device=self.decode_on_device, **self.clip_args(split))  # fmt: skip
        records = self.records(split)
        return VideoClipDataset(records, **self.clip_args(split), extras=self._extras[split],
                                annotate=self.annotations.sample)  # fmt: skip

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
        loader = EpochLoader(
            dataset,
            batch_size=self.batch_size if training else self.eval_batch_size,
            sampler=sampler,
            drop_last=training,
            num_workers=self.num_workers,
            pin_memory=torch.cuda.is_available(),
            persistent_workers=self.num_workers > 0 and training,
            collate_fn=collate_clips,
            epoch_of=(lambda: trainer.current_epoch) if trainer is not None else None,
            batches_done=(lambda: progress.processed) if training and progress is not None else None,
        )
        if training and len(loader) == 0:  # Lightning would end the fit at once, with exit code 0 and no checkpoint
            videos = getattr(dataset, "num_videos", None) or len(dataset)
            raise ConfigError(
                f"data.train ({self.files['train']}): {videos} videos do not fill one batch of data.batch_size="
                f"{self.batch_size} on each of {world} device(s); lower the batch size or add videos"
            )
        return loader

    def on_after_batch_transfer(self, batch: dict, dataloader_idx: int) -> dict:
        """The data's last step, on the device the batch was moved to (Lightning calls it there): a training batch
        of packed crops (``PackedClips``) is resized, one of JPEG clips (``PackedJpegs``, ``decode_on_device``) is
        decoded (nvJPEG on a GPU), cropped and resized. Tasks receive tensors only: ``video`` uint8 ``(..., 3, S, S)``
        as the workers made it, or float32 ``(B, T, 3, S, S)`` in [0, 255] when resized here."""
        video = batch.get("video") if isinstance(batch, dict) else None
        if isinstance(video, PackedClips | PackedJpegs):
            batch["video"] = video.resize()  # (B, T, 3, S, S) float32, planar
        return batch


def _exists(record: VideoRecord) -> bool:
    return os.path.isdir(record.path) if record.num_frames is not None else os.path.isfile(record.path)


def _listing(folder: str) -> str:
    """A few entries of ``folder``, to show what a mistyped ``data.root`` points at."""
    try:
        entries = sorted(os.listdir(folder or "."))
    except OSError:
        return "nothing readable"
    if not entries:
        return "nothing"
    shown = ", ".join(entries[:4]) + (f", ... ({len(entries)} entries)" if len(entries) > 4 else "")
    return shown
