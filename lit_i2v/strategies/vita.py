"""Vita-CLIP's vision-side prompts: global video prompts, frame-conditioned local prompts and a summary token.

Wasim et al., *Vita-CLIP: Video and Text Adaptive CLIP via Multimodal Prompting*, CVPR 2023.
Official code: github.com/TalalWasim/Vita-CLIP (``training/VitaCLIP_vision_encoder_utils.py``:
``TransformerEncoderLayer``; ``VitaCLIP_vision_encoder.py``; ``train_scripts/k400_train.sh``).

The image tower stays frozen. In every block, before attention, the frame's tokens are joined by

- **global prompts**: G learnable tokens of that block, shared by all frames (VPT-deep-like, but removed again
  after the block instead of carried on);
- **local prompts**: T learnable tokens, one per frame index, each plus a projection of that frame's class token
  (``cls_proj``), all T given to every frame, so every frame sees a conditioned token of every other frame;
- **a summary token**: the T projected class tokens attend to each other across time (``s + MSA(LN s)``); frame t
  gets the result of its own position.

The extra tokens leave again after the attention (the MLP is per token, so dropping the global prompts before
rather than after it changes nothing else). A learnable per-frame time embedding, drawn from N(0, 0.02) as the
official code, is added after the position embedding. The text side is CoOp with class-specific context
(``lit_i2v.heads.CoOpHead(class_specific: true, num_context: 8, context_init: null)``).

Difference: the official code leaves ``cls_proj`` out of its trainable filter, so it stays at its random
initialisation and frozen; here it trains (a frozen random layer would also be lost by trainable-only checkpoints).
The extra tokens go at the end of the sequence rather than after the class token: attention does not depend on
token order, and the class token stays at index 0.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from lit_i2v.backbones import CLIP
from lit_i2v.backbones.vit import LayerNormFp32
from lit_i2v.strategies.base import TransferStrategy


class VitaTokens(nn.Module):
    """``pre_attn`` seam: appends [global prompts (G), local prompts (T), summary token (1)] to each frame."""

    def __init__(
        self, width: int, heads: int, num_global: int, max_frames: int, bound: float, local: bool, summary: bool
    ) -> None:
        super().__init__()
        self.num_global, self.local, self.summary = num_global, local, summary
        self.global_prompts = nn.Parameter(torch.empty(1, num_global, width).uniform_(-bound, bound))
        if local or summary:
            self.cls_proj = nn.Linear(width, width)
        if local:
            self.local_prompts = nn.Parameter(torch.empty(1, max_frames, width).uniform_(-bound, bound))
        if summary:
            self.summary_norm = LayerNormFp32(width)
            self.summary_attn = nn.MultiheadAttention(width, heads, batch_first=True)
            for w in (self.summary_attn.in_proj_weight, self.summary_attn.out_proj.weight):
                nn.init.xavier_uniform_(w)
            nn.init.zeros_(self.summary_attn.in_proj_bias)
            nn.init.zeros_(self.summary_attn.out_proj.bias)

    def forward(self, x: Tensor, num_frames: int) -> Tensor:
        bt, _, width = x.shape
        b, t = bt // num_frames, num_frames
        extra = [self.global_prompts.to(x.dtype).expand(bt, -1, -1)]  # (B*T, G, D)
        if self.local or self.summary:
            cls = self.cls_proj(x[:, 0]).view(b, t, width)  # (B, T, D)
        if self.local:
            if t > self.local_prompts.shape[1]:
                raise ValueError(f"{t} frames but the local prompts cover {self.local_prompts.shape[1]}")
            local = self.local_prompts[:, :t].to(x.dtype) + cls  # (B, T, D), conditioned on each frame
            extra.append(local.repeat_interleave(t, dim=0))  # every frame of a clip gets all T: (B*T, T, D)
        if self.summary:
            h = self.summary_norm(cls)
            summary = cls + self.summary_attn(h, h, h, need_weights=False)[0]  # (B, T, D)
            extra.append(summary.reshape(bt, 1, width))
        return torch.cat([x, *extra], dim=1)


class DropVitaTokens(nn.Module):
    """``pre_mlp`` seam: removes what ``VitaTokens`` appended."""

    def __init__(self, num_global: int, local: bool, summary: bool) -> None:
        super().__init__()
        self.num_global, self.local, self.summary = num_global, local, summary

    def forward(self, x: Tensor, num_frames: int) -> Tensor:
        extra = self.num_global + (num_frames if self.local else 0) + (1 if self.summary else 0)
        return x[:, : x.shape[1] - extra]


class FrameEmbedding(nn.Module):
    """``post_embed`` seam: a learnable embedding per frame index added to all its tokens, N(0, 0.02) at start."""

    def __init__(self, max_frames: int, width: int) -> None:
        super().__init__()
        self.embedding = nn.Parameter(torch.empty(1, max_frames, 1, width).normal_(std=0.02))

    def forward(self, x: Tensor, num_frames: int) -> Tensor:
        if num_frames > self.embedding.shape[1]:
            raise ValueError(f"{num_frames} frames but the time embedding covers {self.embedding.shape[1]}")
        bt, length, width = x.shape
        x = x.reshape(bt // num_frames, num_frames, length, width)
        return (x + self.embedding[:, :num_frames].to(x.dtype)).reshape(bt, length, width)


class VitaCLIP(TransferStrategy):
    """Args:
    num_global: global prompts per block (8).
    local_prompts: frame-conditioned local prompts.
    summary_token: the cross-frame summary token.
    time_embedding: the learnable time embedding.
    max_frames: frames covered by the local prompts and the time embedding (the paper's T = 8).
    """

    prefix = "vita"
    needs_class_token = True

    identity_at_init = False  # global, local and summary prompt tokens join the attention

    @classmethod
    def tiny(cls) -> VitaCLIP:
        return cls(num_global=3, max_frames=32)

    def __init__(
        self,
        num_global: int = 8,
        local_prompts: bool = True,
        summary_token: bool = True,
        time_embedding: bool = True,
        max_frames: int = 8,
    ) -> None:
        super().__init__()
        self.num_global, self.local_prompts, self.summary_token = num_global, local_prompts, summary_token
        self.time_embedding, self.max_frames = time_embedding, max_frames

    def apply(self, backbone: CLIP) -> None:
        visual = backbone.visual
        width, heads = visual.width, visual.blocks[0].attn.num_heads
        bound = math.sqrt(6.0 / (3 * visual.patch_size**2 + width))  # the official Xavier-style prompt init
        if self.time_embedding:
            visual.post_embed[self.prefix] = FrameEmbedding(self.max_frames, width)
        for block in visual.blocks:
            block.pre_attn[self.prefix] = VitaTokens(
                width, heads, self.num_global, self.max_frames, bound, self.local_prompts, self.summary_token
            )
            block.pre_mlp[self.prefix] = DropVitaTokens(self.num_global, self.local_prompts, self.summary_token)

    def trainable(self, name: str) -> bool:
        return f".{self.prefix}." in name

    def extra_repr(self) -> str:
        return (
            f"num_global={self.num_global}, local_prompts={self.local_prompts}, "
            f"summary_token={self.summary_token}, time_embedding={self.time_embedding}"
        )
