"""PLLaVA's adaptive structure pooling of the projected frame tokens.

Xu et al., *PLLaVA: Parameter-free LLaVA Extension from Images to Videos for Video Dense Captioning*, 2024.
Official code: github.com/magic-research/PLLaVA (``PllavaMultiModalProjector``): the projector runs on every frame
token, then a 3D adaptive average pool over (frames, height, width) to ``shape`` (16, 12, 12 in the paper: 16
frames, a 24x24 grid pooled to 12x12; temporal pooling hurt in its ablation, so T is kept).
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from lit_i2v.heads.frame_tokens.base import TokenAggregator, grid_of


class PLLaVAPool(TokenAggregator):
    """Args:
    shape: output (frames, height, width) of the adaptive average pool.
    """

    after_projector = True

    def __init__(self, shape: tuple[int, int, int] = (16, 12, 12)) -> None:
        super().__init__()
        self.shape = tuple(shape)

    def forward(self, tokens: Tensor) -> Tensor:
        b, t, n, e = tokens.shape
        g = grid_of(tokens)
        video = tokens.reshape(b, t, g, g, e).permute(0, 4, 1, 2, 3)  # (B, E, T, g, g)
        pooled = F.adaptive_avg_pool3d(video, self.shape)  # (B, E, T', h, w)
        return pooled.flatten(2).transpose(1, 2)  # (B, T'*h*w, E), frame after frame

    def num_tokens(self, frames: int, grid: int) -> int:
        t, h, w = self.shape
        return t * h * w
