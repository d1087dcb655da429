"""A learnable per-frame embedding added to every token of a frame, zero at start (AIM, ZeroI2V's official code).

Lives in the image tower's ``post_embed`` seam: tokens ``(B*T, L, D)`` get ``embedding[t]`` added to frame ``t``.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


class TemporalEmbedding(nn.Module):
    """Args: max_frames (the most frames it covers), width (D)."""

    def __init__(self, max_frames: int, width: int) -> None:
        super().__init__()
        self.embedding = nn.Parameter(torch.zeros(1, max_frames, 1, width))

    def forward(self, x: Tensor, num_frames: int) -> Tensor:
        if num_frames > self.embedding.shape[1]:
            raise ValueError(f"{num_frames} frames but the temporal embedding covers {self.embedding.shape[1]}")
        bt, length, width = x.shape
        x = x.reshape(bt // num_frames, num_frames, length, width)  # (B, T, L, D)
        return (x + self.embedding[:, :num_frames].to(x.dtype)).reshape(bt, length, width)
