"""Clip transforms on uint8 tensors: the same random parameters for every frame of a clip.

Input: frames ``(T, H, W, 3)`` uint8 as decoded. Output: ``(T, 3, S, S)`` uint8 in training, ``(crops, T, 3, S, S)``
in evaluation. Normalisation is not done here: the model normalises on its device with the backbone's mean and std,
which keeps the workers' output small (uint8) and the data code free of model facts.

Training clips are, by default, resized on the device too: the worker only cuts the crop out of the decoded frames
(``ClipCrop``, views, no pixel work), the collation packs a batch's crops of different sizes into one buffer
(``PackedClips``), and the DataModule resizes them to S x S on the device (``on_after_batch_transfer``). With JPEG
shards the antialiased resize was a third of a worker's work on a clip (``benchmarks/RESULTS.md``). RandAugment works on
the resized uint8 clip, so a transform with RandAugment resizes in the worker. With JPEG shards and
``decode_on_device``, the decoding moves to the device as well: a training clip leaves the worker as its JPEGs and crop
box (``JpegCrop``, drawn by ``TrainTransform.box`` as the crop path draws it), batched as ``PackedJpegs``.

The output keeps the decoder's memory order: it is a ``(T, 3, S, S)`` view of ``(T, S, S, 3)`` memory (channels-last).
PyTorch's antialiased uint8 resize runs several times faster on channels-last input than on planar input, and the
transposition to planes, the other large cost of a worker after decoding, is left to the device, which does it in
the same pass that normalises (the task's ``normalize``). ``stack_clips`` batches such clips without transposing them.
"""

from __future__ import annotations

import logging
import math
import random
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as TF

from lit_i2v.data.video.images import decode_jpegs

log = logging.getLogger("lit_i2v.data")


def _to_tchw(frames: Tensor) -> Tensor:
    return frames.permute(0, 3, 1, 2)  # (T, H, W, 3) -> (T, 3, H, W), a view: the memory stays channels-last


def stack_clips(clips: list[Tensor], out: Tensor | None = None) -> Tensor:
    """Stack clips ``(..., 3, S, S)`` along a new first dim in their channels-last memory order (a copy of whole
    blocks, not a transposition); ``out``, if given, is the ``(N, ..., S, S, 3)`` tensor to write into."""
    planes = [clip.movedim(-3, -1) for clip in clips]  # (..., S, S, 3): contiguous views of channels-last clips
    return torch.stack(planes, out=out).movedim(-1, -3)  # (N, ..., 3, S, S), memory (N, ..., S, S, 3)


class ClipCrop:
    """A training clip cut out but not yet resized: ``frames`` are T views ``(h, w, 3)`` of the decoded frames (no
    pixel copied yet), to be resized to ``size`` and mirrored if ``flip``. ``pack_clips`` batches them."""

    def __init__(self, frames: Sequence[Tensor], flip: bool, size: int) -> None:
        self.frames, self.flip, self.size = list(frames), flip, size

    @property
    def nbytes(self) -> int:
        return sum(frame.nbytes for frame in self.frames)


class PackedClips:
    """A batch of ``ClipCrop``: crops of different sizes packed one after another into one flat uint8 buffer.

    ``data`` holds clip i as ``(T, h_i, w_i, 3)``; ``sizes`` ``(B, 2)`` the ``(h_i, w_i)`` and ``flip`` ``(B,)``
    whether to mirror each clip. ``to`` moves only ``data``: the sizes stay on the CPU, so unpacking on a GPU reads them
    without waiting for the device. ``resize`` makes the batch a float ``(B, T, 3, S, S)`` tensor (the DataModule's
    ``on_after_batch_transfer`` calls it). Lightning moves a batch holding one with ``to``; the DataLoader pins it
    (``pin_memory``).
    """

    def __init__(self, data: Tensor, sizes: Tensor, flip: Tensor, frames: int, size: int) -> None:
        self.data, self.sizes, self.flip, self.frames, self.size = data, sizes, flip, frames, size

    def __len__(self) -> int:
        return len(self.sizes)

    @property
    def shape(self) -> torch.Size:
        """The shape of the resized batch ``(B, T, 3, S, S)``."""
        return torch.Size((len(self), self.frames, 3, self.size, self.size))

    def _with(self, data: Tensor) -> PackedClips:
        return PackedClips(data, self.sizes, self.flip, self.frames, self.size)

    def to(self, device: torch.device | str, non_blocking: bool | None = None) -> PackedClips:
        """On ``device``; asynchronously by default when ``data`` is pinned."""
        asynchronous = self.data.is_pinned() if non_blocking is None else non_blocking
        return self._with(self.data.to(device, non_blocking=asynchronous))

    def pin_memory(self) -> PackedClips:
        return self._with(self.data.pin_memory())

    def clips(self) -> list[Tensor]:
        """Each clip's crop, ``(T, 3, h_i, w_i)`` uint8 views of ``data`` (channels-last memory)."""
        out, offset = [], 0
        for h, w in self.sizes.tolist():
            n = self.frames * h * w * 3
            out.append(self.data[offset : offset + n].view(self.frames, h, w, 3).permute(0, 3, 1, 2))
            offset += n
        return out

    def resize(self, in_uint8: bool | None = None) -> Tensor:
        """The batch as float32 ``(B, T, 3, S, S)`` on ``data``'s device, values 0-255: each crop resized to S x S
        (bilinear, antialiased) and mirrored where ``flip`` says (``resize_clips``)."""
        return resize_clips(self.clips(), self.flip.tolist(), self.size, in_uint8)


def resize_clips(clips: Sequence[Tensor], flips: Sequence[bool], size: int, in_uint8: bool | None = None) -> Tensor:
    """uint8 crops ``(T, 3, h_i, w_i)`` as one float32 ``(B, T, 3, S, S)`` tensor on their device, values 0-255, each
    resized to S x S (bilinear, antialiased) and mirrored where ``flips`` says.

    ``in_uint8`` (default: on a CPU) resizes with PyTorch's uint8 kernel, as a worker would (the same clips, exactly),
    which on a CPU runs about 10x faster than the float kernel; otherwise in float (GPUs have no uint8 antialiased
    resize), which differs from the worker's by its rounding to uint8, at most one grey level."""
    device = clips[0].device
    in_uint8 = device.type == "cpu" if in_uint8 is None else in_uint8
    out = torch.empty((len(clips), clips[0].shape[0], 3, size, size), device=device)
    for i, (clip, flip) in enumerate(zip(clips, flips, strict=True)):
        clip = clip if in_uint8 else clip.float().contiguous()  # planar floats: what every device's kernel takes
        clip = F.interpolate(clip, size=(size, size), mode="bilinear", antialias=True)  # (T, 3, S, S)
        out[i] = clip.flip(-1) if flip else clip
    return out


def pack_clips(crops: Sequence[ClipCrop], out: Tensor | None = None) -> PackedClips:
    """Copy ``crops`` (one clip length and output size) into one buffer: ``out``, a flat uint8 tensor of at least
    ``sum(crop.nbytes)`` elements, if given."""
    frames, size = len(crops[0].frames), crops[0].size
    if any(len(crop.frames) != frames or crop.size != size for crop in crops):
        raise ValueError("a batch's clips must have one number of frames and one output size")
    total = sum(crop.nbytes for crop in crops)
    data = torch.empty(total, dtype=torch.uint8) if out is None else out[:total]
    offset = 0
    for crop in crops:
        h, w = crop.frames[0].shape[:2]
        torch.stack(crop.frames, out=data[offset : offset + crop.nbytes].view(frames, h, w, 3))
        offset += crop.nbytes
    sizes = torch.tensor([crop.frames[0].shape[:2] for crop in crops], dtype=torch.int64).view(-1, 2)
    flip = torch.tensor([crop.flip for crop in crops], dtype=torch.bool)
    return PackedClips(data, sizes, flip, frames, size)


class JpegCrop:
    """A training clip still encoded: the JPEG bytes of its T frames, the crop ``box`` ``(top, left, h, w)`` to cut
    out of them once decoded, and the ``flip``; ``name`` says where it comes from. ``pack_jpegs`` batches them."""

    def __init__(
        self, jpegs: Sequence[bytes], box: tuple[int, int, int, int], flip: bool, size: int, name: str
    ) -> None:
        self.jpegs, self.box, self.flip, self.size, self.name = list(jpegs), box, flip, size, name

    @property
    def nbytes(self) -> int:
        return sum(len(jpeg) for jpeg in self.jpegs)


class PackedJpegs:
    """A batch of ``JpegCrop``: the frames' JPEG bytes one after another in one flat uint8 buffer, decoded, cropped,
    resized and mirrored by ``resize`` on the device the batch was moved to (``to``), with nvJPEG on a GPU.

    ``data`` holds the B x T JPEGs, ``lengths`` ``(B * T,)`` their sizes, ``boxes`` ``(B, 4)`` each clip's crop
    ``(top, left, h, w)``, ``flip`` ``(B,)`` whether to mirror it, ``names`` where each clip comes from. The bytes stay
    in CPU memory whatever the device (the decoders read them there); ``to`` only records the device.

    A frame that fails to decode (a shard damaged after it was written) is logged with its clip's name and left black:
    the step goes on, as a worker would have skipped the sample.
    """

    def __init__(
        self, data: Tensor, lengths: Tensor, boxes: Tensor, flip: Tensor, names: list[str], frames: int, size: int,
        device: torch.device | str = "cpu",
    ) -> None:  # fmt: skip
        self.data, self.lengths, self.boxes, self.flip, self.names = data, lengths, boxes, flip, names
        self.frames, self.size, self.device = frames, size, torch.device(device)

    def __len__(self) -> int:
        return len(self.boxes)

    @property
    def shape(self) -> torch.Size:
        """The shape of the resized batch ``(B, T, 3, S, S)``."""
        return torch.Size((len(self), self.frames, 3, self.size, self.size))

    def _with(self, data: Tensor, device: torch.device | str) -> PackedJpegs:
        return PackedJpegs(data, self.lengths, self.boxes, self.flip, self.names, self.frames, self.size, device)

    def to(self, device: torch.device | str, non_blocking: bool | None = None) -> PackedJpegs:
        """To be decoded on ``device``; the bytes stay where they are."""
        return self._with(self.data, device)

    def pin_memory(self) -> PackedJpegs:
        return self._with(self.data.pin_memory(), self.device)

    def jpegs(self) -> list[Tensor]:
        """Each frame's JPEG, 1-D uint8 views of ``data``."""
        return list(torch.split(self.data[: int(self.lengths.sum())], self.lengths.tolist()))

    def decode(self) -> list[Tensor | None]:
        """The B x T frames, uint8 ``(3, H, W)`` on the device; None for a frame that does not decode."""
        jpegs = self.jpegs()
        try:
            return decode_jpegs(jpegs, self.device)
        except Exception:  # some frame is damaged: decode them one by one to find it
            return [self._decode_one(i, jpeg) for i, jpeg in enumerate(jpegs)]

    def _decode_one(self, i: int, jpeg: Tensor) -> Tensor | None:
        try:
            return decode_jpegs([jpeg], self.device)[0]
        except Exception as err:
            log.warning("%s: frame %d of the clip does not decode (%s); it is left black", self.names[i // self.frames],
                        i % self.frames, err)  # fmt: skip
            return None

    def clips(self) -> list[Tensor]:
        """Each clip's crop, uint8 ``(T, 3, h_i, w_i)`` on the device."""
        images, out = self.decode(), []
        for i, (top, left, h, w) in enumerate(self.boxes.tolist()):
            frames = [
                image[:, top : top + h, left : left + w].permute(1, 2, 0) if image is not None
                else torch.zeros(h, w, 3, dtype=torch.uint8, device=self.device)
                for image in images[i * self.frames : (i + 1) * self.frames]
            ]  # fmt: skip
            out.append(torch.stack(frames).permute(0, 3, 1, 2))  # channels-last memory, as a worker's crop
        return out

    def resize(self, in_uint8: bool | None = None) -> Tensor:
        """The batch as float32 ``(B, T, 3, S, S)`` on the device, values 0-255 (``resize_clips``): on a CPU, exactly
        the clips a worker would have cut and resized."""
        return resize_clips(self.clips(), self.flip.tolist(), self.size, in_uint8)


def pack_jpegs(crops: Sequence[JpegCrop], out: Tensor | None = None) -> PackedJpegs:
    """Copy ``crops``' JPEGs (one clip length and output size) into one buffer: ``out``, a flat uint8 tensor of at
    least ``sum(crop.nbytes)`` elements, if given."""
    frames, size = len(crops[0].jpegs), crops[0].size
    if any(len(crop.jpegs) != frames or crop.size != size for crop in crops):
        raise ValueError("a batch's clips must have one number of frames and one output size")
    jpegs = [jpeg for crop in crops for jpeg in crop.jpegs]
    lengths = [len(jpeg) for jpeg in jpegs]
    data = torch.empty(sum(lengths), dtype=torch.uint8) if out is None else out[: sum(lengths)]
    np.concatenate([np.frombuffer(jpeg, dtype=np.uint8) for jpeg in jpegs], out=data.numpy())  # one copy, no join
    return PackedJpegs(
        data,
        torch.tensor(lengths, dtype=torch.int64),
        torch.tensor([crop.box for crop in crops], dtype=torch.int64).view(-1, 4),
        torch.tensor([crop.flip for crop in crops], dtype=torch.bool),
        [crop.name for crop in crops],
        frames,
        size,
    )


class TrainTransform:
    """Random resized crop, optional horizontal flip and RandAugment, identical across the frames of a clip.

    Args:
        size: output side S (the backbone's input resolution).
        scale: range of the crop's area as a fraction of the frame.
        ratio: range of the crop's aspect ratio.
        hflip: flip half of the clips horizontally; set False for direction-dependent labels (SSv2).
        rand_augment: ``[num_ops, magnitude]`` of RandAugment (Cubuk et al. 2020), e.g. ``[4, 7]``; None for none.
        device_resize: leave the resize and flip to the task's device (the worker returns a ``ClipCrop``); None for
            yes unless ``rand_augment`` is set, whose ops need the resized clip in the worker.
    """

    def __init__(
        self,
        size: int = 224,
        scale: tuple[float, float] = (0.08, 1.0),
        ratio: tuple[float, float] = (3 / 4, 4 / 3),
        hflip: bool = True,
        rand_augment: tuple[int, int] | None = None,
        device_resize: bool | None = None,
    ) -> None:
        if device_resize and rand_augment:
            raise ValueError(
                "train_transform: rand_augment works on the resized clip in the worker, so it cannot be combined "
                "with device_resize: true; drop device_resize (or set it false) to keep RandAugment"
            )
        self.size, self.scale, self.ratio, self.hflip = size, tuple(scale), tuple(ratio), hflip
        self.rand_augment = tuple(rand_augment) if rand_augment else None
        self.device_resize = not rand_augment if device_resize is None else device_resize
        self._rand_augment = (
            v2.RandAugment(num_ops=rand_augment[0], magnitude=rand_augment[1]) if rand_augment else None
        )

    def crop_params(self, height: int, width: int, rng: random.Random) -> tuple[int, int, int, int]:
        """(top, left, h, w) of a crop with random area and aspect ratio; the central crop if none fits."""
        area = height * width
        log_ratio = (math.log(self.ratio[0]), math.log(self.ratio[1]))
        for _ in range(10):
            target = area * rng.uniform(*self.scale)
            aspect = math.exp(rng.uniform(*log_ratio))
            w = round(math.sqrt(target * aspect))
            h = round(math.sqrt(target / aspect))
            if 0 < w <= width and 0 < h <= height:
                return rng.randint(0, height - h), rng.randint(0, width - w), h, w
        side = min(height, width)
        return (height - side) // 2, (width - side) // 2, side, side

    def box(self, height: int, width: int, rng: random.Random) -> tuple[tuple[int, int, int, int], bool]:
        """The random crop ``(top, left, h, w)`` of a ``height`` x ``width`` clip, and whether to mirror it."""
        box = self.crop_params(height, width, rng)
        return box, self.hflip and rng.random() < 0.5

    def __call__(self, frames: Tensor | Sequence[Tensor], rng: random.Random | None = None) -> Tensor | ClipCrop:
        """``frames`` ``(T, H, W, 3)``, or T frames ``(H, W, 3)`` → the clip ``(T, 3, S, S)``, or its ``ClipCrop``
        with ``device_resize``."""
        rng = rng or random
        (top, left, h, w), flip = self.box(*frames[0].shape[:2], rng)
        if self.device_resize:
            return ClipCrop([frame[top : top + h, left : left + w] for frame in frames], flip, self.size)
        clip = _to_tchw(frames if isinstance(frames, Tensor) else torch.stack(list(frames)))  # (T, 3, H, W)
        clip = TF.resized_crop(clip, top, left, h, w, [self.size, self.size], antialias=True)
        if flip:
            clip = TF.horizontal_flip(clip)
        if self._rand_augment is not None:
            with torch.random.fork_rng(devices=[]):  # RandAugment draws from torch's generator: seed it from rng
                torch.manual_seed(rng.getrandbits(63))
                clip = self._rand_augment(clip)  # one draw of ops for the whole (T, 3, S, S) tensor
        return clip

    def __repr__(self) -> str:
        return (
            f"TrainTransform(size={self.size}, scale={self.scale}, ratio={tuple(round(r, 3) for r in self.ratio)}, "
            f"hflip={self.hflip}, rand_augment={self.rand_augment}, device_resize={self.device_resize})"
        )


class EvalTransform:
    """Resize the short side, then one central crop or three crops along the long side (the spatial views); or
    squash the whole frame to the square (SigLIP's evaluation resize: nothing cropped, the aspect ratio lost).

    Args:
        size: output side S.
        short_side: short side after resizing; defaults to ``size`` (CLIP recipes resize to 224 and crop 224).
        crops: 1 (centre) or 3 (start, centre, end of the long side).
        resize: ``short_side`` (CLIP's: resize, then crop) or ``squash`` (SigLIP's; one view, ``crops: 1``).
    """

    def __init__(
        self, size: int = 224, short_side: int | None = None, crops: int = 1, resize: str = "short_side"
    ) -> None:
        if crops not in (1, 3):
            raise ValueError(f"crops must be 1 or 3, got {crops}")
        if resize not in ("short_side", "squash") or (resize == "squash" and (crops != 1 or short_side)):
            raise ValueError(f"resize {resize!r} with crops {crops}, short_side {short_side}: short_side (1 or 3 "
                             "crops) or squash (1 view, no short side)")  # fmt: skip
        self.size, self.short_side, self.crops, self.resize = size, short_side or size, crops, resize

    def __call__(self, frames: Tensor, rng: random.Random | None = None) -> Tensor:
        if self.resize == "squash":
            return stack_clips([TF.resize(_to_tchw(frames), [self.size, self.size], antialias=True)])  # (1, T, 3, S, S)
        clip = TF.resize(_to_tchw(frames), self.short_side, antialias=True)  # short side -> short_side
        height, width = clip.shape[-2:]
        s = self.size
        if self.crops == 1:
            return stack_clips([TF.center_crop(clip, [s, s])])  # (1, T, 3, S, S)
        if width >= height:
            top = (height - s) // 2
            lefts = [0, (width - s) // 2, width - s]
            boxes = [(top, left) for left in lefts]
        else:
            left = (width - s) // 2
            boxes = [(top, left) for top in (0, (height - s) // 2, height - s)]
        return stack_clips([TF.crop(clip, t, left, s, s) for t, left in boxes])  # (3, T, 3, S, S)

    def __repr__(self) -> str:
        return (
            f"EvalTransform(size={self.size}, short_side={self.short_side}, crops={self.crops}, resize={self.resize})"
        )
