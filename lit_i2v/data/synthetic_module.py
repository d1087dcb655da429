"""The built-in default data: the synthetic motion set, generated on first use, read through the SSv2 loaders (and
with captions, for retrieval)."""

from __future__ import annotations

from pathlib import Path

from lit_i2v.data.captions import CaptionDataModule
from lit_i2v.data.datamodule import VideoDataModule
from lit_i2v.data.decode import Backend
from lit_i2v.data.qa import QADataModule, QAFormat
from lit_i2v.data.sampling import FrameSampler
from lit_i2v.data.synthetic import SynthSpec, synthesize, write_captions, write_qa
from lit_i2v.data.transforms import EvalTransform, TrainTransform


class _WrittenOnFirstUse:
    """The synthetic set under ``dataset_root``, written by ``prepare_data`` (rank 0 only) when it is not there yet;
    ``setup`` calls it too (idempotent), for use without a Trainer (check-data, benchmarks)."""

    generates_data = True
    with_captions = False
    with_questions = False

    def _remember(self, root: str, counts: tuple[int, int, int], size: int, frames: int, seed: int) -> None:
        self.dataset_root = Path(root)
        self.counts = counts
        self.spec = SynthSpec(size=size, frames=frames)
        self.synth_seed = seed

    def prepare_data(self) -> None:
        if self.shards is not None:
            return  # streamed from shards written earlier
        synthesize(self.dataset_root, *self.counts, spec=self.spec, seed=self.synth_seed)
        if self.with_captions:
            write_captions(self.dataset_root)
        if self.with_questions:
            write_qa(self.dataset_root)

    def setup(self, stage: str | None = None) -> None:
        self.prepare_data()
        super().setup(stage)


def _default_transforms(size: int, train: TrainTransform | None, evaluate: EvalTransform | None) -> dict:
    # No flip: the classes (left/right) depend on direction, as in SSv2.
    return dict(
        train_transform=train or TrainTransform(size=size, scale=(0.5, 1.0), hflip=False),
        eval_transform=evaluate or EvalTransform(size=size),
    )


class SyntheticMotion(_WrittenOnFirstUse, VideoDataModule):
    """``VideoDataModule`` over ``root``, written by ``prepare_data`` (rank 0 only) when it is not there yet.

    Args:
        root: dataset folder (``videos/``, ``train.json``, ``validation.json``, ``test.json``, ``labels.json``).
        num_train: training videos to generate.
        num_val: validation videos.
        num_test: test videos.
        video_size: frame side of the generated videos, px.
        video_frames: frames per generated video.
        seed: generation seed.
        sampler, train_transform, eval_transform, batch_size, eval_batch_size, num_workers, backend, shards,
        decode_on_device: as in ``VideoDataModule`` (with ``shards``, the set written by ``python -m lit_i2v shard`` is
            streamed).
    """

    def __init__(
        self,
        root: str = "data/synthetic-motion",
        num_train: int = 480,
        num_val: int = 160,
        num_test: int = 160,
        video_size: int = 64,
        video_frames: int = 24,
        seed: int = 0,
        sampler: FrameSampler | None = None,
        train_transform: TrainTransform | None = None,
        eval_transform: EvalTransform | None = None,
        batch_size: int = 16,
        eval_batch_size: int | None = None,
        num_workers: int = 2,
        backend: Backend = "auto",
        shards: str | None = None,
        decode_on_device: bool = False,
    ) -> None:
        base = Path(root)
        super().__init__(
            train=str(base / "train.json"),
            val=str(base / "validation.json"),
            test=str(base / "test.json"),
            root=str(base / "videos"),
            labels=str(base / "labels.json"),
            format="ssv2",
            sampler=sampler,
            **_default_transforms(video_size, train_transform, eval_transform),
            batch_size=batch_size,
            eval_batch_size=eval_batch_size,
            num_workers=num_workers,
            backend=backend,
            shards=shards,
            decode_on_device=decode_on_device,
        )
        self._remember(root, (num_train, num_val, num_test), video_size, video_frames, seed)


class SyntheticCaptions(_WrittenOnFirstUse, CaptionDataModule):
    """The synthetic motion set with two captions per video (``write_captions``), for text-video retrieval;
    generated on first use like ``SyntheticMotion``. Args as ``SyntheticMotion``."""

    with_captions = True

    def __init__(
        self,
        root: str = "data/synthetic-motion",
        num_train: int = 480,
        num_val: int = 160,
        num_test: int = 160,
        video_size: int = 64,
        video_frames: int = 24,
        seed: int = 0,
        sampler: FrameSampler | None = None,
        train_transform: TrainTransform | None = None,
        eval_transform: EvalTransform | None = None,
        batch_size: int = 16,
        eval_batch_size: int | None = None,
        num_workers: int = 2,
        backend: Backend = "auto",
    ) -> None:
        base = Path(root)
        super().__init__(
            train=str(base / "captions_train.json"),
            val=str(base / "captions_validation.json"),
            test=str(base / "captions_test.json"),
            root=str(base / "videos"),
            format="captions",
            sampler=sampler,
            **_default_transforms(video_size, train_transform, eval_transform),
            batch_size=batch_size,
            eval_batch_size=eval_batch_size,
            num_workers=num_workers,
            backend=backend,
        )
        self._remember(root, (num_train, num_val, num_test), video_size, video_frames, seed)


class SyntheticQA(_WrittenOnFirstUse, QADataModule):
    """The synthetic motion set with questions (``write_qa``): open-ended (``qa``: motion and colour questions over
    a 16-answer vocabulary) or multiple choice (``mc``: 5 candidate captions). Other args as ``SyntheticMotion``."""

    with_questions = True

    def __init__(
        self,
        root: str = "data/synthetic-motion",
        format: QAFormat = "qa",
        num_train: int = 480,
        num_val: int = 160,
        num_test: int = 160,
        video_size: int = 64,
        video_frames: int = 24,
        seed: int = 0,
        sampler: FrameSampler | None = None,
        train_transform: TrainTransform | None = None,
        eval_transform: EvalTransform | None = None,
        batch_size: int = 16,
        eval_batch_size: int | None = None,
        num_workers: int = 2,
        backend: Backend = "auto",
    ) -> None:
        base = Path(root)
        super().__init__(
            train=str(base / f"{format}_train.json"),
            val=str(base / f"{format}_validation.json"),
            test=str(base / f"{format}_test.json"),
            root=str(base / "videos"),
            format=format,
            answers=str(base / "answers.json") if format == "qa" else None,
            sampler=sampler,
            **_default_transforms(video_size, train_transform, eval_transform),
            batch_size=batch_size,
            eval_batch_size=eval_batch_size,
            num_workers=num_workers,
            backend=backend,
        )
        self._remember(root, (num_train, num_val, num_test), video_size, video_frames, seed)
