"""Clip transforms on uint8 tensors: the same random parameters for every frame of a clip.

Input: frames ``(T, H, W, 3)`` uint8 as decoded. Output: ``(T, 3, S, S)`` uint8 in training, ``(crops, T, 3, S, S)``
in evaluation. Normalisation is not done here: the model normalises on its device with the backbone's mean and std,
which keeps the workers' output small (uint8) and the data code free of model facts.

The output keeps the decoder's memory order: it is a ``(T, 3, S, S)`` view of ``(T, S, S, 3)`` memory (channels-last).
PyTorch's antialiased uint8 resize runs several times faster on channels-last input than on planar input, and the
transposition to planes, the other large cost of a worker after decoding, is left to the device, which does it in
the same pass that normalises (``VideoTask.normalize``). ``stack_clips`` batches such clips without transposing them.
"""

from __future__ import annotations

import math
import random

import torch
from torch import Tensor
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as TF


def _to_tchw(frames: Tensor) -> Tensor:
    return frames.permute(0, 3, 1, 2)  # (T, H, W, 3) -> (T, 3, H, W), a view: the memory stays channels-last


def stack_clips(clips: list[Tensor], out: Tensor | None = None) -> Tensor:
    """Stack clips ``(..., 3, S, S)`` along a new first dim in their channels-last memory order (a copy of whole
    blocks, not a transposition); ``out``, if given, is the ``(N, ..., S, S, 3)`` tensor to write into."""
    planes = [clip.movedim(-3, -1) for clip in clips]  # (..., S, S, 3): contiguous views of channels-last clips
    return torch.stack(planes, out=out).movedim(-1, -3)  # (N, ..., 3, S, S), memory (N, ..., S, S, 3)


class TrainTransform:
    """Random resized crop, optional horizontal flip and RandAugment, identical across the frames of a clip.

    Args:
        size: output side S (the backbone's input resolution).
        scale: range of the crop's area as a fraction of the frame.
        ratio: range of the crop's aspect ratio.
        hflip: flip half of the clips horizontally; set False for direction-dependent labels (SSv2).
        rand_augment: ``[num_ops, magnitude]`` of RandAugment (Cubuk et al. 2020), e.g. ``[4, 7]``; None for none.
    """

    def __init__(
        self,
        size: int = 224,
        scale: tuple[float, float] = (0.08, 1.0),
        ratio: tuple[float, float] = (3 / 4, 4 / 3),
        hflip: bool = True,
        rand_augment: tuple[int, int] | None = None,
    ) -> None:
        self.size, self.scale, self.ratio, self.hflip = size, tuple(scale), tuple(ratio), hflip
        self.rand_augment = tuple(rand_augment) if rand_augment else None
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

    def __call__(self, frames: Tensor, rng: random.Random | None = None) -> Tensor:
        rng = rng or random
        clip = _to_tchw(frames)  # (T, 3, H, W)
        top, left, h, w = self.crop_params(clip.shape[-2], clip.shape[-1], rng)
        clip = TF.resized_crop(clip, top, left, h, w, [self.size, self.size], antialias=True)
        if self.hflip and rng.random() < 0.5:
            clip = TF.horizontal_flip(clip)
        if self._rand_augment is not None:
            with torch.random.fork_rng(devices=[]):  # RandAugment draws from torch's generator: seed it from rng
                torch.manual_seed(rng.getrandbits(63))
                clip = self._rand_augment(clip)  # one draw of ops for the whole (T, 3, S, S) tensor
        return clip

    def __repr__(self) -> str:
        return (
            f"TrainTransform(size={self.size}, scale={self.scale}, ratio={tuple(round(r, 3) for r in self.ratio)}, "
            f"hflip={self.hflip}, rand_augment={self.rand_augment})"
        )


class EvalTransform:
    """Resize the short side, then one central crop or three crops along the long side (the spatial views).

    Args:
        size: output side S.
        short_side: short side after resizing; defaults to ``size`` (CLIP recipes resize to 224 and crop 224).
        crops: 1 (centre) or 3 (start, centre, end of the long side).
    """

    def __init__(self, size: int = 224, short_side: int | None = None, crops: int = 1) -> None:
        if crops not in (1, 3):
            raise ValueError(f"crops must be 1 or 3, got {crops}")
        self.size, self.short_side, self.crops = size, short_side or size, crops

    def __call__(self, frames: Tensor, rng: random.Random | None = None) -> Tensor:
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
        return f"EvalTransform(size={self.size}, short_side={self.short_side}, crops={self.crops})"
