"""Feature extraction for tasks that train on features (temporal grounding): decode each video at the extractor's
frame rate, embed the frames and every query with its frozen CLIP, and write the feature folder that
``lit_i2v.data.grounding.FeatureStore`` reads (the format is described in ``lit_i2v/data/grounding.py``).

Here data and model meet outside a task, as in ``preprocess``: the videos and queries come from the DataModule
(``GroundingDataModule.videos`` / ``queries``), the embeddings from the task's ``extractor``
(``lit_i2v.backbones.FeatureExtractor``); neither side imports the other.
"""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path

import torch
from torch import Tensor

from lit_i2v.backbones import FeatureExtractor
from lit_i2v.data.video.decode import Backend, open_video
from lit_i2v.data.video.transforms import EvalTransform

log = logging.getLogger("lit_i2v.extract")


def segment_frames(path: str, rate: float, size: int, backend: Backend = "auto") -> tuple[Tensor, float]:
    """The centre frames of a video's N equal segments (N = max(1, round(duration * rate))), resized and centre-
    cropped to ``size``: uint8 ``(N, 3, size, size)``, and the duration in seconds."""
    reader = open_video(path, backend)
    duration = reader.num_frames / reader.fps
    n = max(1, round(duration * rate))
    indices = [min(int((k + 0.5) * reader.num_frames / n), reader.num_frames - 1) for k in range(n)]
    return EvalTransform(size=size)(reader.get_frames(indices))[0].contiguous(), duration  # (N, 3, S, S) uint8


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
    backend: Backend = "auto",
    videos_per_shard: int = 256,
) -> dict:
    """Embed ``videos`` (id → path) and ``queries`` under ``out``; returns the index. A finished video shard is kept
    (resumable); a video that cannot be decoded is reported in the index and left out. ``splits`` (split →
    annotation file) is recorded so that a DataModule can tell which annotations the features cover."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    extractor.to(torch.device(device))
    ids = sorted(videos)
    shards, failed = [], []
    for n, start in enumerate(range(0, len(ids), videos_per_shard)):
        name = f"video-{n:06d}"
        shards.append(name)
        if (out / f"{name}.safetensors").is_file() and (out / f"{name}.json").is_file():
            continue
        tensors, meta = {}, {}
        for vid in ids[start : start + videos_per_shard]:
            try:
                frames, duration = segment_frames(videos[vid], extractor.rate, extractor.image_size, backend)
                features = extractor.images(frames)  # (N, E) float16
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
        _atomic_tensors(out / "text.safetensors", {"text": extractor.texts(unique)})
        _atomic_json(out / "text.json", unique)
    index = {"format": "lit_i2v-features", "version": 1, **extractor.describe(), "dim": extractor.embed_dim,
             "shards": shards, "videos": len(ids) - len(failed), "failed": failed, "splits": splits or {}}  # fmt: skip
    _atomic_json(out / "index.json", index)
    return index


def extract_for(datamodule, extractor: FeatureExtractor, splits: list[str] | None = None, device: str = "cpu") -> dict:
    """Extract the features of a ``GroundingDataModule``'s splits (every split set, by default) into its
    ``features`` folder with ``extractor``."""
    splits = splits or datamodule.splits()
    return extract_features(
        datamodule.videos(splits), datamodule.queries(splits), datamodule.features, extractor, device,
        {s: str(datamodule.files[s]) for s in splits}, backend=datamodule.backend,
    )  # fmt: skip


def prepare_features(model, datamodule) -> None:
    """Before a run: a synthetic grounding set whose features are not there yet is written and extracted with the
    model's extractor (about a minute for the tiny CLIP). Real datasets are extracted ahead with ``extract``: a
    missing feature folder is then an error naming that command (``FeatureStore``)."""
    if getattr(datamodule, "synthetic", None) is None or not hasattr(datamodule, "features"):
        return
    index = Path(datamodule.features) / "index.json"
    if index.is_file() or getattr(model, "extractor", None) is None:
        return
    local_rank = int(os.environ.get("LOCAL_RANK", os.environ.get("SLURM_LOCALID", "0")))
    if local_rank != 0:  # torchrun / srun start every process: one per machine writes, the others wait for it
        log.info("waiting for local rank 0 to write the synthetic grounding set's features (%s)", index)
        while not index.is_file():
            time.sleep(2)
        return
    datamodule.prepare_data()
    log.info("extracting the synthetic grounding set's features into %s", datamodule.features)
    with torch.random.fork_rng():  # building the extractor draws random numbers: a first run trains as a later one
        extract_for(datamodule, model.extractor)
