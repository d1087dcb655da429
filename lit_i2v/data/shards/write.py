"""Writing shards (``python -m lit_i2v shard``): each split's videos decoded once into tar shards of JPEG frames or
video bytes, in parallel and resumably, ``index.json`` last."""

from __future__ import annotations

import io
import json
import logging
import math
import os
import random
import tarfile
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path

import torch

from lit_i2v.data.formats.annotations import VideoRecord
from lit_i2v.data.shards.index import FORMAT, VERSION, read_index
from lit_i2v.data.video.decode import Backend, DecodeError, open_video
from lit_i2v.data.video.images import encode_jpeg

log = logging.getLogger("lit_i2v.data")


@dataclass
class ShardSpec:
    """How to write shards.

    Args:
        mode: ``frames`` (pre-decoded JPEG frames) or ``video`` (the video files' bytes).
        short_side: frames mode: resize so the short side is this many px (never upscales); 0 keeps the size.
        frames: frames mode: frames stored per video, uniform over it; 0 stores every frame.
        quality: frames mode: JPEG quality.
        samples_per_shard: videos per tar.
    """

    mode: str = "frames"
    short_side: int = 256
    frames: int = 0
    quality: int = 90
    samples_per_shard: int = 256

    def __post_init__(self) -> None:
        if self.mode not in ("frames", "video"):
            raise ValueError(f"shard mode must be 'frames' or 'video', got {self.mode!r}")
        if self.samples_per_shard < 1 or self.frames < 0 or self.short_side < 0:
            raise ValueError("samples_per_shard must be positive; frames and short_side must not be negative")


def stored_frames(total: int, keep: int) -> list[int]:
    """Source indices of the ``keep`` frames a shard stores of a ``total``-frame video: every frame when ``keep`` is
    0 or at least ``total``, else the centres of ``keep`` equal segments."""
    if keep <= 0 or keep >= total:
        return list(range(total))
    return [min(int((i + 0.5) * total / keep), total - 1) for i in range(keep)]


def _resize_short(frames: torch.Tensor, short_side: int) -> torch.Tensor:
    """uint8 ``(T, H, W, 3)`` -> ``(T, 3, h, w)`` with the short side at most ``short_side`` (0: unchanged)."""
    from torchvision.transforms.v2 import functional as TF

    clip = frames.permute(0, 3, 1, 2).contiguous()
    if short_side and min(clip.shape[-2:]) > short_side:
        clip = TF.resize(clip, short_side, antialias=True)
    return clip


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> list[int]:
    """Append one member; return ``[offset, size]`` of its data in the tar file."""
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime = len(data), 0o644, 0
    tar.addfile(info, io.BytesIO(data))
    padded = math.ceil(len(data) / tarfile.BLOCKSIZE) * tarfile.BLOCKSIZE
    return [tar.offset - padded, len(data)]


def _encode_sample(record: VideoRecord, index: int, spec: ShardSpec, backend: Backend) -> tuple[dict, list]:
    """Metadata and the (name suffix, bytes) members of one video; raises if it cannot be read or is damaged (its
    last declared frame does not decode: a file cut short is never stored, whichever frames a clip would take)."""
    meta = {"label": record.label, "video_id": record.video_id, "index": index}
    if spec.mode == "video":
        data = Path(record.path).read_bytes()
        reader = open_video(record.path, backend, data=data)  # check that it decodes, and count its frames
        reader.get_frames([reader.num_frames - 1])
        meta.update(num_frames=reader.num_frames, stored=None)
        return meta, [(Path(record.path).suffix or ".mp4", data)]
    reader = open_video(record.path, backend, record.num_frames, first_frame=record.first_frame)
    keep = stored_frames(reader.num_frames, spec.frames)
    if keep[-1] != reader.num_frames - 1:  # (otherwise the last chunk below decodes it)
        reader.get_frames([reader.num_frames - 1])
    members = []
    for start in range(0, len(keep), 32):  # bounded memory for long videos
        clip = _resize_short(reader.get_frames(keep[start : start + 32]), spec.short_side)
        for j, frame in enumerate(clip, start):
            members.append((f".{j:04d}.jpg", encode_jpeg(frame, spec.quality).numpy().tobytes()))
    meta.update(num_frames=reader.num_frames, stored=None if len(keep) == reader.num_frames else keep)
    return meta, members


def _write_shard(job: tuple) -> dict:
    """Write one tar and its index (under temporary names, renamed when complete); skip a finished one."""
    out, name, items, spec, backend = job
    tar_path, idx_path = out / f"{name}.tar", out / f"{name}.idx.json"
    if tar_path.is_file() and idx_path.is_file():
        return {"name": name, "samples": len(json.loads(idx_path.read_text())), "failed": [], "skipped": True}
    torch.set_num_threads(1)
    tmp = out / f".{name}.{os.getpid()}.tmp"
    rows, failed = [], []
    with tarfile.open(tmp, "w", format=tarfile.USTAR_FORMAT) as tar:
        for index, record in items:
            try:
                meta, members = _encode_sample(record, index, spec, backend)
            except Exception as err:  # a broken video is reported, never fatal
                failed.append(str(err) if isinstance(err, DecodeError) else f"{record.path}: {err}")  # (path first)
                continue
            key = f"{index:09d}"
            ranges = [_add(tar, f"{key}.json", json.dumps(meta).encode())]
            ranges += [_add(tar, key + suffix, data) for suffix, data in members]
            rows.append({"key": key, **meta, "members": ranges[1:]})
    tmp.replace(tar_path)
    tmp_idx = out / f".{name}.idx.{os.getpid()}.tmp"
    tmp_idx.write_text(json.dumps(rows))
    tmp_idx.replace(idx_path)  # written last: a shard counts as finished only with its index
    return {"name": name, "samples": len(rows), "failed": failed, "skipped": False}


def write_shards(
    splits: dict[str, list[VideoRecord]],
    out: str | Path,
    spec: ShardSpec | None = None,
    class_names: list[str] | None = None,
    workers: int = 2,
    seed: int = 0,
    backend: Backend = "auto",
) -> dict:
    """Write each split's videos to tar shards under ``out`` and ``index.json`` last; returns the index.

    Training videos are shuffled (with ``seed``) before they are cut into shards, so every shard mixes classes;
    evaluation splits keep the annotation order. Parallel over shards and resumable: finished shards are kept.
    """
    spec = spec or ShardSpec()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    index = {"format": FORMAT, "version": VERSION, "mode": spec.mode, "short_side": spec.short_side,
             "frames": spec.frames, "class_names": class_names, "splits": {}}  # fmt: skip
    for split, records in splits.items():
        order = list(range(len(records)))
        if split == "train":
            random.Random(seed).shuffle(order)
        chunks = [order[i : i + spec.samples_per_shard] for i in range(0, len(order), spec.samples_per_shard)]
        jobs = [
            (out, f"{split}-{n:06d}", [(i, records[i]) for i in chunk], spec, backend) for n, chunk in enumerate(chunks)
        ]
        if workers > 1 and len(jobs) > 1:
            with get_context("spawn").Pool(min(workers, len(jobs))) as pool:
                results = pool.map(_write_shard, jobs, chunksize=1)
        else:
            results = [_write_shard(job) for job in jobs]
        failed = [f for r in results for f in r["failed"]]
        for failure in failed:
            log.warning("not sharded: %s", failure)
        index["splits"][split] = {
            "shards": [{"file": f"{r['name']}.tar", "samples": r["samples"]} for r in results],
            "samples": sum(r["samples"] for r in results),
            "videos": len(records),
            "failed": failed,
        }
    previous = read_index(out, missing_ok=True)
    if previous:  # sharding one split at a time keeps the others
        index["splits"] = {**previous["splits"], **index["splits"]}
    tmp = out / ".index.json.tmp"
    tmp.write_text(json.dumps(index, indent=1))
    tmp.replace(out / "index.json")
    return index
