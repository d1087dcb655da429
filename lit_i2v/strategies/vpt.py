"""Visual prompt tuning: learnable tokens appended to the image tower's sequence, the backbone frozen.

Jia et al., *Visual Prompt Tuning*, ECCV 2022. Official code: github.com/KMnP/vpt.

Shallow: P prompt tokens inserted after the class token once, at the input (after the position embedding and
before ``norm_pre``). Deep: a fresh set before every block, replacing the previous block's prompts. Prompts are
initialised uniformly in ``±sqrt(6 / (3 p^2 + D))`` (Xavier over the patch embedding's fan-in, as the paper), with
dropout 0.1 on them. Prompts change the output at step 0 (the model sees extra tokens): VPT is not an identity-at-
init method. Shared across frames: every frame of a clip sees the same prompts.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from lit_i2v.backbones import CLIP
from lit_i2v.strategies.base import TransferStrategy


class PromptTokens(nn.Module):
    """Inserts ``num`` prompts after the tower's ``first`` prefix tokens (the class token); with ``replace``,
    overwrites the previous layer's prompts."""

    def __init__(self, num: int, width: int, bound: float, dropout: float, replace: bool, first: int = 1) -> None:
        super().__init__()
        self.prompts = nn.Parameter(torch.empty(1, num, width).uniform_(-bound, bound))
        self.dropout = nn.Dropout(dropout)
        self.replace, self.first = replace, first

    def forward(self, x: Tensor, num_frames: int) -> Tensor:
        prompts = self.dropout(self.prompts.to(x.dtype)).expand(x.shape[0], -1, -1)  # (B*T, P, D)
        rest = x[:, self.first + prompts.shape[1] :] if self.replace else x[:, self.first :]
        return torch.cat([x[:, : self.first], prompts, rest], dim=1)


class VPT(TransferStrategy):
    """Args: num_prompts (P), deep (fresh prompts before every block), dropout on prompts."""

    prefix = "vpt"

    identity_at_init = False  # the prompts are new tokens every patch attends to

    @classmethod
    def tiny(cls) -> VPT:
        return cls(num_prompts=3)

    def __init__(self, num_prompts: int = 8, deep: bool = False, dropout: float = 0.1) -> None:
        super().__init__()
        self.num_prompts, self.deep, self.dropout = num_prompts, deep, dropout

    def apply(self, backbone: CLIP) -> None:
        visual = backbone.visual
        bound = math.sqrt(6.0 / (3 * visual.patch_size**2 + visual.width))
        first = visual.num_prefix_tokens
        prompts = lambda replace: PromptTokens(self.num_prompts, visual.width, bound, self.dropout, replace, first)  # noqa: E731
        visual.post_embed[self.prefix] = prompts(False)
        if self.deep:
            for block in list(visual.blocks)[1:]:
                block.pre_attn[self.prefix] = prompts(True)
        visual.num_prefix_tokens = first + self.num_prompts  # the prompts sit before the patches: prefix tokens

    def trainable(self, name: str) -> bool:
        return f".{self.prefix}." in name

    def extra_repr(self) -> str:
        return f"num_prompts={self.num_prompts}, deep={self.deep}"
