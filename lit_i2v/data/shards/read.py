"""Reading shards: ``ShardedClips`` streams one split's clips to every rank and worker, seeking to exactly the
frames a clip needs (the epoch plan is in the package's docstring)."""

from __future__ import annotations

import bisect
import io
import json
import logging
import math
import multiprocessing
import random
from pathlib import Path

import torch
from torch.utils.data import IterableDataset, get_worker_info

from lit_i2v.data.loading.loader import SharedEpoch
from lit_i2v.data.shards.index import ShardError, read_index
from lit_i2v.data.video.decode import Backend, open_video
from lit_i2v.data.video.images import decode_jpegs, jpeg_size
from lit_i2v.data.video.sampling import FrameSampler
from lit_i2v.data.video.transforms import EvalTransform, JpegCrop, TrainTransform, stack_clips

log = logging.getLogger("lit_i2v.data")


class ShardedClips(SharedEpoch, IterableDataset):
    """Clips streamed from the shards of one split; yields the same sample dicts as ``VideoClipDataset``.

    The DataModule sets ``rank``, ``world_size`` and ``batch_size`` before iterating, and ``epoch`` at each epoch
    (``lit_i2v.data.loading.loader.EpochLoader``), and ``skip_batches`` when a run resumes part-way into an epoch.
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
