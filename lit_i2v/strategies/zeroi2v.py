"""ZeroI2V: zero-cost image-to-video adaptation: temporal head shifts and linear adapters merged after training.

Li et al., *ZeroI2V: Zero-Cost Adaptation of Pre-trained Transformers from Image to Video*, ECCV 2024.
Official code: github.com/leexinhao/ZeroI2V (``STDHA`` and ``ViT_Zero_CLIP``).

- Spatial-temporal dual-head attention (STDHA): after the QKV projection, the keys and values of one head are taken
  from frame t-1 and those of another head from frame t+1 (edge frames keep their own); queries stay. No
  parameters, no FLOPs.
- Linear adapters (D→D/4→D, no activation, dropout between, up-projection zero-initialised, with a skip, scaled by
  s = 0.5 for K400 or 1 for SSv2) on the attention's input (after ``norm1``) and output, and on the MLP's input
  and output. Being affine maps next to linear layers, they fold into ``qkv``, ``proj``,
  ``fc1`` and ``fc2`` after training (``merge``): the merged model is a plain ViT whose attention shifts two heads,
  with zero extra parameters and FLOPs.

What trains: the adapters and the final norm (as the official code). Difference: the official code also trains a
zero-initialised temporal embedding that would survive merging (T x D parameters); it is off here by default
(``temporal_embedding: true`` adds it) so that the merged model has no extra parameters, as the paper states.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lit_i2v.backbones import CLIP
from lit_i2v.backbones.vit import Attention, Mlp
from lit_i2v.strategies.base import TransferStrategy, select_blocks
from lit_i2v.strategies.bottleneck import Bottleneck
from lit_i2v.strategies.temporal_embedding import TemporalEmbedding


def shift_heads(x: Tensor, num_frames: int, back: int, forward: int) -> Tensor:
    """Keys or values ``(B*T, heads, L, Dh)``: head ``back`` from frame t-1, head ``forward`` from frame t+1."""
    bt = x.shape[0]
    x = x.unflatten(0, (bt // num_frames, num_frames))  # (B, T, H, L, Dh)
    out = x.clone()
    out[:, 1:, back] = x[:, :-1, back]
    out[:, :-1, forward] = x[:, 1:, forward]
    return out.flatten(0, 1)


class ShiftedHeadAttention(Attention):
    """The block's attention (same ``qkv``/``proj``) with STDHA's head shift and optional in/out adapters."""

    def __init__(self, attn: Attention, heads: tuple[int, int], adapter_in: Bottleneck | None = None,
                 adapter_out: Bottleneck | None = None) -> None:  # fmt: skip
        nn.Module.__init__(self)
        self.num_heads, self.head_dim = attn.num_heads, attn.head_dim
        self.qkv, self.proj = attn.qkv, attn.proj
        self.shifted = heads
        self.zeroi2v_in, self.zeroi2v_out = adapter_in, adapter_out

    def forward(self, x: Tensor, num_frames: int) -> Tensor:
        if self.zeroi2v_in is not None:
            x = self.zeroi2v_in(x)
        q, k, v = self.split_heads(x)  # (B*T, H, L, Dh)
        if num_frames > 1:
            k, v = (shift_heads(z, num_frames, *self.shifted) for z in (k, v))
        out = self.merge_heads(F.scaled_dot_product_attention(q, k, v))
        return self.zeroi2v_out(out) if self.zeroi2v_out is not None else out

    def extra_repr(self) -> str:
        return f"heads from t-1, t+1: {self.shifted}"


class AdaptedMlp(Mlp):
    """The block's MLP (same ``fc1``/``fc2``) with linear adapters on its input and, optionally, its output."""

    def __init__(self, mlp: Mlp, adapter_in: Bottleneck | None, adapter_out: Bottleneck | None) -> None:
        nn.Module.__init__(self)
        self.fc1, self.act, self.fc2 = mlp.fc1, mlp.act, mlp.fc2
        self.zeroi2v_in, self.zeroi2v_out = adapter_in, adapter_out

    def forward(self, x: Tensor) -> Tensor:
        if self.zeroi2v_in is not None:
            x = self.zeroi2v_in(x)
        x = self.fc2(self.act(self.fc1(x)))
        return self.zeroi2v_out(x) if self.zeroi2v_out is not None else x


@torch.no_grad()
def fold_before(linear: nn.Linear, adapter: Bottleneck) -> None:
    """``linear(adapter(x))`` → ``linear'(x)``: W' = W M, b' = W c + b."""
    m, c = adapter.as_affine()
    linear.bias.add_(linear.weight @ c)
    linear.weight.copy_(linear.weight @ m)


@torch.no_grad()
def fold_after(linear: nn.Linear, adapter: Bottleneck) -> None:
    """``adapter(linear(x))`` → ``linear'(x)``: W' = M W, b' = M b + c."""
    m, c = adapter.as_affine()
    linear.bias.copy_(m @ linear.bias + c)
    linear.weight.copy_(m @ linear.weight)


class ZeroI2V(TransferStrategy):
    """Args:
    scale: adapter scale s (0.5 K400, 1.0 SSv2).
    ratio: adapter bottleneck over D (0.25).
    dropout: dropout inside the adapters (0.1).
    shift_heads: the heads whose keys/values come from frames t-1 and t+1.
    mlp_out: also adapt the MLP's output (the official configs' ``num_tadapter=2``, for K400 and SSv2).
    temporal_embedding: add the official code's zero-initialised temporal embedding (not mergeable).
    max_frames: frames the temporal embedding covers.
    blocks: blocks to adapt (None: all).
    merged: build the merged architecture (head shifts only), e.g. to load an exported merged checkpoint.
    """

    prefix = "zeroi2v"
    mergeable = True

    def __init__(
        self,
        scale: float = 0.5,
        ratio: float = 0.25,
        dropout: float = 0.1,
        shift_heads: tuple[int, int] = (0, 1),
        mlp_out: bool = True,
        temporal_embedding: bool = False,
        max_frames: int = 32,
        blocks: list[int] | None = None,
        merged: bool = False,
    ) -> None:
        super().__init__()
        self.scale, self.ratio, self.dropout = scale, ratio, dropout
        self.shift_heads = tuple(shift_heads)
        self.mlp_out, self.temporal_embedding, self.max_frames = mlp_out, temporal_embedding, max_frames
        self.blocks, self.merged = blocks, merged

    def reference_at_init(self) -> TransferStrategy:
        # The head shift changes attention from step 0 (it has no parameters to zero); the adapters start as the
        # identity, so at init the model equals the shift alone: the merged architecture.
        return ZeroI2V(shift_heads=self.shift_heads, blocks=self.blocks, merged=True)

    def _adapter(self, width: int) -> Bottleneck | None:
        if self.merged:
            return None
        return Bottleneck(width, int(width * self.ratio), None, self.scale, skip=True, dropout=self.dropout)

    def apply(self, backbone: CLIP) -> None:
        visual = backbone.visual
        if self.temporal_embedding and not self.merged:
            visual.post_embed["zeroi2v_temporal"] = TemporalEmbedding(self.max_frames, visual.width)
        for block in select_blocks(visual, self.blocks):
            if max(self.shift_heads) >= block.attn.num_heads:
                raise ValueError(f"transfer.shift_heads {self.shift_heads}: the tower has {block.attn.num_heads} heads")
            w = visual.width
            block.attn = ShiftedHeadAttention(block.attn, self.shift_heads, self._adapter(w), self._adapter(w))
            block.mlp = AdaptedMlp(block.mlp, self._adapter(w), self._adapter(w) if self.mlp_out else None)

    def trainable(self, name: str) -> bool:
        return ".zeroi2v_" in name or name.startswith("visual.norm.")

    def merge(self, backbone: CLIP) -> None:
        """Fold every linear adapter into its neighbouring layer; the head shifts stay (they have no parameters)."""
        if "zeroi2v_temporal" in backbone.visual.post_embed:
            raise ValueError("the temporal embedding cannot be merged; train with temporal_embedding: false")
        for block in backbone.visual.blocks:
            for module, first, last in ((block.attn, "qkv", "proj"), (block.mlp, "fc1", "fc2")):
                if not isinstance(module, ShiftedHeadAttention | AdaptedMlp):
                    continue
                if module.zeroi2v_in is not None:
                    fold_before(getattr(module, first), module.zeroi2v_in)
                if module.zeroi2v_out is not None:
                    fold_after(getattr(module, last), module.zeroi2v_out)
                module.zeroi2v_in = module.zeroi2v_out = None
        self.merged = True

    def extra_repr(self) -> str:
        return f"scale={self.scale}, shift_heads={self.shift_heads}, mlp_out={self.mlp_out}, merged={self.merged}"
