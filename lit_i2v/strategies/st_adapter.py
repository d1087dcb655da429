"""ST-Adapter: parameter-efficient image-to-video transfer with a spatio-temporal bottleneck.

Pan et al., *ST-Adapter: Parameter-Efficient Image-to-Video Transfer Learning*, NeurIPS 2022.
Official code: github.com/linziyi96/st-adapter.

Each adapter acts on the patch tokens of a frame sequence (the class token passes through): a linear
down-projection D→Ca, a depthwise 3D convolution over (time, height, width) with kernel (3, 1, 1), a linear
up-projection Ca→D, and a residual. There is no activation. The convolution's weight and bias and both linear biases
start at zero, so the adapted model equals the pretrained one at step 0. Layouts from the paper: one adapter before
the MLP of each of the 12 blocks (Kinetics-400, "12x384"), or two, before the attention and before the MLP
(Something-Something v2, "24x384"). Everything of the backbone stays frozen; the task's head trains.

Differences from the official code: none intended in the adapter; the layout is configured by seam names.
"""

from __future__ import annotations

import math

from torch import Tensor, nn

from lit_i2v.backbones import CLIP
from lit_i2v.strategies.base import TransferStrategy, select_blocks


class STAdapterModule(nn.Module):
    """Tokens ``(B*T, P + H*W, D)`` → the same, patch tokens plus a depthwise-temporal-conv bottleneck; the P prefix
    tokens before the ``grid`` x ``grid`` patches (the class token, prompts another method inserted) pass unchanged.
    """

    def __init__(
        self, width: int, channels: int = 384, kernel: tuple[int, int, int] = (3, 1, 1), grid: int | None = None
    ) -> None:
        super().__init__()
        self.grid = grid
        self.down = nn.Linear(width, channels)
        self.conv = nn.Conv3d(channels, channels, kernel, padding=tuple(k // 2 for k in kernel), groups=channels)
        self.up = nn.Linear(channels, width)
        for zero in (self.conv.weight, self.conv.bias, self.down.bias, self.up.bias):
            nn.init.zeros_(zero)

    def forward(self, x: Tensor, num_frames: int) -> Tensor:
        bt, length, _ = x.shape
        b, t = bt // num_frames, num_frames
        side = self.grid or math.isqrt(length - 1)
        prefix = length - side * side  # counted at each call: a method composed after this one may add prompts
        patches = self.down(x[:, prefix:])  # (B*T, H*W, Ca)
        patches = patches.reshape(b, t, side, side, -1).permute(0, 4, 1, 2, 3)  # (B, Ca, T, H, W)
        patches = self.conv(patches)
        patches = patches.permute(0, 2, 3, 4, 1).reshape(bt, side * side, -1)  # (B*T, H*W, Ca)
        delta = self.up(patches)  # (B*T, H*W, D)
        return x + nn.functional.pad(delta, (0, 0, prefix, 0))  # the prefix tokens get no update


class STAdapter(TransferStrategy):
    """Args:
    channels: bottleneck width Ca (384 in the paper).
    positions: seams that get an adapter: ``[pre_mlp]`` (K400, 12x384) or ``[pre_attn, pre_mlp]`` (SSv2, 24x384).
    kernel: depthwise convolution kernel (T, H, W).
    blocks: indices of the blocks to adapt (None: all).
    """

    prefix = "st_adapter"

    @classmethod
    def tiny(cls) -> STAdapter:
        return cls(channels=16)

    def __init__(
        self,
        channels: int = 384,
        positions: list[str] | None = None,
        kernel: tuple[int, int, int] = (3, 1, 1),
        blocks: list[int] | None = None,
    ) -> None:
        super().__init__()
        self.channels, self.kernel, self.blocks = channels, tuple(kernel), blocks
        self.positions = positions or ["pre_mlp"]
        unknown = set(self.positions) - {"pre_attn", "pre_mlp"}
        if unknown:
            raise ValueError(f"transfer.positions: unknown seam(s) {sorted(unknown)}; choose pre_attn, pre_mlp")

    def apply(self, backbone: CLIP) -> None:
        for block in select_blocks(backbone.visual, self.blocks):
            for position in self.positions:
                getattr(block, position)[self.prefix] = STAdapterModule(
                    backbone.visual.width, self.channels, self.kernel, backbone.visual.grid_size
                )

    def trainable(self, name: str) -> bool:
        return f".{self.prefix}." in name

    def extra_repr(self) -> str:
        return f"channels={self.channels}, positions={self.positions}, kernel={self.kernel}"
