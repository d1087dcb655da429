"""Training clips per second per CPU core: the DataModule against raw decoding of the same frames (its limit).

    python benchmarks/data_throughput.py [--videos 48] [--long-videos 32] [--workers 1 2] [--sets small shards ...]
                                         [--glibc-malloc] [--out benchmarks/out/data]

Videos: generated H.264 mp4s of the synthetic motion renderer with a textured background and per-frame sensor-like
noise, so that they compress and decode like camera footage rather than flat shapes:

- "small": 64 px, 24 frames (the quickstart's);
- "real": 340x256, 300 frames, a keyframe every 100 frames (a Kinetics-like 12-s clip);
- "long": 340x256, 1200 frames (48 s), a keyframe every 250 frames as x264's default (an ActivityNet- or
  Charades-like video: each sampled frame needs up to 250 frames decoded from its keyframe);
- the real-size ones re-encoded by ``python -m lit_i2v preprocess`` ("preprocessed": short side 256, keyframe every 8
  frames), and packed by ``python -m lit_i2v shard`` ("shards": 32 JPEG frames per video, short side 256, quality 90).

For each set, in one process on one thread: (1) decoding the 8 segment-uniform frames of every video with decord (for
shards: reading and decoding their 8 JPEGs), the work a training sample cannot avoid, the limit; (2) the same plus the
random resized crop to 224 (64 for the small set) and the flip, the work of a worker that resizes. Then the DataModule's
training loader at each worker count, clips/s divided by the workers, (3) as shipped: the workers cut the crops out and
the data module resizes them on the device, and (4) with the workers resizing (``device_resize: false``, as with
RandAugment); for shards also (5) with the JPEGs left to the device to decode (``decode_on_device``: the workers only
read; a GPU's nvJPEG decoding is not timed here, ``device_resize.py`` times it). The variants of a set are timed in
turn, over whole passes of at least 2 s, for 5 rounds; each clips/s figure is a variant's best round (batches of 8), and
a loader's loss to the limit is the median over the rounds of its shortfall from (1) timed in the same round
(``paired_loss``; the best round against the best round is kept in ``results.json`` too). Also measured: the device's
share of (3), resizing a packed batch in the main process, timed on this CPU (one thread, with the uint8 kernel a CPU
run uses; a GPU runs the float kernel, not timed here), and the page faults of the loader's workers per clip.
``--glibc-malloc`` runs the loaders' workers without ``keep_freed_memory`` (glibc's default malloc settings), for
comparison. Writes ``results.json`` and a Markdown table; the figures in benchmarks/RESULTS.md come from this command.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import os
import random
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
BATCH = 8


def texture(clip: np.ndarray, seed: int) -> np.ndarray:
    """Camera-like content: a smooth random texture under the scene and fresh noise in every frame (sigma 4)."""
    import torch
    import torch.nn.functional as F

    g = torch.Generator().manual_seed(seed)
    t, h, w, _ = clip.shape
    coarse = torch.rand(1, 3, h // 16 + 1, w // 16 + 1, generator=g) * 80 - 40
    fine = torch.rand(1, 3, h // 2, w // 2, generator=g) * 30 - 15
    base = F.interpolate(coarse, size=(h, w), mode="bicubic") + F.interpolate(fine, size=(h, w), mode="bilinear")
    base = base[0].permute(1, 2, 0).numpy()
    noise = np.random.default_rng(seed).normal(0, 4, size=clip.shape).astype(np.float32)
    return np.clip(clip.astype(np.float32) + base + noise, 0, 255).astype(np.uint8)


def make_videos(folder: Path, count: int, size: tuple[int, int], frames: int, gop: int, scenes: int = 1) -> list[Path]:
    """``count`` textured motion videos of ``size`` (w, h) and ``scenes`` x ``frames`` frames, a keyframe every
    ``gop``; each scene replays the motion over a new texture (long videos without rendering them whole)."""
    import av

    from lit_i2v.data.synthetic import SynthSpec, render

    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(count):
        path = folder / f"{i}.mp4"
        paths.append(path)
        if path.is_file():
            continue
        w, h = size
        clip = render(i % 8, random.Random(i), SynthSpec(size=max(w, h), frames=frames))[0][:, :h, :w]
        tmp = path.with_suffix(".tmp.mp4")
        with av.open(str(tmp), "w") as container:
            stream = container.add_stream("libx264", rate=25)
            stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
            stream.options = {"crf": "23", "g": str(gop)}
            for scene in range(scenes):
                for frame in texture(clip, i + 1000 * scene):
                    image = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")
                    for packet in stream.encode(image):
                        container.mux(packet)
            for packet in stream.encode():
                container.mux(packet)
        tmp.replace(path)  # an interrupted run leaves no truncated video to be timed as finished
    return paths


SECONDS = 2.0  # a timing runs whole passes adding up to at least this long
ROUNDS = 5  # timings of each variant, taken in turn with the set's other variants


def interleaved(variants: dict[str, Callable[[], int]]) -> dict[str, list[float]]:
    """Clips/s of each variant (a pass returns the clips it made) in each of ``ROUNDS`` rounds that time every variant
    in turn. Taking turns spreads the drift of a shared machine over all variants alike."""
    rates: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(ROUNDS):
        for name, one_pass in variants.items():
            start, clips = time.perf_counter(), 0
            while time.perf_counter() - start < SECONDS:
                clips += one_pass()
            rates[name].append(clips / (time.perf_counter() - start))
    return rates


def paired_loss(rates: list[float], limits: list[float]) -> float:
    """The median over rounds of a variant's shortfall from the limit timed in the same round: within a round the two
    timings are seconds apart, so the machine's drift between rounds cancels, where the best round of each (the
    figures' clips/s) may come from different moments."""
    return statistics.median(1 - rate / limit for rate, limit in zip(rates, limits, strict=True))


def raw_decode(paths: list[Path], frames: int = 8) -> Callable[[], int]:
    """A pass of decord reading the segment-uniform frames of each video, in this process."""
    from lit_i2v.data import UniformSampler, open_video

    sampler = UniformSampler(frames)

    def one_pass() -> int:
        for path in paths:
            reader = open_video(path, "decord")
            reader.get_frames(sampler(reader.num_frames, training=True)[0])
        return len(paths)

    return one_pass


def augmented_decode(paths: list[Path], size: int, frames: int = 8) -> Callable[[], int]:
    """A pass of decoding and augmenting (random resized crop to ``size``, flip) each video's frames, here."""
    from lit_i2v.data import TrainTransform, UniformSampler, open_video

    sampler, transform = UniformSampler(frames), TrainTransform(size=size, device_resize=False)

    def one_pass() -> int:
        for path in paths:
            reader = open_video(path, "decord")
            transform(reader.get_frames(sampler(reader.num_frames, training=True)[0]))
        return len(paths)

    return one_pass


def shard_decode(shards: Path, size: int | None, frames: int = 8) -> Callable[[], int]:
    """A pass of reading and decoding the 8 segment-uniform JPEG frames of every sharded video, and random-resized-
    cropping them to ``size`` (None: no augmentation), in this process."""
    from lit_i2v.data import TrainTransform, UniformSampler
    from lit_i2v.data.shards import ShardedClips

    transform = TrainTransform(size or 224, device_resize=False)
    clips = ShardedClips(shards, "train", UniformSampler(frames), transform, training=True)
    if size is None:
        clips.transform = lambda frames, rng=None: frames
    positions = clips.plan(0, 0, 1)

    def one_pass() -> int:
        for position in positions:
            clips.load(*position)
        return len(positions)

    return one_pass


def device_share_ms(paths: list[Path] | None, root: Path, size: int, batches: int = 4) -> float:
    """Milliseconds a clip of resizing packed training batches (``PackedClips.resize``) on this CPU, one thread: the
    work that the shipped loader leaves to the device (here the main process)."""
    from lit_i2v.data import TrainTransform, UniformSampler, VideoClipDataset, VideoRecord
    from lit_i2v.data.shards import ShardedClips
    from lit_i2v.data.video.transforms import pack_clips

    transform, sampler = TrainTransform(size=size), UniformSampler(8)
    if paths is None:
        dataset = ShardedClips(root, "train", sampler, transform, training=True)
        crops = [dataset.load(*position)[0] for position in dataset.plan(0, 0, 1)[: batches * BATCH]]
    else:
        dataset = VideoClipDataset([VideoRecord(str(p), 0, p.stem) for p in paths], sampler, transform, True)
        crops = [dataset[i]["video"] for i in range(batches * BATCH)]
    packed = [pack_clips(crops[i : i + BATCH]) for i in range(0, len(crops), BATCH)]
    best = float("inf")
    for _ in range(ROUNDS):
        start = time.perf_counter()
        for batch in packed:
            batch.resize()
        best = min(best, (time.perf_counter() - start) / len(crops))
    return best * 1e3


def children_page_faults() -> int:
    """Minor page faults of this process's child processes (the loaders' workers) so far."""
    total = 0
    for pid in Path(f"/proc/{os.getpid()}/task/{os.getpid()}/children").read_text().split():
        with contextlib.suppress(FileNotFoundError):  # a worker that just ended
            total += int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[7])
    return total


def loader_pass(
    paths: list[Path] | None,
    root: Path,
    size: int,
    workers: int,
    device_resize: bool = True,
    keep_memory: bool = True,
    frames: int = 8,
    decode_on_device: bool = False,
) -> Callable[[], int]:
    """An epoch of the training DataLoader (decode + augment + collate) with ``workers`` processes, which persist
    between epochs as in training; ``paths`` None streams the shards under ``root``. ``device_resize``: the workers
    only cut the crops out and the batch arrives packed, to be resized on the device (the default); else the workers
    resize; ``decode_on_device`` (shards): the workers only read the JPEGs, which the device would decode. The pass
    function counts the clips it loaded and its workers' page faults (``stats``)."""
    from lit_i2v.data import Labels, TrainTransform, UniformSampler, VideoDataModule

    transform = TrainTransform(size=size, device_resize=device_resize)
    common = dict(sampler=UniformSampler(frames), train_transform=transform, batch_size=BATCH, num_workers=workers)
    if paths is None:
        dm = VideoDataModule(shards=str(root), decode_on_device=decode_on_device, **common)
    else:
        listing = root / "train.txt"
        listing.write_text("".join(f"{p.relative_to(root)} 0\n" for p in paths))
        dm = VideoDataModule(train=str(listing), root=str(root), annotations=Labels(format="list"), **common)
    dm.setup("fit")
    loader = dm.train_dataloader()
    if not keep_memory:
        loader.worker_init_fn = None
    if len(loader) < 2 * workers:
        raise SystemExit(f"{root}: {len(loader)} batches an epoch leave some of {workers} workers idle; add videos")
    for _ in loader:  # one epoch to warm the page cache and imports
        pass

    # Timed over whole epochs: timing from the first batch on would credit the loader with the batches its workers
    # prefetched before the clock started.
    def one_pass() -> int:
        faults = children_page_faults()  # the other loaders' persistent workers are idle meanwhile
        clips = sum(len(batch["video"]) for batch in loader)
        one_pass.stats["faults"] += children_page_faults() - faults
        one_pass.stats["clips"] += clips
        return clips

    one_pass.stats = {"faults": 0, "clips": 0}
    return one_pass


SETS = {
    "small": "small (64 px, 24 frames)",
    "real": "real-size (340x256, 300 frames, keyframe every 100)",
    "long": "long (340x256, 1200 frames, keyframe every 250)",
    "preprocessed": "real-size, `preprocess`ed (short side 256, keyframe every 8, no B-frames)",
    "shards": "real-size, `shard`ed (32 JPEG frames a video, short side 256, quality 90)",
}


def main() -> None:
    import torch

    torch.set_num_threads(1)  # one-process limits on one core, as each DataLoader worker runs (workers get 1 thread)
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--videos", type=int, default=48)
    p.add_argument("--long-videos", type=int, default=32, help="48-s videos of the long set")
    p.add_argument("--workers", type=int, nargs="*", default=[1, 2])
    p.add_argument("--sets", nargs="*", choices=list(SETS), default=list(SETS))
    p.add_argument("--glibc-malloc", action="store_true", help="workers without keep_freed_memory")
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "out" / "data"))
    args = p.parse_args()
    out = Path(args.out)
    from lit_i2v.data import VideoRecord
    from lit_i2v.data.shards import ShardSpec, write_shards
    from lit_i2v.preprocess import preprocess_paths

    sets = {}
    real = make_videos(out / "real", args.videos, (340, 256), 300, 100)
    if "small" in args.sets:
        sets["small"] = (make_videos(out / "small", args.videos, (64, 64), 24, 12), out / "small", 64)
    if "real" in args.sets:
        sets["real"] = (real, out / "real", 224)
    if "long" in args.sets:
        long = make_videos(out / "long", args.long_videos, (340, 256), 300, 250, scenes=4)
        sets["long"] = (long, out / "long", 224)
    if "preprocessed" in args.sets:
        preprocess_paths([str(x) for x in real], out / "real", out / "real-gop8", short_side=256, gop=8, workers=2)
        sets["preprocessed"] = (sorted((out / "real-gop8").glob("*.mp4")), out / "real-gop8", 224)
    records = [VideoRecord(str(path), 0, path.stem) for path in real]
    if "shards" in args.sets:
        spec = ShardSpec(short_side=256, frames=32, quality=90, samples_per_shard=16)
        write_shards({"train": records}, out / "real-shards", spec, workers=2)
        sets["shards"] = (None, out / "real-shards", 224)
    results = []
    for key, (paths, root, size) in sets.items():
        variants = {
            "raw": raw_decode(paths) if paths is not None else shard_decode(root, None),
            "augmented": augmented_decode(paths, size) if paths is not None else shard_decode(root, size),
        }
        for w in args.workers:
            for where in ("device", "worker"):
                variants[f"loader_{w}w_{where}"] = loader_pass(
                    paths, root, size, w, device_resize=where == "device", keep_memory=not args.glibc_malloc
                )
            if paths is None:
                variants[f"loader_{w}w_jpegs"] = loader_pass(paths, root, size, w, decode_on_device=True)
        rounds = interleaved(variants)
        rates = {name: max(r) for name, r in rounds.items()}  # each variant's best round, the least slowed by others
        raw, augmented = rates["raw"], rates["augmented"]
        row = {"set": SETS[key], "raw_decode_clips_per_s": round(raw, 1), "augmented_clips_per_s": round(augmented, 1),
               "device_share_ms_per_clip": round(device_share_ms(paths, root, size), 2)}  # fmt: skip
        if paths is None:
            jpegs = sum(p.stat().st_size for p in root.glob("*.tar")) / (len(records) * 32)
            row["jpeg_kb_per_frame"] = round(jpegs / 1024, 1)
        for w in args.workers:
            for where in ("device", "worker"):
                name = f"loader_{w}w_{where}"
                rate = rates[name] / w
                row[f"{name}_clips_per_s_per_core"] = round(rate, 1)
                row[f"{name}_loss"] = round(paired_loss([r / w for r in rounds[name]], rounds["raw"]), 3)
                row[f"{name}_loss_best_rounds"] = round(1 - rate / raw, 3)  # best round against best round
                stats = variants[name].stats
                row[f"{name}_page_faults_per_clip"] = round(stats["faults"] / stats["clips"])
            if paths is None:  # what the workers deliver when the device decodes: no limit of theirs to compare with
                row[f"loader_{w}w_jpegs_clips_per_s_per_core"] = round(rates[f"loader_{w}w_jpegs"] / w, 1)
        results.append(row)
        print(json.dumps(row), flush=True)
        del variants  # ends this set's persistent workers before the next set forks any
        gc.collect()
    (out / "results.json").write_text(json.dumps(results, indent=1))
    cols = [f"{w} worker{'s' if w > 1 else ''}" for w in args.workers]
    head = ["videos", "decode only, clips/s (1 process)", "decode + crop + resize, clips/s (1 process)"]
    for c in cols:
        head += [f"loader {c}, resize on device: clips/s per core (vs decode only)", f"loader {c}, resize in worker"]
    head.append("the device's share, timed on this CPU: ms a clip")
    lines = ["| " + " | ".join(head) + " |", "|---" * len(head) + "|"]
    for r in results:
        cells = [r["set"], str(r["raw_decode_clips_per_s"]), str(r["augmented_clips_per_s"])]
        for w in args.workers:
            for where in ("device", "worker"):
                name = f"loader_{w}w_{where}"
                cells.append(f"{r[f'{name}_clips_per_s_per_core']} ({-100 * r[f'{name}_loss']:+.0f}%)")
        cells.append(str(r["device_share_ms_per_clip"]))
        lines.append("| " + " | ".join(cells) + " |")
    for r in results:
        jpegs = [f"{r[f'loader_{w}w_jpegs_clips_per_s_per_core']} with {w}" for w in args.workers
                 if f"loader_{w}w_jpegs_clips_per_s_per_core" in r]  # fmt: skip
        if jpegs:
            lines.append(f"\n{r['set']}, JPEGs left to the device to decode (`decode_on_device`): the "
                         f"workers deliver {', '.join(jpegs)} worker(s), clips/s per core")  # fmt: skip
    (out / "table.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
