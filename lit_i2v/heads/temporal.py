"""Temporal modules after the per-frame features: ``(B, T, C)`` → ``(B, C)``.

- ``MeanPool``: frame averaging (ViFi-CLIP, ST-Adapter, the linear probe). Blind to frame order: on data where a
  class and its time-reversed twin differ only in order (SSv2 "left to right" / "right to left"), it cannot tell
  them apart.
- ``TemporalTransformer``: learnable frame position embeddings, a few transformer layers over time, a residual to
  the input, then the mean: ActionCLIP's "Transf" fusion (Wang et al. 2021, section 3.3), CLIP4Clip's
  ``seqTransf`` (Luo et al. 2022, section 3.3) and, with one layer of ``E / 64`` heads on CLIP-projected features,
  X-CLIP's multi-frame integration transformer (Ni et al. 2022, official ``mit.py``).
- ``LSTMPool`` and ``TemporalConv1D``: ActionCLIP's "LSTM" and "Conv_1D" fusions (official code:
  github.com/sallymmx/ActionCLIP, ``modules/Visual_Prompt.py``), each added to the frame features, then the mean.
  The Conv1D kernel starts as a temporal shift (a quarter of the channels from frame t-1, half from t, a quarter from
  t+1). Difference: the official code reshapes ``(B, T, C)`` to ``(B, C, T)`` with ``view``, which scrambles time
  and channels; here the axes are permuted.

Like heads, temporal modules are built by the task once the feature width is known (``build(width, backbone)``).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from lit_i2v.backbones import CLIP
from lit_i2v.backbones.vit import Block, QuickGELU


class Temporal(nn.Module):
    """Base class: ``build(width, backbone)`` creates the parameters for features of that width.

    Facts the tests read for every exported temporal module (``tests/test_heads.py``): ``order_aware`` (reversing
    the frames changes the output), ``text_conditioned`` (``forward(text, frames)`` pools each video per caption)
    and ``tiny()``, a configuration for 16-wide test features."""

    order_aware = False
    text_conditioned = False

    @classmethod
    def tiny(cls) -> Temporal:
        return cls()

    def build(self, width: int, backbone: CLIP | None = None) -> None:
        """Create parameters for ``width``-wide features (a no-op for parameter-free modules); ``backbone`` is
        there for modules initialised from it."""


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
        init_from_text: start from the first ``layers`` blocks of CLIP's text tower and the first ``max_frames``
            rows of its position embedding (CLIP4Clip's seqTransf; features must be CLIP-projected and as wide as
            the text tower, as for ViT-B: 512); the heads are then the text tower's.
    """

    order_aware = True

    @classmethod
    def tiny(cls) -> TemporalTransformer:
        return cls(layers=1, heads=2)

    def __init__(self, layers: int = 1, heads: int = 8, max_frames: int = 32, init_from_text: bool = False) -> None:
        super().__init__()
        self.num_layers, self.heads, self.max_frames = layers, heads, max_frames
        self.init_from_text = init_from_text
        self.frame_pos: nn.Parameter | None = None
        self.blocks = nn.ModuleList()

    def build(self, width: int, backbone: CLIP | None = None) -> None:
        text = backbone.text if self.init_from_text and backbone is not None else None
        if self.init_from_text:
            if text is None or text.width != width or len(text.blocks) < self.num_layers:
                raise ValueError(
                    f"temporal.init_from_text needs CLIP-projected features as wide as the text tower and at least "
                    f"{self.num_layers} text blocks (features {width}, text tower "
                    f"{getattr(text, 'width', None)} wide with {len(getattr(text, 'blocks', []))} blocks)"
                )
            self.heads = text.blocks[0].attn.num_heads
        self.frame_pos = nn.Parameter(torch.empty(1, self.max_frames, width).normal_(std=0.02))
        self.blocks = nn.ModuleList(Block(width, self.heads, 4.0, QuickGELU) for _ in range(self.num_layers))
        for block in self.blocks:
            for linear in (block.attn.qkv, block.attn.proj, block.mlp.fc1, block.mlp.fc2):
                nn.init.normal_(linear.weight, std=0.02)
                nn.init.zeros_(linear.bias)
        if text is not None:
            with torch.no_grad():
                for block, source in zip(self.blocks, text.blocks):
                    block.load_state_dict(source.state_dict())  # CausalBlock is a Block: the same names
                self.frame_pos.copy_(text.pos_embed[:, : self.max_frames])

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


class LSTMPool(Temporal):
    """``mean_t(x + LSTM(x))``: a one-layer LSTM over frames, as wide as the features."""

    order_aware = True

    def __init__(self) -> None:
        super().__init__()
        self.lstm: nn.LSTM | None = None

    def build(self, width: int, backbone: CLIP | None = None) -> None:
        self.lstm = nn.LSTM(width, width, num_layers=1, batch_first=True)

    def forward(self, x: Tensor) -> Tensor:
        out, _ = self.lstm(x.float())  # (B, T, C)
        return (x + out.to(x.dtype)).mean(dim=1)


class TemporalConv1D(Temporal):
    """``mean_t(x + conv(x))``: a depthwise kernel-3 convolution over time without bias, starting as a shift."""

    order_aware = True

    def __init__(self) -> None:
        super().__init__()
        self.conv: nn.Conv1d | None = None

    def build(self, width: int, backbone: CLIP | None = None) -> None:
        self.conv = nn.Conv1d(width, width, 3, padding=1, groups=width, bias=False)
        weight = torch.zeros(width, 1, 3)
        quarter = width // 4
        weight[:quarter, 0, 0] = 1.0  # channels that take frame t-1
        weight[quarter : quarter + width // 2, 0, 1] = 1.0  # channels that stay at t
        weight[quarter + width // 2 :, 0, 2] = 1.0  # channels that take frame t+1
        self.conv.weight = nn.Parameter(weight)

    def forward(self, x: Tensor) -> Tensor:
        shifted = self.conv(x.transpose(1, 2)).transpose(1, 2)  # (B, C, T) -> conv over time -> (B, T, C)
        return (x + shifted).mean(dim=1)
