"""Video-ChatGPT's spatio-temporal means: one token per frame and one per patch position.

Maaz et al., *Video-ChatGPT: Towards Detailed Video Understanding via Large Vision and Language Models*, ACL 2024.
Official code: github.com/mbzuai-oryx/Video-ChatGPT (``get_spatio_temporal_features``). From the CLIP tower's
penultimate features of T frames: the mean over each frame's patches (T temporal tokens) and the mean over frames of
each patch position (N spatial tokens), concatenated in that order, before the projector (a linear layer, trained).
The official code pads the temporal tokens with zeros to 100 frames (its maximum); ``pad_to`` does the same.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from lit_i2v.heads.frame_tokens.base import TokenAggregator


class VideoChatGPTPool(TokenAggregator):
    """Args:
    pad_to: zero-pad the temporal tokens to this many frames (official: 100); None: T tokens.
    """

    def __init__(self, pad_to: int | None = None) -> None:
        super().__init__()
        self.pad_to = pad_to

    def forward(self, tokens: Tensor) -> Tensor:
        temporal = tokens.mean(2)  # (B, T, D): each frame's mean over its patches
        spatial = tokens.mean(1)  # (B, N, D): each position's mean over frames
        if self.pad_to is not None:
            if temporal.shape[1] > self.pad_to:
                raise ValueError(f"{temporal.shape[1]} frames, more than pad_to={self.pad_to}")
            temporal = F.pad(temporal, (0, 0, 0, self.pad_to - temporal.shape[1]))
        return torch.cat([temporal, spatial], 1)  # (B, T + N, D)

    def num_tokens(self, frames: int, grid: int) -> int:
        return (self.pad_to or frames) + grid * grid
