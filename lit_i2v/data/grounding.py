"""Temporal grounding data: moment annotations, per-frame CLIP features extracted once, and their DataModule.

Grounding trains on features, not pixels (post-network tuning): ``python -m lit_i2v extract --config X.yaml`` runs
the frozen CLIP image tower over every video at ``rate`` frames per second and the text tower over every query,
and writes them under ``data.features``; the grounding model then trains in minutes from those files.

Annotation formats (``format``):

- ``charades_sta``: Charades-STA's text files, ``<video id> <start> <end>##<sentence>`` per line (seconds);
- ``qvhighlights``: QVHighlights' JSON lines, ``{"qid", "query", "vid", "duration", "relevant_windows": [[s, e],
  ...]}`` (several windows per query).

Feature folder (written by :func:`extract_features`, resumable shard by shard)::

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
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import lightning as L
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from lit_i2v.data.annotations import AnnotationError
from lit_i2v.data.dataset import UnpaddedDistributedSampler
from lit_i2v.data.decode import Backend, open_video
from lit_i2v.data.loader import SplitLoaders
from lit_i2v.data.transforms import EvalTransform

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


# ---------------------------------------------------------------------------------------------------- extraction


class FeatureExtractor:
    """What ``extract`` runs: a CLIP's towers, frozen, at ``rate`` frames per second.

    Args:
        arch: CLIP architecture (``lit_i2v.backbones.CLIP``).
        pretrained: its weights (tag, file or hub name).
        rate: frames embedded per second of video (Charades-STA recipes: 2-4; QVHighlights: 0.5, one per 2 s).
        batch_size: frames per forward pass.
        backend: video decoder.
        videos_per_shard: videos per feature file.
    """

    def __init__(
        self,
        arch: str = "ViT-B-16",
        pretrained: str | None = "openai",
        rate: float = 2.0,
        batch_size: int = 64,
        backend: Backend = "auto",
        videos_per_shard: int = 256,
    ) -> None:
        if rate <= 0:
            raise ValueError(f"data.extractor.rate must be positive, got {rate}")
        self.arch, self.pretrained, self.rate = arch, pretrained, rate
        self.batch_size, self.backend, self.videos_per_shard = batch_size, backend, videos_per_shard
        self._model = None

    @property
    def model(self):
        if self._model is None:
            from lit_i2v.backbones import CLIP

            self._model = CLIP(self.arch, self.pretrained).eval().requires_grad_(False)
        return self._model

    def describe(self) -> dict:
        return {"arch": self.arch, "pretrained": self.pretrained, "rate": self.rate}

    @torch.no_grad()
    def video(self, path: str, device: torch.device) -> tuple[Tensor, float]:
        """``(N, E)`` float16 embeddings of the centre frames of N equal segments, and the duration in seconds."""
        reader = open_video(path, self.backend)
        duration = reader.num_frames / reader.fps
        n = max(1, round(duration * self.rate))
        indices = [min(int((k + 0.5) * reader.num_frames / n), reader.num_frames - 1) for k in range(n)]
        size = self.model.pretrained_cfg["image_size"]
        transform = EvalTransform(size=size)
        cfg = self.model.pretrained_cfg
        mean = torch.tensor(cfg["mean"], device=device).view(1, 3, 1, 1) * 255
        std = torch.tensor(cfg["std"], device=device).view(1, 3, 1, 1) * 255
        out = []
        for start in range(0, n, self.batch_size):
            frames = reader.get_frames(indices[start : start + self.batch_size])
            images = transform(frames)[0].to(device).contiguous()  # (b, 3, S, S) uint8, planar
            out.append(self.model.encode_image((images.float() - mean) / std).half().cpu())
        return torch.cat(out), duration

    @torch.no_grad()
    def texts(self, queries: list[str], device: torch.device) -> Tensor:
        out = []
        for start in range(0, len(queries), self.batch_size):
            tokens = self.model.tokenize(queries[start : start + self.batch_size]).to(device)
            out.append(self.model.encode_text(tokens).half().cpu())
        return torch.cat(out) if out else torch.zeros(0, self.model.embed_dim, dtype=torch.float16)


def _atomic_json(path: Path, data) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data))
    tmp.replace(path)


def _atomic_tensors(path: Path, tensors: dict[str, Tensor]) -> None:
    from safetensors.torch import save_file

    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(tmp))
    tmp.replace(path)


def extract_features(
    videos: dict[str, str],
    queries: list[str],
    out: str | Path,
    extractor: FeatureExtractor,
    device: str | torch.device = "cpu",
    splits: dict[str, str] | None = None,
) -> dict:
    """Embed ``videos`` (id → path) and ``queries`` under ``out``; returns the index. A finished video shard is kept
    (resumable); a video that cannot be decoded is reported in the index and left out. ``splits`` (split →
    annotation file) is recorded so that a DataModule can tell which annotations the features cover."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    device = torch.device(device)
    extractor.model.to(device)
    ids = sorted(videos)
    shards, failed = [], []
    per = extractor.videos_per_shard
    for n, start in enumerate(range(0, len(ids), per)):
        name = f"video-{n:06d}"
        shards.append(name)
        if (out / f"{name}.safetensors").is_file() and (out / f"{name}.json").is_file():
            continue
        tensors, meta = {}, {}
        for vid in ids[start : start + per]:
            try:
                features, duration = extractor.video(videos[vid], device)
            except Exception as err:  # reported in the index, never fatal
                log.warning("not extracted: %s: %s", videos[vid], err)
                meta[vid] = {"failed": str(err)}
                continue
            tensors[vid] = features
            meta[vid] = {"duration": duration, "num": len(features)}
        _atomic_tensors(out / f"{name}.safetensors", tensors)
        _atomic_json(out / f"{name}.json", meta)  # last: the shard counts as finished only with it
        log.info("extracted %s (%d videos)", name, len(tensors))
    for name in shards:
        failed += [f"{vid}: {m['failed']}" for vid, m in json.loads((out / f"{name}.json").read_text()).items()
                   if "failed" in m]  # fmt: skip
    unique = sorted(set(queries))
    previous = json.loads((out / "text.json").read_text()) if (out / "text.json").is_file() else None
    if previous != unique or not (out / "text.safetensors").is_file():
        _atomic_tensors(out / "text.safetensors", {"text": extractor.texts(unique, device)})
        _atomic_json(out / "text.json", unique)
    dim = extractor.model.embed_dim
    index = {"format": "lit_i2v-features", "version": 1, **extractor.describe(), "dim": dim,
             "shards": shards, "videos": len(ids) - len(failed), "failed": failed, "splits": splits or {}}  # fmt: skip
    _atomic_json(out / "index.json", index)
    return index


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
        features: feature folder written by ``python -m lit_i2v extract``.
        train: annotation file of the training split.
        val: annotation file of the validation split.
        test: annotation file of the test split (defaults to ``val``).
        root: folder of the videos (for ``extract``).
        format: ``auto``, ``charades_sta`` or ``qvhighlights``.
        video_ext: extension of a video id's file under ``root``.
        extractor: the frozen CLIP and frame rate that ``extract`` uses.
        batch_size: queries per device and step.
        eval_batch_size: queries per device in evaluation (defaults to ``batch_size``).
        num_workers: DataLoader workers.
    """

    def __init__(
        self,
        features: str,
        train: str | None = None,
        val: str | None = None,
        test: str | None = None,
        root: str = "",
        format: GroundingFormat = "auto",
        video_ext: str = ".mp4",
        extractor: FeatureExtractor | None = None,
        batch_size: int = 32,
        eval_batch_size: int | None = None,
        num_workers: int = 2,
    ) -> None:
        super().__init__()
        self.features = features
        self.files = {"train": train, "val": val, "test": test or val}
        self.root, self.format, self.video_ext = root, format, video_ext
        self.extractor = extractor or FeatureExtractor()
        self.batch_size, self.eval_batch_size = batch_size, eval_batch_size or batch_size
        self.num_workers = num_workers
        self.datasets: dict[str, MomentDataset] = {}
        if not self.generates_data:
            for key, path in self.files.items():
                if path and not Path(path).is_file():
                    raise FileNotFoundError(f"data.{key}: {path} does not exist; see docs/datasets.md (grounding)")

    generates_data = False  # the synthetic set writes its files in prepare_data

    def moments(self, split: str) -> list[Moment]:
        path = self.files[split]
        if path is None:
            raise ValueError(f"data.{split} is not set, so there is no {split} split")
        return read_moments(path, self.format)

    def videos(self, splits: list[str]) -> dict[str, str]:
        """Video id → file of every video the splits' moments name."""
        return {m.video_id: str(Path(self.root) / f"{m.video_id}{self.video_ext}") for s in splits
                for m in self.moments(s)}  # fmt: skip

    def extract(self, splits: list[str] | None = None, device: str = "cpu") -> dict:
        """Write the features of the splits' videos and queries under ``features``."""
        splits = splits or [s for s in ("train", "val", "test") if self.files[s]]
        queries = [m.query for s in splits for m in self.moments(s)]
        return extract_features(self.videos(splits), queries, self.features, self.extractor, device,
                                {s: str(self.files[s]) for s in splits})  # fmt: skip

    def setup(self, stage: str | None = None) -> None:
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


class SyntheticGrounding(GroundingDataModule):
    """The synthetic grounding set (``synthetic.write_grounding``: two objects a video, each moving in its own
    window; Charades-STA format), written and its features extracted with the tiny synthetic CLIP on first use.

    Args:
        root: dataset folder; features go to ``<root>/features``.
        counts: videos in train, val and test.
        extractor: defaults to ``ViT-S-8-tiny`` with the ``synthetic`` weights at 4 frames per second.
        batch_size, eval_batch_size, num_workers: as ``GroundingDataModule``.
    """

    generates_data = True

    def __init__(
        self,
        root: str = "data/synthetic-grounding",
        counts: tuple[int, int, int] = (240, 80, 80),
        extractor: FeatureExtractor | None = None,
        batch_size: int = 32,
        eval_batch_size: int | None = None,
        num_workers: int = 0,
    ) -> None:
        base = Path(root)
        super().__init__(
            features=str(base / "features"),
            train=str(base / "charades_sta_train.txt"),
            val=str(base / "charades_sta_val.txt"),
            test=str(base / "charades_sta_test.txt"),
            root=str(base / "videos"),
            format="charades_sta",
            extractor=extractor or FeatureExtractor("ViT-S-8-tiny", "synthetic", rate=4.0),
            batch_size=batch_size,
            eval_batch_size=eval_batch_size,
            num_workers=num_workers,
        )
        self.dataset_root, self.counts = base, tuple(counts)

    def prepare_data(self) -> None:
        from lit_i2v.data.synthetic import write_grounding

        write_grounding(self.dataset_root, self.counts)
        if not (Path(self.features) / "index.json").is_file():
            self.extract()

    def setup(self, stage: str | None = None) -> None:
        self.prepare_data()  # idempotent; for use without a Trainer
        super().setup(stage)
