"""The frame-token aggregator contract, and the plain one: every frame's tokens, in order (Video-LLaVA's way).

Lin et al., *Video-LLaVA: Learning United Visual Representation by Alignment Before Projection*, EMNLP 2024, feeds
the LLM all tokens of its 8 frames; so does LLaVA itself given frames as images.
"""

from __future__ import annotations

import math

from torch import Tensor, nn


class TokenAggregator(nn.Module):
    """Frame tokens ``(B, T, N, D)`` of a square ``g x g`` patch grid → visual tokens ``(B, M, D)``.

    ``after_projector``: the method pools the LLM's input embeddings (the projector runs on every frame token
    first), not the vision tower's features. ``appends_newline``: the task appends the backbone's learned newline
    embedding after the aggregated tokens (LLaVA-OneVision); ``num_tokens`` counts it. ``arrange`` may rearrange the
    clip's pixels before the tower (IG-VLM); by default it leaves them. ``num_tokens`` is M for T frames of a ``g x
    g`` grid: prompts hold that many placeholders.
    """

    after_projector = False
    appends_newline = False

    def arrange(self, video: Tensor) -> Tensor:
        """Normalised clips ``(B, T, 3, H, W)`` → what the vision tower sees (default: the clips)."""
        return video

    def forward(self, tokens: Tensor) -> Tensor:
        raise NotImplementedError

    def num_tokens(self, frames: int, grid: int) -> int:
        raise NotImplementedError


def grid_of(tokens: Tensor) -> int:
    """The side g of the square patch grid of tokens ``(..., N, D)``, checked."""
    n = tokens.shape[-2]
    g = math.isqrt(n)
    if g * g != n:
        raise ValueError(f"{n} tokens a frame do not form a square patch grid")
    return g


class FrameTokens(TokenAggregator):
    """Every token of every frame, frame after frame: ``M = T * N``."""

    def forward(self, tokens: Tensor) -> Tensor:
        return tokens.flatten(1, 2)  # (B, T*N, D)

    def num_tokens(self, frames: int, grid: int) -> int:
        return frames * grid * grid
