"""Which frames make a clip: segment-based uniform sampling (TSN; SSv2) and dense sampling with a stride (Kinetics).

A sampler maps a video's frame count to the frame indices of its clips: one clip with random jitter in training,
``test_clips`` deterministic clips spread over the video in evaluation (the temporal views; spatial crops are the
eval transform's). Short videos repeat frames rather than failing.
"""

from __future__ import annotations

import random


class FrameSampler:
    """Base class. Args: num_frames (T, frames per clip), test_clips (temporal views in evaluation)."""

    def __init__(self, num_frames: int = 8, test_clips: int = 1) -> None:
        if num_frames < 1 or test_clips < 1:
            raise ValueError("num_frames and test_clips must be positive")
        self.num_frames = num_frames
        self.test_clips = test_clips

    def __call__(self, total: int, training: bool, rng: random.Random | None = None) -> list[list[int]]:
        """Frame indices of each clip: one clip in training, ``test_clips`` clips otherwise."""
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}(num_frames={self.num_frames}, test_clips={self.test_clips})"


class UniformSampler(FrameSampler):
    """T equal segments over the whole video, one frame from each (Wang et al., TSN, ECCV 2016).

    Training takes a random frame in each segment; evaluation takes clip ``k`` of ``n`` at offset
    ``(k + 0.5) / n`` within each segment (the centre when ``n == 1``).
    """

    def __call__(self, total: int, training: bool, rng: random.Random | None = None) -> list[list[int]]:
        rng = rng or random
        seg = total / self.num_frames
        if training:
            return [[min(int(seg * i + rng.random() * seg), total - 1) for i in range(self.num_frames)]]
        clips = []
        for k in range(self.test_clips):
            offset = (k + 0.5) / self.test_clips
            clips.append([min(int(seg * (i + offset)), total - 1) for i in range(self.num_frames)])
        return clips


class DenseSampler(FrameSampler):
    """T frames ``stride`` apart from a random start (training) or from ``test_clips`` evenly spaced starts.

    Args:
        stride: frames between two sampled frames (Kinetics recipes: 8x8, 16x4, 8x16 for ST-Adapter, ...).
    """

    def __init__(self, num_frames: int = 8, stride: int = 8, test_clips: int = 1) -> None:
        super().__init__(num_frames, test_clips)
        self.stride = stride

    def _clip(self, start: int, total: int) -> list[int]:
        return [min(start + i * self.stride, total - 1) for i in range(self.num_frames)]

    def __call__(self, total: int, training: bool, rng: random.Random | None = None) -> list[list[int]]:
        rng = rng or random
        span = (self.num_frames - 1) * self.stride + 1
        room = max(total - span, 0)
        if training:
            return [self._clip(rng.randint(0, room), total)]
        if self.test_clips == 1:
            return [self._clip(room // 2, total)]
        return [self._clip(round(room * k / (self.test_clips - 1)), total) for k in range(self.test_clips)]

    def __repr__(self) -> str:
        return f"DenseSampler(num_frames={self.num_frames}, stride={self.stride}, test_clips={self.test_clips})"
