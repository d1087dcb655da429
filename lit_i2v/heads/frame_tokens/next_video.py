"""LLaVA-NeXT-Video's frame pooling: each frame's patch grid pooled 2x2 before the projector.

Zhang et al., *LLaVA-NeXT: A Strong Zero-shot Video Understanding Model* (blog, 2024); reference implementation:
transformers' ``LlavaNextVideoPooler`` (``spatial_pool_mode`` average, max or conv; ``spatial_pool_stride`` 2),
which ``tests/test_frame_tokens.py`` checks this against on a folder transformers writes. The ``conv`` mode, which
has weights, is not read here.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from lit_i2v.heads.frame_tokens.base import TokenAggregator, grid_of


class NextVideoPool(TokenAggregator):
    """Args:
    stride: pooling window and stride on the patch grid (2: 24x24 → 12x12 for ViT-L/14 at 336 px).
    mode: ``average`` or ``max``.
    """

    def __init__(self, stride: int = 2, mode: str = "average") -> None:
        super().__init__()
        if mode not in ("average", "max"):
            raise ValueError(f"frame_tokens.mode {mode!r}: average or max (conv has weights, not read here)")
        self.stride, self.mode = stride, mode

    def forward(self, tokens: Tensor) -> Tensor:
        b, t, n, d = tokens.shape
        g = grid_of(tokens)
        grid = tokens.reshape(b * t, g, g, d).permute(0, 3, 1, 2)  # (B*T, D, g, g)
        pool = F.avg_pool2d if self.mode == "average" else F.max_pool2d
        pooled = pool(grid, self.stride, self.stride)  # (B*T, D, g', g')
        return pooled.flatten(2).transpose(1, 2).reshape(b, -1, d)  # (B, T*g'*g', D)

    def num_tokens(self, frames: int, grid: int) -> int:
        return frames * (grid // self.stride) ** 2
