"""Temporal grounding data: moment annotations, per-frame CLIP features extracted once, and their DataModule.

Grounding trains on features, not pixels (post-network tuning): ``python -m lit_i2v extract --config X.yaml`` runs
the task's frozen CLIP (``model.init_args.extractor``) over every video at its ``rate`` frames per second and over
every query, and writes them under ``data.features`` (``lit_i2v.extract``); the grounding model then trains in
minutes from those files. This module reads them; it builds no model.

Annotation formats (``format``):

- ``charades_sta``: Charades-STA's text files, ``<video id> <start> <end>##<sentence>`` per line (seconds);
- ``qvhighlights``: QVHighlights' JSON lines, ``{"qid", "query", "vid", "duration", "relevant_windows": [[s, e],
  ...]}`` (several windows per query).

Feature folder (written by ``lit_i2v.extract.extract_features``, resumable shard by shard)::

    index.json                 arch, weights, rate, dim; the video shards; per split the annotation file it covers
    video-000000.safetensors   per video id: (N, E) float16 image embeddings of N equal segments' centre frames
    video-000000.json          per video id: duration (s) and N
    text.safetensors           (Q, E) float16 text embeddings of every distinct query, rows as in text.json
    text.json                  the queries

A video's N features stand for N equal segments of its duration (N = max(1, round(duration * rate))): feature k
covers seconds ``[k * d / N, (k + 1) * d / N]``, which is how predicted segment spans become seconds.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import lightning as L
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from lit_i2v.data.formats.annotations import AnnotationError
from lit_i2v.data.loading.dataset import UnpaddedDistributedSampler
from lit_i2v.data.loading.loader import SplitLoaders
from lit_i2v.data.synthetic import SYNTHETIC_GROUNDING_ROOT, SyntheticMoments
from lit_i2v.data.video.decode import Backend
from lit_i2v.errors import ConfigError

log = logging.getLogger("lit_i2v.data")
GroundingFormat = Literal["auto", "charades_sta", "qvhighlights"]


@dataclass
class Moment:
    """One query: ``windows`` are its ground-truth ``(start, end)`` spans in seconds (empty for hidden test sets)."""

    video_id: str
    query: str
    windows: list[tuple[float, float]]
    duration: float | None = None
    qid: str = ""
    extra: dict = field(default_factory=dict)


def read_moments(path: str | Path, format: GroundingFormat = "auto") -> list[Moment]:
    """Read a grounding annotation file; an unreadable line raises ``AnnotationError`` naming file and line."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist; see docs/datasets.md for the grounding datasets")
    if format == "auto":
        format = "qvhighlights" if path.suffix in (".jsonl", ".json") else "charades_sta"
    moments = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            if format == "charades_sta":
                head, sentence = line.split("##", 1)
                vid, start, end = head.split()
                moments.append(Moment(vid, sentence.strip(), [(float(start), float(end))], qid=str(len(moments))))
            else:
                row = json.loads(line)
                windows = [(float(s), float(e)) for s, e in row.get("relevant_windows", [])]
                moments.append(Moment(str(row["vid"]), row["query"], windows, float(row["duration"]),
                                      str(row.get("qid", len(moments)))))  # fmt: skip
        except (ValueError, KeyError, TypeError) as err:
            raise AnnotationError(f"{path}:{number}: not a {format} line ({err}): {line[:120]!r}") from None
        bad = [w for w in moments[-1].windows if w[1] < w[0]]
        if bad:
            raise AnnotationError(f"{path}:{number}: window {bad[0]} ends before it starts")
    if not moments:
        raise AnnotationError(f"{path}: no moments")
    return moments


# ---------------------------------------------------------------------------------------------------- reading


class FeatureStore:
    """Read access to an extracted feature folder: video features by id (memory-mapped per shard) and query
    embeddings by text."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        path = self.root / "index.json"
        if not path.is_file():
            raise FileNotFoundError(
                f"{path} does not exist: extract the features first, `python -m lit_i2v extract --config X.yaml`"
            )
        self.index = json.loads(path.read_text())
        self.dim = self.index["dim"]
        self.meta: dict[str, dict] = {}
        self.shard_of: dict[str, str] = {}
        for name in self.index["shards"]:
            for vid, meta in json.loads((self.root / f"{name}.json").read_text()).items():
                if "failed" not in meta:
                    self.meta[vid], self.shard_of[vid] = meta, name
        self.queries = {q: i for i, q in enumerate(json.loads((self.root / "text.json").read_text()))}
        self._text: Tensor | None = None
        self._open: dict[str, object] = {}

    def video(self, vid: str) -> Tensor:
        from safetensors import safe_open

        name = self.shard_of[vid]
        if name not in self._open:
            self._open[name] = safe_open(str(self.root / f"{name}.safetensors"), "pt")
        return self._open[name].get_tensor(vid)

    def text(self, query: str) -> Tensor:
        if self._text is None:
            from safetensors.torch import load_file

            self._text = load_file(str(self.root / "text.safetensors"))["text"]
        return self._text[self.queries[query]]

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_open": {}}  # file handles stay in the process that opened them


class MomentDataset(Dataset):
    """Per query: video features ``(N, E)``, query embedding ``(E,)``, windows in seconds and the duration."""

    def __init__(self, moments: list[Moment], store: FeatureStore) -> None:
        self.moments, self.store = moments, store

    def __len__(self) -> int:
        return len(self.moments)

    def __getitem__(self, index: int) -> dict:
        m = self.moments[index]
        features = self.store.video(m.video_id).float()
        duration = m.duration or self.store.meta[m.video_id]["duration"]
        return {"video": features, "query": self.store.text(m.query).float(), "windows": m.windows,
                "duration": duration, "qid": m.qid, "video_id": m.video_id, "index": index}  # fmt: skip


def collate_moments(samples: list[dict]) -> dict:
    """Pads video features to the longest in the batch: ``video`` (B, N, E), ``mask`` (B, N) True where real."""
    longest = max(len(s["video"]) for s in samples)
    video = torch.zeros(len(samples), longest, samples[0]["video"].shape[-1])
    mask = torch.zeros(len(samples), longest, dtype=torch.bool)
    for i, s in enumerate(samples):
        video[i, : len(s["video"])] = s["video"]
        mask[i, : len(s["video"])] = True
    return {"video": video, "mask": mask, "query": torch.stack([s["query"] for s in samples]),
            "windows": [s["windows"] for s in samples], "duration": torch.tensor([s["duration"] for s in samples]),
            "qid": [s["qid"] for s in samples], "video_id": [s["video_id"] for s in samples],
            "index": torch.tensor([s["index"] for s in samples])}  # fmt: skip


class GroundingDataModule(SplitLoaders, L.LightningDataModule):
    """Moments and their extracted features, for ``TemporalGrounding``.

    Args:
        features: feature folder written by ``python -m lit_i2v extract`` (with ``synthetic``: ``<root>/features``).
        train: annotation file of the training split.
        val: annotation file of the validation split.
        test: annotation file of the test split (defaults to ``val``).
        root: folder of the videos (for ``extract``).
        format: ``auto``, ``charades_sta`` or ``qvhighlights``.
        video_ext: extension of a video id's file under ``root``.
        backend: video decoder ``extract`` uses.
        batch_size: queries per device and step.
        eval_batch_size: queries per device in evaluation (defaults to ``batch_size``).
        num_workers: DataLoader workers.
        synthetic: write the synthetic grounding set under ``root`` (default ``data/synthetic-grounding``) on first
            use and read it (its files and format are the set's own); the CLI extracts its features with the
            task's extractor before the run.
    """

    def __init__(
        self,
        features: str | None = None,
        train: str | None = None,
        val: str | None = None,
        test: str | None = None,
        root: str = "",
        format: GroundingFormat = "auto",
        video_ext: str = ".mp4",
        backend: Backend = "auto",
        batch_size: int = 32,
        eval_batch_size: int | None = None,
        num_workers: int = 2,
        synthetic: SyntheticMoments | None = None,
    ) -> None:
        super().__init__()
        self.synthetic = synthetic
        if synthetic is not None:
            given = [k for k, v in (("train", train), ("val", val), ("test", test)) if v]
            if given:
                raise ConfigError(
                    f"data.synthetic writes and reads its own annotation files, but data.{given[0]} is set too: "
                    "drop it, or set data.synthetic: null to read your own"
                )
            self.dataset_root = Path(root or SYNTHETIC_GROUNDING_ROOT)
            train, val, test = (str(self.dataset_root / f"charades_sta_{s}.txt") for s in ("train", "val", "test"))
            root, format = str(self.dataset_root / "videos"), "charades_sta"
            features = features or str(self.dataset_root / "features")
        if not features:
            raise ConfigError("data.features: set the feature folder that `python -m lit_i2v extract` writes")
        self.features = features
        self.files = {"train": train, "val": val, "test": test or val}
        self.root, self.format, self.video_ext, self.backend = root, format, video_ext, backend
        self.batch_size, self.eval_batch_size = batch_size, eval_batch_size or batch_size
        self.num_workers = num_workers
        self.datasets: dict[str, MomentDataset] = {}
        if synthetic is None:
            for key, path in self.files.items():
                if path and not Path(path).is_file():
                    raise FileNotFoundError(f"data.{key}: {path} does not exist; see docs/datasets.md (grounding)")

    def prepare_data(self) -> None:
        if self.synthetic is not None:
            self.synthetic.write(self.dataset_root)

    def splits(self) -> list[str]:
        """The splits set, each once (the test file is often val's)."""
        return [
            s for s in ("train", "val", "test") if self.files[s] and (s != "test" or self.files[s] != self.files["val"])
        ]

    def moments(self, split: str) -> list[Moment]:
        path = self.files[split]
        if path is None:
            raise ValueError(f"data.{split} is not set, so there is no {split} split")
        return read_moments(path, self.format)

    def videos(self, splits: list[str]) -> dict[str, str]:
        """Video id → file of every video the splits' moments name (what ``extract`` embeds)."""
        return {m.video_id: str(Path(self.root) / f"{m.video_id}{self.video_ext}") for s in splits
                for m in self.moments(s)}  # fmt: skip

    def queries(self, splits: list[str]) -> list[str]:
        """Every query of the splits (what ``extract`` embeds)."""
        return [m.query for s in splits for m in self.moments(s)]

    def setup(self, stage: str | None = None) -> None:
        if self.synthetic is not None:
            self.prepare_data()  # idempotent; for use without a Trainer
        wanted = {"fit": ["train", "val"], "validate": ["val"], "test": ["test"], "predict": ["test"]}
        store = None
        for split in wanted.get(stage or "", ["train", "val", "test"]):
            if split in self.datasets or self.files[split] is None:
                continue
            store = store or FeatureStore(self.features)
            moments = self.moments(split)
            kept = [m for m in moments if m.video_id in store.meta and m.query in store.queries]
            if len(kept) < len(moments):
                missing = sorted({m.video_id for m in moments if m.video_id not in store.meta})
                log.warning("%s: %d of %d moments have no features (videos %s...); run `extract` again",
                            split, len(moments) - len(kept), len(moments), missing[:5])  # fmt: skip
            if not kept:
                raise FileNotFoundError(
                    f"data.features: {self.features} holds no features for data.{split} ({self.files[split]}); "
                    "run `python -m lit_i2v extract --config X.yaml`"
                )
            self.datasets[split] = MomentDataset(kept, store)

    def _loader(self, split: str) -> DataLoader:
        if split not in self.datasets:
            self.setup(None)
        dataset, training = self.datasets[split], split == "train"
        trainer = self.trainer
        sampler = None
        if not training and trainer is not None and trainer.world_size > 1:
            sampler = UnpaddedDistributedSampler(dataset, trainer.world_size, trainer.global_rank)
        return DataLoader(dataset, batch_size=self.batch_size if training else self.eval_batch_size,
                          shuffle=training, sampler=sampler, drop_last=training, num_workers=self.num_workers,
                          collate_fn=collate_moments, persistent_workers=training and self.num_workers > 0)  # fmt: skip
