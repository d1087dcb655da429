"""Training clips per second per CPU core: the DataModule against raw decoding of the same frames (its limit).

    python benchmarks/data_throughput.py [--videos 64] [--workers 1 2] [--out benchmarks/out/data]

Videos: generated H.264 mp4s of the synthetic motion renderer at two sizes, "small" (64 px, 24 frames: the
quickstart's) and "real-size" (340x256, 300 frames, keyframe every 100 frames: a Kinetics-like clip), and the
real-size ones re-encoded by ``python -m lit_i2v preprocess`` (short side 256, keyframe every 8 frames).

For each set: (1) raw decoding, one process: decord reads the 8 segment-uniform frames of every video (the work a
training sample cannot avoid); (2) the DataModule's training loader at each worker count: decode + random resized
crop to 224 (64 for the small set) + batching, clips/s divided by the workers. The lost share is 1 - (2)/(1).
Writes ``results.json`` and a Markdown table; the figures in benchmarks/RESULTS.md come from this command.
"""

from __future__ import annotations

import argparse
import json
import random
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def make_videos(folder: Path, count: int, size: tuple[int, int], frames: int, gop: int) -> list[Path]:
    """``count`` motion videos of ``size`` (w, h) and ``frames`` frames, a keyframe every ``gop``."""
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
        with av.open(str(path), "w") as container:
            stream = container.add_stream("libx264", rate=25)
            stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
            stream.options = {"crf": "23", "g": str(gop)}
            for frame in clip:
                for packet in stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")):
                    container.mux(packet)
            for packet in stream.encode():
                container.mux(packet)
    return paths


def raw_decode(paths: list[Path], frames: int = 8) -> float:
    """Clips/s of decord reading the segment-uniform frames of each video, one process."""
    from lit_i2v.data import UniformSampler, open_video

    sampler = UniformSampler(frames)
    start = time.perf_counter()
    for path in paths:
        reader = open_video(path, "decord")
        reader.get_frames(sampler(reader.num_frames, training=True)[0])
    return len(paths) / (time.perf_counter() - start)


def loader_rate(paths: list[Path], root: Path, size: int, workers: int, frames: int = 8) -> float:
    """Clips/s of the training DataLoader (decode + augment + collate) with ``workers`` processes."""
    from lit_i2v.data import TrainTransform, UniformSampler, VideoDataModule

    listing = root / "train.txt"
    listing.write_text("".join(f"{p.relative_to(root)} 0\n" for p in paths))
    dm = VideoDataModule(
        train=str(listing), root=str(root), format="list", sampler=UniformSampler(frames),
        train_transform=TrainTransform(size=size), batch_size=8, num_workers=workers,
    )  # fmt: skip
    dm.setup("fit")
    loader = dm.train_dataloader()
    batches = iter(loader)
    next(batches)  # workers started and warm
    start, clips = time.perf_counter(), 0
    for batch in batches:
        clips += batch["video"].shape[0]
    return clips / (time.perf_counter() - start)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--videos", type=int, default=64)
    p.add_argument("--workers", type=int, nargs="*", default=[1, 2])
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "out" / "data"))
    args = p.parse_args()
    out = Path(args.out)
    sets = {
        "small (64 px, 24 frames)": (make_videos(out / "small", args.videos, (64, 64), 24, 12), out / "small", 64),
        "real-size (340x256, 300 frames, GOP 100)": (
            make_videos(out / "real", args.videos, (340, 256), 300, 100), out / "real", 224,
        ),
    }  # fmt: skip
    from lit_i2v.preprocess import preprocess_paths

    preprocess_paths([str(x) for x in sets["real-size (340x256, 300 frames, GOP 100)"][0]], out / "real",
                     out / "real-gop8", short_side=256, gop=8, workers=2)  # fmt: skip
    sets["real-size, preprocessed (GOP 8, no B-frames)"] = (sorted((out / "real-gop8").glob("*.mp4")),
                                                            out / "real-gop8", 224)  # fmt: skip
    results = []
    for name, (paths, root, size) in sets.items():
        raw = raw_decode(paths)
        row = {"set": name, "raw_decode_clips_per_s": round(raw, 1)}
        for w in args.workers:
            rate = loader_rate(paths, root, size, w)
            row[f"loader_{w}w_clips_per_s_per_core"] = round(rate / w, 1)
            row[f"loader_{w}w_loss"] = round(1 - rate / w / raw, 3)
        results.append(row)
        print(json.dumps(row), flush=True)
    (out / "results.json").write_text(json.dumps(results, indent=1))
    cols = [f"{w} worker{'s' if w > 1 else ''}" for w in args.workers]
    lines = [
        "| videos | raw decode, clips/s (1 core) | "
        + " | ".join(f"loader {c}, clips/s per core (lost)" for c in cols)
        + " |",
        "|---" * (2 + len(cols)) + "|",
    ]
    for r in results:
        cells = [
            f"{r[f'loader_{w}w_clips_per_s_per_core']} ({100 * r[f'loader_{w}w_loss']:.0f}%)" for w in args.workers
        ]
        lines.append(f"| {r['set']} | {r['raw_decode_clips_per_s']} | " + " | ".join(cells) + " |")
    (out / "table.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
