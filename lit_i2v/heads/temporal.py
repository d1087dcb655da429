"""Temporal modules after the per-frame features: ``(B, T, C)`` → ``(B, C)``.

- ``MeanPool``: frame averaging (ViFi-CLIP, ST-Adapter, the linear probe). Blind to frame order: on data where a
  class and its time-reversed twin differ only in order (SSv2 "left to right" / "right to left"), it cannot tell
  them apart.
- ``TemporalTransformer``: learnable frame position embeddings, a few transformer layers over time, a residual to
  the input, then the mean: ActionCLIP's "Transf" fusion (Wang et al. 2021, section 3.3) and CLIP4Clip's
  ``seqTransf`` (Luo et al. 2022, section 3.3).

Like heads, temporal modules are built by the task once the feature width is known (``build(width)``).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from lit_i2v.backbones.vit import Block, QuickGELU


class Temporal(nn.Module):
    """Base class: ``build(width)`` creates the parameters for features of that width."""

    def build(self, width: int) -> None:
        """Create parameters for ``width``-wide features (a no-op for parameter-free modules)."""


class MeanPool(Temporal):
    """Average over time: ``(B, T, C)`` → ``(B, C)``. No parameters."""

    def forward(self, x: Tensor) -> Tensor:
        return x.mean(dim=1)


class TemporalTransformer(Temporal):
    """``mean_t(x + transformer(x + pos))`` over frames.

    Args:
        layers: transformer layers over time (ActionCLIP: 6; CLIP4Clip seqTransf: 4).
        heads: attention heads (must divide the feature width).
        max_frames: the most frames the position embedding covers.
    """

    def __init__(self, layers: int = 1, heads: int = 8, max_frames: int = 32) -> None:
        super().__init__()
        self.num_layers, self.heads, self.max_frames = layers, heads, max_frames
        self.frame_pos: nn.Parameter | None = None
        self.blocks = nn.ModuleList()

    def build(self, width: int) -> None:
        self.frame_pos = nn.Parameter(torch.empty(1, self.max_frames, width).normal_(std=0.02))
        self.blocks = nn.ModuleList(Block(width, self.heads, 4.0, QuickGELU) for _ in range(self.num_layers))
        for block in self.blocks:
            for linear in (block.attn.qkv, block.attn.proj, block.mlp.fc1, block.mlp.fc2):
                nn.init.normal_(linear.weight, std=0.02)
                nn.init.zeros_(linear.bias)

    def forward(self, x: Tensor) -> Tensor:
        t = x.shape[1]
        if t > self.max_frames:
            raise ValueError(f"{t} frames but temporal.max_frames is {self.max_frames}")
        h = x + self.frame_pos[:, :t].to(x.dtype)  # (B, T, C)
        for block in self.blocks:
            h = block(h, num_frames=t)
        return (x + h).mean(dim=1)  # residual to the frame features, then the mean over time

    def extra_repr(self) -> str:
        return f"layers={self.num_layers}, heads={self.heads}, max_frames={self.max_frames}"
