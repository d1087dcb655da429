"""AIM: adapting image models for video by reusing the frozen attention over time.

Yang et al., *AIM: Adapting Image Models for Efficient Video Action Recognition*, ICLR 2023.
Official code: github.com/taoyang1122/adapt-image-models.

Each block becomes three adaptations around the frozen layers (bottleneck adapters D→D/4→D with GELU, their
up-projections zero-initialised):

1. temporal: every spatial position's tokens form a sequence over the T frames; the block's *frozen* attention runs
   over it (after ``norm1``), a T-adapter (no skip) follows, and the result is added to ``x``;
2. spatial: ``x + S-adapter(attn(norm1 x))``, the S-adapter with its own skip, so at start this is the frozen
   block's attention step;
3. joint: ``x + mlp(norm2 x) + s * MLP-adapter(norm2 x)``, s = 0.5 (K400) or 1 (SSv2).

A zero-initialised temporal position embedding is added to every token after the position embedding. SSv2 adds a
second temporal adapter (with skip) before the temporal attention (``temporal_in``). What trains: the adapters, the
temporal embedding, the final norm (``ln_post``) and the head; 11M parameters for ViT-B/16, 38M for ViT-L/14 with
a 400-class head.
"""

from __future__ import annotations

from torch import Tensor, nn

from lit_i2v.backbones import CLIP
from lit_i2v.backbones.vit import Block
from lit_i2v.strategies.base import TransferStrategy, select_blocks
from lit_i2v.strategies.bottleneck import Bottleneck
from lit_i2v.strategies.temporal_embedding import TemporalEmbedding


class AIMBlock(nn.Module):
    """A :class:`Block` with AIM's temporal, spatial and joint adapters; pretrained submodules keep their names."""

    def __init__(self, block: Block, ratio: float, scale: float, temporal_in: bool) -> None:
        super().__init__()
        for name, child in block.named_children():
            self.add_module(name, child)
        width = block.attn.qkv.in_features
        hidden = int(width * ratio)
        self.aim_t_in = Bottleneck(width, hidden, "gelu", skip=True) if temporal_in else None
        self.aim_t = Bottleneck(width, hidden, "gelu", skip=False)
        self.aim_s = Bottleneck(width, hidden, "gelu", skip=True)
        self.aim_mlp = Bottleneck(width, hidden, "gelu", skip=False)
        self.scale = scale

    def forward(self, x: Tensor, num_frames: int) -> Tensor:
        x = self.pre_attn(x, num_frames)
        bt, n, d = x.shape
        b, t = bt // num_frames, num_frames
        # 1. temporal: each token position attends over the T frames with the frozen attention
        xt = x.reshape(b, t, n, d).transpose(1, 2).reshape(b * n, t, d)  # (B*N, T, D)
        h = self.norm1(xt)
        if self.aim_t_in is not None:
            h = self.aim_t_in(h)
        # One item of one frame per position: the reused attention must not treat the B*N sequences as frames of
        # clips (a temporal attention such as ZeroI2V's head shift would mix positions, or fail on B*N % T).
        xt = self.aim_t(self.attn(h, 1))
        x = x + self.drop_path1(xt.reshape(b, n, t, d).transpose(1, 2).reshape(bt, n, d))  # back to (B*T, N, D)
        # 2. spatial: the frozen attention within each frame, through the S-adapter
        x = x + self.aim_s(self.attn(self.norm1(x), num_frames))
        # 3. joint: frozen MLP plus a scaled parallel adapter
        x = self.pre_mlp(x, num_frames)
        xn = self.norm2(x)
        return x + self.mlp(xn) + self.drop_path2(self.scale * self.aim_mlp(xn))

    def extra_repr(self) -> str:
        return f"scale={self.scale}"


class AIM(TransferStrategy):
    """Args:
    ratio: adapter bottleneck over D (0.25).
    scale: weight s of the joint adapter (0.5 K400, 1.0 SSv2).
    temporal_in: the second temporal adapter before the temporal attention (SSv2).
    max_frames: frames the temporal embedding covers.
    blocks: blocks to adapt (None: all).
    """

    prefix = "aim"

    @classmethod
    def tiny(cls) -> AIM:
        return cls(max_frames=32)

    def __init__(
        self, ratio: float = 0.25, scale: float = 0.5, temporal_in: bool = False, max_frames: int = 32,
        blocks: list[int] | None = None,
    ) -> None:  # fmt: skip
        super().__init__()
        self.ratio, self.scale, self.temporal_in, self.max_frames, self.blocks = (
            ratio, scale, temporal_in, max_frames, blocks,
        )  # fmt: skip

    def apply(self, backbone: CLIP) -> None:
        visual = backbone.visual
        visual.post_embed["aim_temporal"] = TemporalEmbedding(self.max_frames, visual.width)
        chosen = {id(b) for b in select_blocks(visual, self.blocks)}
        for i, block in enumerate(visual.blocks):
            if id(block) in chosen:
                visual.blocks[i] = AIMBlock(block, self.ratio, self.scale, self.temporal_in)

    def trainable(self, name: str) -> bool:
        return ".aim_" in name or name.startswith("visual.norm.")

    def extra_repr(self) -> str:
        return f"ratio={self.ratio}, scale={self.scale}, temporal_in={self.temporal_in}"
