"""The device's share of the training data path: resizing packed crops (``PackedClips.resize``), or decoding JPEGs.

    python benchmarks/device_resize.py [--device cuda] [--batch 32] [--out benchmarks/out/device_resize]

The shipped loader's workers only cut each training clip's random crop out of its decoded frames; the batch's crops
travel packed and the data module resizes them to 224 px on the device (``lit_i2v/data/video/transforms.py``). This
command builds such batches from 340x256 frames (8 frames a clip, camera-like content) and, on ``--device``:

1. checks the device's clips against the worker's (``device_resize: false``, the uint8 kernel on the CPU): the same
   on a CPU, at most one grey level apart where the float kernel runs (a GPU);
2. times ``resize`` of one batch already on the device (best of 5 rounds of 10, synchronised on CUDA);
3. runs batches end to end as training does: two loader workers pack them into their reused shared memory, the
   loader pins them when the device is a GPU, ``to(device)`` copies them (asynchronously when pinned), and the
   device resizes them; clips/s over whole passes, best of 3.

The same for clips that travel as JPEGs (shards with ``decode_on_device``: ``PackedJpegs``, the frames encoded at
quality 90, the same crops): the largest difference from the crop path (none on a CPU, where one libjpeg-turbo
decodes both; nvJPEG's inverse DCT may differ by a few grey levels), the milliseconds a clip of decoding, cutting and
resizing a batch on the device, and clips/s end to end.

Prints and writes ``results.json``. On a CPU the figures are those of a CPU run's main process.
"""

from __future__ import annotations

import argparse
import json
import random
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader, Dataset

from lit_i2v.data.loading.dataset import collate_clips
from lit_i2v.data.video.images import codec, decode_jpegs, encode_jpeg
from lit_i2v.data.video.transforms import JpegCrop, PackedClips, PackedJpegs, TrainTransform, pack_clips, pack_jpegs

ROOT = Path(__file__).resolve().parents[1]
FRAMES, HEIGHT, WIDTH, SIZE = 8, 256, 340, 224


def camera_like(seed: int) -> torch.Tensor:
    """Frames ``(T, H, W, 3)`` uint8: a smooth random scene with per-frame noise."""
    g = torch.Generator().manual_seed(seed)
    coarse = torch.rand(FRAMES, 3, HEIGHT // 32, WIDTH // 32, generator=g) * 255
    scene = torch.nn.functional.interpolate(coarse, size=(HEIGHT, WIDTH), mode="bicubic")
    noisy = scene + torch.randn(FRAMES, 3, HEIGHT, WIDTH, generator=g) * 4
    return noisy.clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).contiguous()


class Crops(Dataset):
    """Training crops of a few fixed clips, as the default transform cuts them (no decoding: the device's share)."""

    def __init__(self, clips: int = 8, length: int = 256) -> None:
        self.frames = [camera_like(i) for i in range(clips)]
        self.transform, self.length = TrainTransform(size=SIZE), length

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> dict:
        crop = self.transform(self.frames[index % len(self.frames)], random.Random(index))
        return {"video": crop, "label": index}


class JpegCrops(Crops):
    """The same clips and crops, as JPEGs to decode on the device (``decode_on_device``)."""

    def __init__(self, clips: int = 8, length: int = 256) -> None:
        super().__init__(clips, length)
        self.jpegs = [[encode_jpeg(frame.permute(2, 0, 1), 90).numpy().tobytes() for frame in clip]
                      for clip in self.frames]  # fmt: skip
        self.frames = [decode_clip(jpegs) for jpegs in self.jpegs]  # what the device will decode, for ``check``

    def __getitem__(self, index: int) -> dict:
        box, flip = self.transform.box(HEIGHT, WIDTH, random.Random(index))  # the draws of ``Crops``
        jpegs = self.jpegs[index % len(self.jpegs)]
        return {"video": JpegCrop(jpegs, box, flip, SIZE, f"clip {index}"), "label": index}


def decode_clip(jpegs: list[bytes]) -> torch.Tensor:
    images = decode_jpegs([torch.frombuffer(bytearray(jpeg), dtype=torch.uint8) for jpeg in jpegs])
    return torch.stack([image.permute(1, 2, 0) for image in images])  # (T, H, W, 3)


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def pack(dataset: Crops, batch: int) -> PackedClips | PackedJpegs:
    crops = [dataset[i]["video"] for i in range(batch)]
    return pack_jpegs(crops) if isinstance(dataset, JpegCrops) else pack_clips(crops)


def check(dataset: Crops, device: torch.device, batch: int) -> float:
    """The largest difference, in grey levels, between the device's clips and the worker's."""
    worker = TrainTransform(size=SIZE, device_resize=False)
    indices = range(batch)
    packed = pack(dataset, batch).to(device)
    expected = torch.stack([worker(dataset.frames[i % len(dataset.frames)], random.Random(i)) for i in indices])
    return float((packed.resize().cpu() - expected.float()).abs().max())


def time_resize(packed: PackedClips | PackedJpegs, device: torch.device) -> float:
    """Milliseconds a clip of ``resize`` on a batch already on ``device``."""
    packed.resize()  # warm-up
    best = float("inf")
    for _ in range(5):
        synchronize(device)
        start = time.perf_counter()
        for _ in range(10):
            packed.resize()
        synchronize(device)
        best = min(best, (time.perf_counter() - start) / (10 * len(packed)))
    return best * 1e3


def end_to_end(dataset: Crops, device: torch.device, batch: int) -> tuple[float, bool | None]:
    """Clips/s through two workers, pinning (on a GPU), the copy to ``device`` and the resize; whether every batch
    arrived pinned (None: not pinned, on a CPU)."""
    pin = device.type == "cuda"
    loader = DataLoader(dataset, batch_size=batch, num_workers=2, persistent_workers=True, pin_memory=pin,
                        collate_fn=collate_clips)  # fmt: skip
    pinned = True if pin else None
    best = 0.0
    for round_ in range(4):  # the first pass starts the workers
        synchronize(device)
        start, clips = time.perf_counter(), 0
        for batch_ in loader:
            packed = batch_["video"]
            if pin:
                pinned &= packed.data.is_pinned()
            packed.to(device).resize()
            clips += len(packed)
        synchronize(device)
        if round_:
            best = max(best, clips / (time.perf_counter() - start))
    return best, pinned


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--device", default="cpu")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "out" / "device_resize"))
    args = p.parse_args()
    device = torch.device(args.device)
    if device.type == "cpu":
        torch.set_num_threads(1)  # as a CPU run's main process is timed elsewhere in benchmarks/
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    result = {"device": name, "batch": args.batch, "clip": f"{FRAMES}x{HEIGHT}x{WIDTH} -> {FRAMES}x{SIZE}x{SIZE}"}
    for prefix, dataset in (("", Crops()), ("jpeg_", JpegCrops())):
        rate, pinned = end_to_end(dataset, device, args.batch)
        result |= {
            f"{prefix}max_difference_grey_levels": round(check(dataset, device, args.batch), 3),
            f"{prefix}resize_ms_per_clip": round(time_resize(pack(dataset, args.batch).to(device), device), 3),
            f"{prefix}end_to_end_clips_per_s": round(rate, 1),
            f"{prefix}batches_arrived_pinned": pinned,
        }
    result["codec"] = codec()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(result, indent=1))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
