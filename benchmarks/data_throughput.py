"""Training clips per second per CPU core: the DataModule against raw decoding of the same frames (its limit).

    python benchmarks/data_throughput.py [--videos 48] [--long-videos 32] [--workers 1 2] [--out benchmarks/out/data]

Videos: generated H.264 mp4s of the synthetic motion renderer with a textured background and per-frame sensor-like
noise, so that they compress and decode like camera footage rather than flat shapes:

- "small": 64 px, 24 frames (the quickstart's);
- "real-size": 340x256, 300 frames, a keyframe every 100 frames (a Kinetics-like 12-s clip);
- "long": 340x256, 1200 frames (48 s), a keyframe every 250 frames as x264's default (an ActivityNet- or
  Charades-like video: each sampled frame needs up to 250 frames decoded from its keyframe);
- the real-size ones re-encoded by ``python -m lit_i2v preprocess`` (short side 256, keyframe every 8 frames), and
  packed by ``python -m lit_i2v shard`` (32 JPEG frames per video, short side 256, quality 90).

For each set, one process: (1) decoding the 8 segment-uniform frames of every video with decord (for shards:
reading and decoding their 8 JPEGs), the work a training sample cannot avoid; (2) the same plus the random resized
crop to 224 (64 for the small set), the work a training clip needs. Then (3) the DataModule's training loader at each
worker count, clips/s divided by the workers: its difference from (1) is what augmentation and the loader cost, from
(2) what the loader alone costs (processes, batching, transfer). The variants of a set are timed in turn, over
whole passes of at least 2 s, for 5 rounds; each figure is a variant's best round (batches of 8). Writes
``results.json`` and a Markdown table; the figures in benchmarks/RESULTS.md come from this command.
"""

from __future__ import annotations

import argparse
import json
import random
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


def interleaved(variants: dict[str, Callable[[], int]]) -> dict[str, float]:
    """Clips/s of each variant (a pass returns the clips it made): its best timing over ``ROUNDS`` rounds that time
    every variant in turn. Taking turns spreads the drift of a shared machine over all variants alike, and the best
    timing is the one least slowed by other tenants."""
    rates: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(ROUNDS):
        for name, one_pass in variants.items():
            start, clips = time.perf_counter(), 0
            while time.perf_counter() - start < SECONDS:
                clips += one_pass()
            rates[name].append(clips / (time.perf_counter() - start))
    return {name: max(r) for name, r in rates.items()}


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
    """A pass of decoding and augmenting (random resized crop to ``size``) each video's frames, in this process."""
    from lit_i2v.data import TrainTransform, UniformSampler, open_video

    sampler, transform = UniformSampler(frames), TrainTransform(size=size)

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

    clips = ShardedClips(shards, "train", UniformSampler(frames), TrainTransform(size or 224), training=True)
    if size is None:
        clips.transform = lambda frames, rng=None: frames
    positions = clips.plan(0, 0, 1)

    def one_pass() -> int:
        for position in positions:
            clips.load(*position)
        return len(positions)

    return one_pass


def loader_pass(paths: list[Path] | None, root: Path, size: int, workers: int, frames: int = 8) -> Callable[[], int]:
    """An epoch of the training DataLoader (decode + augment + collate) with ``workers`` processes, which persist
    between epochs as in training; ``paths`` None streams the shards under ``root``."""
    from lit_i2v.data import TrainTransform, UniformSampler, VideoDataModule

    common = dict(sampler=UniformSampler(frames), train_transform=TrainTransform(size=size), batch_size=BATCH,
                  num_workers=workers)  # fmt: skip
    if paths is None:
        dm = VideoDataModule(shards=str(root), **common)
    else:
        listing = root / "train.txt"
        listing.write_text("".join(f"{p.relative_to(root)} 0\n" for p in paths))
        dm = VideoDataModule(train=str(listing), root=str(root), format="list", **common)
    dm.setup("fit")
    loader = dm.train_dataloader()
    if len(loader) < 2 * workers:
        raise SystemExit(f"{root}: {len(loader)} batches an epoch leave some of {workers} workers idle; add videos")
    for _ in loader:  # one epoch to warm the page cache and imports
        pass

    # Timed over whole epochs: timing from the first batch on would credit the loader with the batches its workers
    # prefetched before the clock started.
    def one_pass() -> int:
        return sum(batch["video"].shape[0] for batch in loader)

    return one_pass


def main() -> None:
    import torch

    torch.set_num_threads(1)  # one-process limits on one core, as each DataLoader worker runs (workers get 1 thread)
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--videos", type=int, default=48)
    p.add_argument("--long-videos", type=int, default=32, help="48-s videos (0: leave the long set out)")
    p.add_argument("--workers", type=int, nargs="*", default=[1, 2])
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "out" / "data"))
    args = p.parse_args()
    out = Path(args.out)
    real = make_videos(out / "real", args.videos, (340, 256), 300, 100)
    sets = {
        "small (64 px, 24 frames)": (make_videos(out / "small", args.videos, (64, 64), 24, 12), out / "small", 64),
        "real-size (340x256, 300 frames, keyframe every 100)": (real, out / "real", 224),
    }  # fmt: skip
    if args.long_videos:
        long = make_videos(out / "long", args.long_videos, (340, 256), 300, 250, scenes=4)
        sets["long (340x256, 1200 frames, keyframe every 250)"] = (long, out / "long", 224)
    from lit_i2v.data import VideoRecord
    from lit_i2v.data.shards import ShardSpec, write_shards
    from lit_i2v.preprocess import preprocess_paths

    preprocess_paths([str(x) for x in real], out / "real", out / "real-gop8", short_side=256, gop=8, workers=2)
    sets["real-size, `preprocess`ed (short side 256, keyframe every 8, no B-frames)"] = (
        sorted((out / "real-gop8").glob("*.mp4")), out / "real-gop8", 224,
    )  # fmt: skip
    records = [VideoRecord(str(path), 0, path.stem) for path in real]
    spec = ShardSpec(short_side=256, frames=32, quality=90, samples_per_shard=16)
    write_shards({"train": records}, out / "real-shards", spec, workers=2)
    sets["real-size, `shard`ed (32 JPEG frames a video, short side 256, quality 90)"] = (None, out / "real-shards", 224)
    results = []
    for name, (paths, root, size) in sets.items():
        variants = {
            "raw": raw_decode(paths) if paths is not None else shard_decode(root, None),
            "augmented": augmented_decode(paths, size) if paths is not None else shard_decode(root, size),
        }
        variants.update({f"loader_{w}w": loader_pass(paths, root, size, w) for w in args.workers})
        rates = interleaved(variants)
        raw, augmented = rates["raw"], rates["augmented"]
        row = {"set": name, "raw_decode_clips_per_s": round(raw, 1), "augmented_clips_per_s": round(augmented, 1)}
        if paths is None:
            jpegs = sum(p.stat().st_size for p in root.glob("*.tar")) / (len(records) * 32)
            row["jpeg_kb_per_frame"] = round(jpegs / 1024, 1)
        for w in args.workers:
            rate = rates[f"loader_{w}w"]
            row[f"loader_{w}w_clips_per_s_per_core"] = round(rate / w, 1)
            row[f"loader_{w}w_loss"] = round(1 - rate / w / raw, 3)
            row[f"loader_{w}w_overhead"] = round(1 - rate / w / augmented, 3)
        results.append(row)
        print(json.dumps(row), flush=True)
    (out / "results.json").write_text(json.dumps(results, indent=1))
    cols = [f"{w} worker{'s' if w > 1 else ''}" for w in args.workers]
    lines = [
        "| videos | decode only, clips/s (1 process) | decode + crop, clips/s (1 process) | "
        + " | ".join(f"loader {c}, clips/s per core (vs decode only; vs decode + crop)" for c in cols)
        + " |",
        "|---" * (3 + len(cols)) + "|",
    ]
    for r in results:
        cells = [
            f"{r[f'loader_{w}w_clips_per_s_per_core']} ({-100 * r[f'loader_{w}w_loss']:+.0f}%; "
            f"{-100 * r[f'loader_{w}w_overhead']:+.0f}%)"
            for w in args.workers
        ]
        lines.append(
            f"| {r['set']} | {r['raw_decode_clips_per_s']} | {r['augmented_clips_per_s']} | " + " | ".join(cells) + " |"
        )
    (out / "table.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
