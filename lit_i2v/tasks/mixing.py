"""Mixup (Zhang et al. 2018) and CutMix (Yun et al. 2019) for clips: one box or one weight for all frames of a clip.

Applied on the device to normalised float clips with one-hot (optionally label-smoothed) targets; each batch uses
mixup or cutmix (chosen with ``switch_prob`` when both are on) with probability ``prob``.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor


def one_hot(labels: Tensor, num_classes: int, smoothing: float = 0.0) -> Tensor:
    off = smoothing / num_classes
    return torch.full((labels.shape[0], num_classes), off, device=labels.device).scatter_(
        1, labels[:, None], 1.0 - smoothing + off
    )


class Mixer:
    """Args: mixup_alpha, cutmix_alpha (0 disables each), prob (of mixing a batch), switch_prob (cutmix vs mixup)."""

    def __init__(
        self, mixup_alpha: float = 0.0, cutmix_alpha: float = 0.0, prob: float = 1.0, switch_prob: float = 0.5
    ):
        self.mixup_alpha, self.cutmix_alpha, self.prob, self.switch_prob = mixup_alpha, cutmix_alpha, prob, switch_prob

    @property
    def enabled(self) -> bool:
        return self.mixup_alpha > 0 or self.cutmix_alpha > 0

    def __call__(self, video: Tensor, targets: Tensor) -> tuple[Tensor, Tensor]:
        """``video`` (B, T, 3, H, W), ``targets`` (B, K) → mixed copies; pairs each clip with the reversed batch."""
        if not self.enabled or torch.rand(()) > self.prob:
            return video, targets
        use_cutmix = self.cutmix_alpha > 0 and (self.mixup_alpha == 0 or torch.rand(()) < self.switch_prob)
        alpha = self.cutmix_alpha if use_cutmix else self.mixup_alpha
        lam = float(torch.distributions.Beta(alpha, alpha).sample())
        other = video.flip(0)
        if use_cutmix:
            h, w = video.shape[-2:]
            cut = math.sqrt(1 - lam)
            ch, cw = int(h * cut), int(w * cut)
            cy, cx = int(torch.randint(h, ())), int(torch.randint(w, ()))
            y0, y1 = max(cy - ch // 2, 0), min(cy + ch // 2, h)
            x0, x1 = max(cx - cw // 2, 0), min(cx + cw // 2, w)
            video = video.clone()
            video[..., y0:y1, x0:x1] = other[..., y0:y1, x0:x1]  # same box in every frame
            lam = 1 - (y1 - y0) * (x1 - x0) / (h * w)
        else:
            video = video * lam + other * (1 - lam)
        return video, targets * lam + targets.flip(0) * (1 - lam)
