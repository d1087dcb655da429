"""Tar shards of a split, written once by ``python -m lit_i2v shard`` and streamed by every rank and worker.

Decoding the original videos gives a few clips/s per CPU core, while one GPU consumes hundreds: a cluster run reads
shards of **pre-decoded, resized JPEG frames** instead (``mode="frames"``; decoding 8 JPEGs costs a few ms), or of
the video files themselves (``mode="video"``, after ``preprocess`` for cheap seeking) where disk is short.

Layout of a shard folder::

    index.json              format, mode, class names, and per split: its shards, sample counts, failed videos
    train-000000.tar        per sample: <key>.json, then <key>.0000.jpg, <key>.0001.jpg, ... (or <key>.mp4)
    train-000000.idx.json   per sample: its metadata and the byte range of each member's data in the tar

The tars are plain POSIX tars in WebDataset's naming (members grouped by key), so ``tar``, ``webdataset`` and
object stores read them as they are. The byte ranges let a reader seek to exactly the frames a clip needs and let
ranks and workers split a split at sample granularity without reading anything twice. Tar rather than litdata:
no dependency, a format every tool lists and repairs, and append-only writing that a job can resume shard by shard.

Frames mode stores ``frames`` frames per video (0: all), uniformly over the video, at ``short_side`` px; the sampler
still sees the source's frame count, and each wanted frame maps to the nearest stored one, so uniform (SSv2) and
dense (Kinetics) samplers run unchanged (exactly, when all frames are stored).

Epoch plan (the same on every rank; :meth:`ShardedClips.plan`): shards are shuffled with (seed, epoch) in training,
their samples concatenated into one sequence of N, and rank r of W takes a contiguous range: ceil(N/W) samples in
training, wrapping around to the start like ``DistributedSampler``'s padding (so ranks step equally; nothing is
duplicated when W divides N), and N/W without padding in evaluation (every sample exactly once over the ranks).
A rank's range is cut into batch-sized chunks shared out contiguously among its DataLoader workers, so every worker
yields whole batches and the epoch has a known length. In training a shuffle buffer per worker mixes the stream.
"""

from __future__ import annotations

import bisect
import io
import json
import logging
import math
import multiprocessing
import os
import random
import tarfile
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path

import torch
from torch.utils.data import IterableDataset, get_worker_info

from lit_i2v.data.annotations import VideoRecord
from lit_i2v.data.decode import Backend, DecodeError, open_video
from lit_i2v.data.images import decode_jpegs, encode_jpeg, jpeg_size
from lit_i2v.data.loader import SharedEpoch
from lit_i2v.data.sampling import FrameSampler
from lit_i2v.data.transforms import EvalTransform, JpegCrop, TrainTransform, stack_clips

log = logging.getLogger("lit_i2v.data")
FORMAT = "lit_i2v-shards"
VERSION = 1


class ShardError(RuntimeError):
    """A shard folder that is missing, incomplete or of another format; the message names the file."""


# ---------------------------------------------------------------------------------------------------- writing


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


def read_index(root: str | Path, missing_ok: bool = False) -> dict | None:
    path = Path(root) / "index.json"
    if not path.is_file():
        if missing_ok:
            return None
        raise ShardError(f"{path}: no shard index; write shards with `python -m lit_i2v shard --config X --out DIR`")
    index = json.loads(path.read_text())
    if index.get("format") != FORMAT or index.get("version") != VERSION:
        raise ShardError(f"{path}: not a {FORMAT} v{VERSION} index (format {index.get('format')!r})")
    return index


# ---------------------------------------------------------------------------------------------------- reading


class ShardedClips(SharedEpoch, IterableDataset):
    """Clips streamed from the shards of one split; yields the same sample dicts as ``VideoClipDataset``.

    The DataModule sets ``rank``, ``world_size`` and ``batch_size`` before iterating, and ``epoch`` at each epoch
    (``lit_i2v.data.loader.EpochLoader``), and ``skip_batches`` when a run resumes part-way into an epoch.
    ``len()`` is the number of samples this rank yields per epoch. A sample's augmentation is drawn from its own
    generator seeded by (seed, epoch, shard, sample).

    Args:
        root: shard folder (with ``index.json``).
        split: ``train``, ``val`` or ``test``.
        sampler, transform, training, backend: as in ``VideoClipDataset``.
        shuffle_buffer: samples each worker holds to shuffle among, in training.
        seed: seed of the shard order and shuffling (combined with the epoch).
        max_retries: damaged training samples in a row replaced by others before giving up.
        decode_on_device: training clips of JPEG frame shards leave the workers as their JPEG bytes and a crop box
            (``JpegCrop``); the DataModule decodes (nvJPEG on a GPU), crops and resizes them on the device, so the
            workers only read. Evaluation clips are decoded in the workers as always.
    """

    def __init__(
        self,
        root: str | Path,
        split: str,
        sampler: FrameSampler,
        transform: TrainTransform | EvalTransform,
        training: bool,
        backend: Backend = "auto",
        shuffle_buffer: int = 256,
        seed: int = 0,
        max_retries: int = 10,
        decode_on_device: bool = False,
    ) -> None:
        self.root = Path(root)
        index = read_index(self.root)
        if split not in index["splits"]:
            raise ShardError(f"{self.root / 'index.json'}: no {split!r} split (it has {sorted(index['splits'])})")
        self.decode_on_device = decode_on_device and training
        if self.decode_on_device and index["mode"] != "frames":
            raise ShardError(f"{self.root / 'index.json'}: decode_on_device needs shards of JPEG frames (`shard "
                             f"--mode frames`); these hold {index['mode']} files")  # fmt: skip
        if self.decode_on_device and not getattr(transform, "device_resize", False):
            raise ValueError("decode_on_device: the device resizes the clips it decodes, so the train transform must "
                             "leave the resize to the device (device_resize; no rand_augment)")  # fmt: skip
        self.index, self.split = index, split
        self.shards = index["splits"][split]["shards"]
        self.counts = [s["samples"] for s in self.shards]
        self.sampler, self.transform, self.training, self.backend = sampler, transform, training, backend
        self.shuffle_buffer, self.seed, self.max_retries = shuffle_buffer, seed, max_retries
        self.rank, self.world_size, self.batch_size = 0, 1, 1
        self._share_epoch()
        self._skip = multiprocessing.RawValue("q", 0)  # batches of this epoch already trained on (a resumed run)
        self._rows: dict[int, list[dict]] = {}
        self._files: dict[int, io.BufferedReader] = {}

    @property
    def skip_batches(self) -> int:
        return self._skip.value

    @skip_batches.setter
    def skip_batches(self, value: int) -> None:
        self._skip.value = value

    @property
    def num_videos(self) -> int:
        return sum(self.counts)

    @property
    def num_views(self) -> int:
        return 1 if self.training else self.sampler.test_clips * self.transform.crops

    def __len__(self) -> int:
        total = self.num_videos
        if self.training:
            return math.ceil(total / self.world_size)
        return len(range(self.rank, total, self.world_size)) if total else 0

    def plan(self, epoch: int, rank: int, world_size: int, worker: int = 0, num_workers: int = 1) -> list[tuple]:
        """``(shard, sample)`` positions that ``worker`` of ``rank`` reads in ``epoch``, in order (before the
        shuffle buffer)."""
        order = list(range(len(self.shards)))
        if self.training:
            random.Random(self.seed * 1_000_003 + epoch).shuffle(order)
        sequence = [(s, i) for s in order for i in range(self.counts[s])]
        total = len(sequence)
        if total == 0:
            return []
        if self.training:
            n = math.ceil(total / world_size)
            mine = [sequence[(rank * n + j) % total] for j in range(n)]
        else:
            mine = sequence[total * rank // world_size : total * (rank + 1) // world_size]
        chunks = [mine[i : i + self.batch_size] for i in range(0, len(mine), self.batch_size)]
        lo, hi = len(chunks) * worker // num_workers, len(chunks) * (worker + 1) // num_workers
        return [position for chunk in chunks[lo:hi] for position in chunk]

    def _row(self, shard: int, sample: int) -> dict:
        if shard not in self._rows:
            name = self.shards[shard]["file"].removesuffix(".tar") + ".idx.json"
            self._rows[shard] = json.loads((self.root / name).read_text())
        return self._rows[shard][sample]

    def _read(self, shard: int, offset: int, size: int) -> bytes:
        if shard not in self._files:
            self._files[shard] = open(self.root / self.shards[shard]["file"], "rb")  # noqa: SIM115 (kept open)
        f = self._files[shard]
        f.seek(offset)
        return f.read(size)

    def rng(self, shard: int, sample: int, salt: object = "") -> random.Random:
        """The generator of one sample in this epoch: its augmentation does not depend on who loads it."""
        return random.Random(f"{self.seed}:{self.epoch}:{shard}:{sample}:{salt}")

    def load(self, shard: int, sample: int) -> tuple[torch.Tensor, dict]:
        """Decode and transform one sample; any failure raises."""
        row = self._row(shard, sample)
        rng = self.rng(shard, sample)
        clips = self.sampler(row["num_frames"], self.training, rng)
        wanted = [i for clip in clips for i in clip]
        name = f"{self.shards[shard]['file']}:{row['key']}"
        if self.index["mode"] == "video":
            data = self._read(shard, *row["members"][0])
            frames = open_video(name, self.backend, data=data).get_frames(wanted)
        else:
            stored = row["stored"]  # None: every frame is stored; else the nearest stored frame stands in
            positions = wanted if stored is None else [_nearest(stored, i) for i in wanted]
            if self.decode_on_device:  # the frames leave as JPEGs, cut out and resized where they are decoded
                jpegs = [self._read(shard, *row["members"][j]) for j in positions]
                box, flip = self.transform.box(*jpeg_size(jpegs[0]), rng)
                return JpegCrop(jpegs, box, flip, self.transform.size, name), row
            unique = sorted(set(positions))
            jpegs = [_bytes_tensor(self._read(shard, *row["members"][j])) for j in unique]
            images = decode_jpegs(jpegs)  # (3, H, W) views of (H, W, 3) memory
            where = {j: k for k, j in enumerate(unique)}
            frames = [images[where[j]].permute(1, 2, 0) for j in positions]  # V*T (H, W, 3) views, no transpose
            if self.training:  # the transform takes the frames as they are: a crop needs no stacked copy of them
                return self.transform(frames, rng), row
            frames = torch.stack(frames)  # (V*T, H, W, 3)
        frames = frames.unflatten(0, (len(clips), self.sampler.num_frames))
        if self.training:
            return self.transform(frames[0], rng), row
        return stack_clips([view for clip in frames for view in self.transform(clip, rng)]), row  # (V, T, 3, S, S)

    def _sample(self, position: tuple[int, int]) -> dict:
        try:
            video, row = self.load(*position)
            valid = True
        except Exception as err:  # a damaged shard member is reported and masked, never fatal
            row = self._row(*position)
            log.warning("skipping %s:%s: %s", self.shards[position[0]]["file"], row["key"], err)
            if self.training:
                return {"error": True}
            size = self.transform.size
            video = torch.zeros(self.num_views, self.sampler.num_frames, 3, size, size, dtype=torch.uint8)
            valid = False
        return {"video": video, "label": row["label"], "index": row["index"], "video_id": row["video_id"],
                "valid": valid, "skipped": 0 if valid else 1}  # fmt: skip

    def __iter__(self):
        info = get_worker_info()
        worker, workers = (info.id, info.num_workers) if info else (0, 1)
        positions = self.plan(self.epoch, self.rank, self.world_size, worker, workers)
        if not self.training:
            for position in positions:
                yield self._sample(position)
            return
        # The shuffle buffer runs over positions (cheap), so that a resumed run can skip what it already trained on
        # without decoding it, and so that no decoded clip waits in memory.
        source, skip = worker, 0
        if self.skip_batches:
            # The loader takes batches from its workers in turn, always starting with worker 0: so that the resumed
            # pass continues the interrupted one's sequence, worker i takes over the stream of the worker whose turn
            # it would be i places later, minus what that stream already gave.
            batches = [len(self.plan(self.epoch, self.rank, self.world_size, w, workers)) // self.batch_size
                       for w in range(workers)]  # fmt: skip
            taken, turn = _round_robin(batches, self.skip_batches)
            source = (turn + worker) % workers
            skip = taken[source] * self.batch_size
            positions = self.plan(self.epoch, self.rank, self.world_size, source, workers)
        rng = random.Random(f"{self.seed}:{self.epoch}:{self.rank}:{source}")
        for position in _buffer_order(positions, self.shuffle_buffer, rng)[skip:]:
            yield self._training_sample(position, positions)

    def _training_sample(self, position: tuple[int, int], positions: list[tuple]) -> dict:
        """The sample at ``position``, or, if it is damaged, another of this worker's (the epoch keeps its length)."""
        skipped, first, rng = 0, position, None
        while True:
            sample = self._sample(position)
            if "error" not in sample:
                sample["skipped"] = skipped
                return sample
            skipped += 1
            if skipped > self.max_retries:
                raise RuntimeError(f"{skipped} shard samples in a row failed to decode under {self.root}")
            rng = rng or self.rng(*first, "replacement")  # made when needed: seeding one costs 5 us a sample
            position = rng.choice(positions)

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_files": {}}  # open file handles stay in the process that opened them


def _buffer_order(positions: list, size: int, rng: random.Random) -> list:
    """The order a shuffle buffer of ``size`` emits ``positions`` in: fill, then emit a random held item per new one."""
    buffer, out = [], []
    for position in positions:
        buffer.append(position)
        if len(buffer) >= size:
            out.append(buffer.pop(rng.randrange(len(buffer))))
    rng.shuffle(buffer)
    return out + buffer


def _round_robin(batches: list[int], first: int) -> tuple[list[int], int]:
    """A DataLoader takes batches from workers holding ``batches`` each in turn, skipping exhausted ones: after the
    ``first`` batches, how many came from each worker, and whose turn is next."""
    left, taken, w = list(batches), [0] * len(batches), 0
    for _ in range(min(first, sum(batches))):
        while left[w] == 0:
            w = (w + 1) % len(left)
        left[w] -= 1
        taken[w] += 1
        w = (w + 1) % len(left)
    return taken, w


def _bytes_tensor(data: bytes) -> torch.Tensor:
    return torch.frombuffer(bytearray(data), dtype=torch.uint8)


def _nearest(stored: list[int], index: int) -> int:
    """Position in the sorted ``stored`` of the frame nearest to source frame ``index``."""
    j = bisect.bisect_left(stored, index)
    if j == 0:
        return 0
    if j == len(stored):
        return len(stored) - 1
    return j if stored[j] - index < index - stored[j - 1] else j - 1
