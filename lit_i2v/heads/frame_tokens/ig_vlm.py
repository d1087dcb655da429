"""IG-VLM: the clip as one image, a grid of frames, read by the image model as any image.

Kim et al., *An Image Grid Can Be Worth a Video: Zero-shot Video Question Answering Using a VLM*, 2024. Official
code: github.com/imagegridworth/IG-VLM. Six frames (evenly spaced) are tiled into a grid (2 rows x 3 columns in the
paper) and the grid is resized to the vision tower's input: one image, so ``M = N``. Pixels are rearranged before
the tower (``arrange``); the tokens of that one "frame" pass through unchanged. The official code resizes the grid
with PIL's bicubic filter; here it is ``torch``'s bilinear (antialiased) on normalised pixels.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from lit_i2v.heads.frame_tokens.base import TokenAggregator


class ImageGrid(TokenAggregator):
    """Args:
    rows, cols: the grid; ``rows * cols`` frames are taken, evenly spaced.
    """

    def __init__(self, rows: int = 2, cols: int = 3) -> None:
        super().__init__()
        self.rows, self.cols = rows, cols

    def arrange(self, video: Tensor) -> Tensor:
        b, t, c, h, w = video.shape
        k = self.rows * self.cols
        if t < k:
            raise ValueError(f"an image grid of {self.rows}x{self.cols} needs {k} frames, the clip has {t}")
        picked = video[:, torch.linspace(0, t - 1, k).round().long()]  # (B, k, 3, H, W)
        grid = picked.reshape(b, self.rows, self.cols, c, h, w).permute(0, 3, 1, 4, 2, 5)  # (B, 3, r, H, c, W)
        grid = grid.reshape(b, c, self.rows * h, self.cols * w)
        image = F.interpolate(grid, size=(h, w), mode="bilinear", antialias=True, align_corners=False)
        return image[:, None]  # (B, 1, 3, H, W): one frame

    def forward(self, tokens: Tensor) -> Tensor:
        return tokens.flatten(1, 2)  # (B, N, D)

    def num_tokens(self, frames: int, grid: int) -> int:
        return grid * grid
