"""SlowFast-LLaVA's two pathways over the projected frame tokens, training-free.

Xu et al., *SlowFast-LLaVA: A Strong Training-Free Baseline for Video Large Language Models*, 2024. Official code:
github.com/apple/ml-slowfast-llava (``prepare_slowfast``). After the projector: the slow pathway takes ``slow_frames``
frames evenly spaced (indices ``floor(linspace(0, T, n + 1))[:-1]``) and pools each frame's tokens lightly (the
paper's default: max over horizontal pairs, ``1d_max``, halving the tokens); the fast pathway takes every frame,
each pooled strongly to ``fast_grid`` x ``fast_grid`` (adaptive average, 4x4); slow tokens then fast tokens. Paper:
50 frames, 10 slow, a 24x24 grid: 10 x 288 + 50 x 16 = 3680 tokens.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from lit_i2v.heads.frame_tokens.base import TokenAggregator, grid_of

SLOW_POOLS = ("1d_max", "1d_avg", "2d_max", "2d_avg", "none")


class SlowFastPool(TokenAggregator):
    """Args:
    slow_frames: frames of the slow pathway.
    slow_pool: its per-frame pooling: ``1d_max``/``1d_avg`` (pairs of neighbours in the flattened grid), ``2d_max``/
        ``2d_avg`` (2x2), ``none``.
    fast_grid: side of the fast pathway's pooled grid.
    """

    after_projector = True

    def __init__(self, slow_frames: int = 10, slow_pool: str = "1d_max", fast_grid: int = 4) -> None:
        super().__init__()
        if slow_pool not in SLOW_POOLS:
            raise ValueError(f"frame_tokens.slow_pool {slow_pool!r}: one of {', '.join(SLOW_POOLS)}")
        self.slow_frames, self.slow_pool, self.fast_grid = slow_frames, slow_pool, fast_grid

    def slow_indices(self, frames: int) -> list[int]:
        if self.slow_frames > frames:
            raise ValueError(f"frame_tokens.slow_frames={self.slow_frames} but the clip has {frames} frames")
        return torch.linspace(0, frames, self.slow_frames + 1).to(torch.int32).tolist()[:-1]

    def forward(self, tokens: Tensor) -> Tensor:
        b, t, n, e = tokens.shape
        g = grid_of(tokens)
        slow = tokens[:, self.slow_indices(t)]  # (B, S, N, E)
        s = slow.shape[1]
        if self.slow_pool.startswith("1d"):
            pool = F.max_pool1d if self.slow_pool == "1d_max" else F.avg_pool1d
            slow = pool(slow.reshape(b * s, n, e).transpose(1, 2), 2, 2).transpose(1, 2)  # (B*S, N/2, E)
        elif self.slow_pool.startswith("2d"):
            pool = F.max_pool2d if self.slow_pool == "2d_max" else F.avg_pool2d
            grid = slow.reshape(b * s, g, g, e).permute(0, 3, 1, 2)
            slow = pool(grid, 2, 2).flatten(2).transpose(1, 2)  # (B*S, (g/2)^2, E)
        slow = slow.reshape(b, -1, e)
        fast = tokens.reshape(b * t, g, g, e).permute(0, 3, 1, 2)  # (B*T, E, g, g)
        fast = F.adaptive_avg_pool2d(fast, self.fast_grid).flatten(2).transpose(1, 2).reshape(b, -1, e)
        return torch.cat([slow, fast], 1)  # (B, slow + fast, E)

    def num_tokens(self, frames: int, grid: int) -> int:
        n = grid * grid
        per_slow = {"none": n, "1d_max": n // 2, "1d_avg": n // 2, "2d_max": (grid // 2) ** 2,
                    "2d_avg": (grid // 2) ** 2}[self.slow_pool]  # fmt: skip
        return self.slow_frames * per_slow + frames * self.fast_grid**2
