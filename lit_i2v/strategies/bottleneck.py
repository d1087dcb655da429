"""A bottleneck adapter parallel to the MLP (AdaptFormer), and the bottleneck module AIM and ZeroI2V build on.

Chen et al., *AdaptFormer: Adapting Vision Transformers for Scalable Visual Recognition*, NeurIPS 2022 (video
experiments on SSv2 and HMDB51). Official code: github.com/ShoufaChen/AdaptFormer.

``Bottleneck``: down-projection D→h, an optional activation, dropout, up-projection h→D initialised to zero (so a
new adapter adds nothing at step 0), times a scale, optionally plus the input (a skip). ``AdaptFormer`` puts one next
to each block's MLP: ``x + mlp(LN x) + s * adapter(LN x)`` with h = 64, ReLU and s = 0.1 (the paper's defaults).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from lit_i2v.backbones import CLIP
from lit_i2v.backbones.vit import Mlp
from lit_i2v.strategies.base import TransferStrategy, select_blocks


class Bottleneck(nn.Module):
    """``skip * x + scale * up(dropout(act(down(x))))``; ``up`` starts at zero.

    Args: width D, hidden h, act (``gelu``, ``relu`` or None for a linear adapter), scale, skip, dropout.
    """

    def __init__(
        self, width: int, hidden: int, act: str | None = "gelu", scale: float = 1.0, skip: bool = False,
        dropout: float = 0.0,
    ) -> None:  # fmt: skip
        super().__init__()
        self.down = nn.Linear(width, hidden)
        self.act = {"gelu": nn.GELU(), "relu": nn.ReLU(), None: nn.Identity()}[act]
        self.dropout = nn.Dropout(dropout)
        self.up = nn.Linear(hidden, width)
        nn.init.zeros_(self.up.weight)
        nn.init.zeros_(self.up.bias)
        self.scale, self.skip, self.linear = scale, skip, act is None

    def forward(self, x: Tensor) -> Tensor:
        out = self.scale * self.up(self.dropout(self.act(self.down(x))))
        return x + out if self.skip else out

    @torch.no_grad()
    def as_affine(self) -> tuple[Tensor, Tensor]:
        """``(M, c)`` with ``adapter(x) == x @ M.T + c`` (linear adapters only; dropout off)."""
        if not self.linear:
            raise ValueError("only a linear adapter (act=None) is an affine map")
        m = self.scale * self.up.weight @ self.down.weight  # (D, D)
        c = self.scale * (self.up.weight @ self.down.bias + self.up.bias)
        if self.skip:
            m = m + torch.eye(m.shape[0], dtype=m.dtype, device=m.device)
        return m, c

    def extra_repr(self) -> str:
        return f"scale={self.scale}, skip={self.skip}"


class ParallelAdapterMlp(Mlp):
    """The block's MLP (same ``fc1``/``fc2``) plus a scaled bottleneck on the same input: ``mlp(z) + adapter(z)``."""

    def __init__(self, mlp: Mlp, adapter: Bottleneck, name: str) -> None:
        nn.Module.__init__(self)
        self.fc1, self.act, self.fc2 = mlp.fc1, mlp.act, mlp.fc2
        self.adapter_name = name
        self.add_module(name, adapter)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(self.act(self.fc1(x))) + getattr(self, self.adapter_name)(x)


class AdaptFormer(TransferStrategy):
    """Args: hidden (bottleneck width, 64), scale (0.1), blocks (indices, None: all), dropout."""

    prefix = "adaptformer"

    @classmethod
    def tiny(cls) -> AdaptFormer:
        return cls(hidden=8)

    def __init__(self, hidden: int = 64, scale: float = 0.1, blocks: list[int] | None = None, dropout: float = 0.0):
        super().__init__()
        self.hidden, self.scale, self.blocks, self.dropout = hidden, scale, blocks, dropout

    def apply(self, backbone: CLIP) -> None:
        width = backbone.visual.width
        for block in select_blocks(backbone.visual, self.blocks):
            adapter = Bottleneck(width, self.hidden, "relu", self.scale, skip=False, dropout=self.dropout)
            block.mlp = ParallelAdapterMlp(block.mlp, adapter, self.prefix)

    def trainable(self, name: str) -> bool:
        return f".{self.prefix}." in name

    def extra_repr(self) -> str:
        return f"hidden={self.hidden}, scale={self.scale}"
