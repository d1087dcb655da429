"""A frozen CLIP that embeds frames and queries: what grounding's features are made of.

Tasks that train on extracted features (``TemporalGrounding``) hold one as ``model.init_args.extractor``, so a
recipe states which tower and frame rate its features come from; ``python -m lit_i2v extract`` (``lit_i2v.extract``)
decodes the videos and hands this module their frames. It decodes nothing itself: frames arrive as uint8 tensors.
"""

from __future__ import annotations

import torch
from torch import Tensor

from lit_i2v.backbones.clip import CLIP
from lit_i2v.backbones.registry import ARCHS


class FeatureExtractor:
    """A CLIP's towers, frozen and built on first use, at ``rate`` frames per second of video.

    Args:
        arch: CLIP architecture (``lit_i2v.backbones.CLIP``).
        pretrained: its weights (tag, file or hub name).
        rate: frames embedded per second of video (Charades-STA recipes: 1-4; QVHighlights: 0.5, one per 2 s).
        batch_size: frames (or queries) per forward pass.
    """

    def __init__(
        self, arch: str = "ViT-B-16", pretrained: str | None = "openai", rate: float = 2.0, batch_size: int = 64
    ) -> None:
        if rate <= 0:
            raise ValueError(f"model.init_args.extractor.rate must be positive, got {rate}")
        if arch not in ARCHS:
            raise ValueError(f"model.init_args.extractor.arch: unknown architecture {arch!r}")
        self.arch, self.pretrained, self.rate, self.batch_size = arch, pretrained, rate, batch_size
        self._model: CLIP | None = None

    @property
    def model(self) -> CLIP:
        if self._model is None:
            self._model = CLIP(self.arch, self.pretrained).eval().requires_grad_(False)
        return self._model

    @property
    def embed_dim(self) -> int:
        """Width of the features, known without building the towers."""
        return ARCHS[self.arch].embed_dim

    @property
    def image_size(self) -> int:
        return self.model.pretrained_cfg["image_size"]

    def describe(self) -> dict:
        return {"arch": self.arch, "pretrained": self.pretrained, "rate": self.rate}

    def to(self, device: str | torch.device) -> FeatureExtractor:
        self.model.to(device)
        return self

    @torch.no_grad()
    def images(self, frames: Tensor) -> Tensor:
        """uint8 frames ``(N, 3, S, S)`` at the tower's size → ``(N, E)`` float16 embeddings, in batches."""
        cfg, device = self.model.pretrained_cfg, self.model.logit_scale.device
        mean = torch.tensor(cfg["mean"], device=device).view(1, 3, 1, 1) * 255
        std = torch.tensor(cfg["std"], device=device).view(1, 3, 1, 1) * 255
        out = []
        for start in range(0, len(frames), self.batch_size):
            images = frames[start : start + self.batch_size].to(device).float()  # (b, 3, S, S) in [0, 255]
            out.append(self.model.encode_image((images - mean) / std).half().cpu())
        return torch.cat(out) if out else torch.zeros(0, self.embed_dim, dtype=torch.float16)

    @torch.no_grad()
    def texts(self, queries: list[str]) -> Tensor:
        """Queries → ``(Q, E)`` float16 embeddings, in batches."""
        device = self.model.logit_scale.device
        out = []
        for start in range(0, len(queries), self.batch_size):
            tokens = self.model.tokenize(queries[start : start + self.batch_size]).to(device)
            out.append(self.model.encode_text(tokens).half().cpu())
        return torch.cat(out) if out else torch.zeros(0, self.embed_dim, dtype=torch.float16)
