"""LLaVA-OneVision's video tokens: each frame's projected grid halved by bilinear interpolation, then one newline.

Li et al., *LLaVA-OneVision: Easy Visual Task Transfer*, 2024. Reference implementation: transformers'
``LlavaOnevisionModel.get_video_features`` (``apply_pooling``: bilinear, ``ceil(g / 2)`` a side, after the projector;
then the checkpoint's ``image_newline`` once, after the last frame), which ``tests/test_frame_tokens.py`` checks
this against. The newline is the backbone's parameter: the task appends it (``appends_newline``).
"""

from __future__ import annotations

import math

import torch.nn.functional as F
from torch import Tensor

from lit_i2v.heads.frame_tokens.base import TokenAggregator, grid_of


class OneVisionPool(TokenAggregator):
    after_projector = True
    appends_newline = True

    def forward(self, tokens: Tensor) -> Tensor:
        b, t, n, e = tokens.shape
        g = grid_of(tokens)
        grid = tokens.reshape(b * t, g, g, e).permute(0, 3, 1, 2)  # (B*T, E, g, g)
        half = math.ceil(g / 2)
        pooled = F.interpolate(grid, size=(half, half), mode="bilinear")  # (B*T, E, g', g')
        return pooled.permute(0, 2, 3, 1).reshape(b, t * half * half, e)  # (B, T*g'^2, E), frame after frame

    def num_tokens(self, frames: int, grid: int) -> int:
        return frames * math.ceil(grid / 2) ** 2 + 1  # and the newline
