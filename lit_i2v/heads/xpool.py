"""X-Pool: text-conditioned pooling of frame embeddings for retrieval (Gorti et al., CVPR 2022).

Each caption attends over a video's frames, so a video has one embedding per caption: the frames that match the
caption weigh most. As the official code (github.com/layer6ai-labs/xpool, ``modules/transformer.py``) builds it,
on CLIP-projected embeddings of width E:

    t, f = LN1(text), LN1(frames)                     (one LayerNorm shared by both)
    a = softmax_T((t Wq)(f Wk)^T / sqrt(E / h)) (f Wv) Wo      (h heads; 1 in the paper)
    r = LN2(a);  y = LN3(r + Dropout(r Wl))

with every projection (``Wq, Wk, Wv, Wo, Wl``) initialised to the identity and its bias to zero, dropout 0.3.
The task scores caption ``i`` against video ``j`` as the cosine of ``text_i`` and ``y_ij``.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from lit_i2v.backbones import CLIP
from lit_i2v.heads.temporal import Temporal


class XPool(Temporal):
    """Args:
    heads: attention heads (the paper: 1).
    dropout: dropout on the residual projection (the paper: 0.3).
    """

    text_conditioned = True  # the retrieval task hands it captions as well as frames

    def __init__(self, heads: int = 1, dropout: float = 0.3) -> None:
        super().__init__()
        self.heads, self.dropout_p = heads, dropout

    def build(self, width: int, backbone: CLIP | None = None) -> None:
        if width % self.heads:
            raise ValueError(f"XPool: heads={self.heads} does not divide the embedding width {width}")
        self.width = width
        self.norm_in, self.norm_attn, self.norm_out = (nn.LayerNorm(width) for _ in range(3))
        self.q, self.k, self.v, self.o, self.proj = (nn.Linear(width, width) for _ in range(5))
        self.dropout = nn.Dropout(self.dropout_p)
        for linear in (self.q, self.k, self.v, self.o, self.proj):
            nn.init.eye_(linear.weight)
            nn.init.zeros_(linear.bias)

    def attention(self, text: Tensor, frames: Tensor) -> Tensor:
        """How each caption ``(Nt, E)`` weighs each video's frames ``(Nv, T, E)``: ``(Nt, Nv, heads, T)``."""
        h, d = self.heads, self.width // self.heads
        q = self.q(self.norm_in(text)).view(-1, h, d)  # (Nt, h, d)
        k = self.k(self.norm_in(frames)).unflatten(-1, (h, d))  # (Nv, T, h, d)
        return (torch.einsum("ahd,bthd->abht", q, k) / math.sqrt(d)).softmax(dim=-1)  # over the T frames

    def forward(self, text: Tensor, frames: Tensor) -> Tensor:
        """Captions ``(Nt, E)`` and videos' frames ``(Nv, T, E)`` → one embedding per pair ``(Nt, Nv, E)``."""
        h, d = self.heads, self.width // self.heads
        v = self.v(self.norm_in(frames)).unflatten(-1, (h, d))  # (Nv, T, h, d)
        attended = torch.einsum("abht,bthd->abhd", self.attention(text, frames), v).flatten(-2)  # (Nt, Nv, E)
        r = self.norm_attn(self.o(attended))
        return self.norm_out(r + self.dropout(self.proj(r)))

    def extra_repr(self) -> str:
        return f"heads={self.heads}, dropout={self.dropout_p}"
