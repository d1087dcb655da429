"""Fine-tuning with an extra model: a second pretrained model's features join the image-language model's.

Survey (arXiv 2510.10671), "modified features / fine-tuning with extra models": the image-language model is tuned
together with another pretrained model (Vid2Seq, VTimeLLM pair CLIP with a language model; others add a second
vision tower such as DINO for spatial detail). lit_i2v's interface:

- ``ExtraModel``: any module mapping frames normalised *its own* way, ``(N, 3, S, S)``, to features ``(N, C)``,
  with ``width`` (C), ``image_size`` (S), ``mean`` and ``std``; frozen or trained (``trainable``).
- ``WithExtraModel``: a strategy that wraps another (the backbone's own strategy, e.g. LoRA or full fine-tuning),
  runs the extra model on the same frames (re-normalised and resized for it) and fuses per frame:
  ``f + W e`` in the image tower's width (then CLIP's projection, for heads in the joint space), with ``W``
  zero-initialised, so the wrapped strategy's output is unchanged at step 0 and the extra model's contribution is
  learnt. The fusion acts on per-frame features, so any temporal module and head follow unchanged.

The worked example is ``TimmImageModel``: any timm image model (an ImageNet or DINOv2 ViT), its weights from a
local file (a timm state dict, ``.safetensors``/``.pt``/``.bin``) or, online, from timm's hub by name.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lit_i2v.backbones import CLIP
from lit_i2v.backbones.weights import load_state, read_checkpoint
from lit_i2v.strategies.base import TransferStrategy, VideoFeatures
from lit_i2v.strategies.frozen import Frozen


class ExtraModel(nn.Module):
    """Interface. Subclasses set ``width``, ``image_size``, ``mean``, ``std``, ``trainable`` and implement
    ``forward(frames (N, 3, S, S)) -> (N, width)``."""

    width: int
    image_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    trainable: bool = False


class TimmImageModel(ExtraModel):
    """A timm image model as the extra tower: its pooled features (``num_classes=0``).

    Args:
        name: timm model name (``vit_base_patch14_dinov2.lvd142m``, ``vit_small_patch16_224.augreg_in21k``).
        checkpoint: a local state dict for it (None: timm's own pretrained weights, downloaded by timm; or random
            with ``pretrained: false``).
        pretrained: when no checkpoint is given, load timm's pretrained weights for ``name``.
        trainable: train the extra model too (False: frozen, run without autograd).
        model_args: further timm arguments (``img_size``, ``patch_size``, ...).
    """

    def __init__(
        self,
        name: str,
        checkpoint: str | None = None,
        pretrained: bool = True,
        trainable: bool = False,
        model_args: dict | None = None,
    ) -> None:
        super().__init__()
        import timm

        self.name, self.checkpoint, self.trainable = name, checkpoint, trainable
        args = model_args or {}
        self.model = timm.create_model(name, pretrained=pretrained and checkpoint is None, num_classes=0, **args)
        if checkpoint is not None:
            self._load(checkpoint)
        loaded = pretrained or checkpoint is not None  # what a task treats as pretrained (its lr, not the new one)
        self.pretrained_names = frozenset(f"model.{n}" for n in self.model.state_dict()) if loaded else frozenset()
        cfg = self.model.pretrained_cfg
        self.width = self.model.num_features
        self.image_size = int(args.get("img_size", cfg.get("input_size", (3, 224, 224))[-1]))
        self.mean, self.std = tuple(cfg.get("mean", (0.5,) * 3)), tuple(cfg.get("std", (0.5,) * 3))
        self.model.requires_grad_(trainable)

    def _load(self, checkpoint: str) -> None:
        """A timm state dict from a local file, strictly (the classifier aside); a position embedding of another
        resolution (DINOv2's 518 px) is resampled to this model's grid."""
        from timm.layers import resample_abs_pos_embed

        state = {k: v for k, v in read_checkpoint(checkpoint).items() if not k.startswith(("head.", "fc."))}
        own = self.model.state_dict()
        if "pos_embed" in state and "pos_embed" in own and state["pos_embed"].shape != own["pos_embed"].shape:
            prefix = 0 if getattr(self.model, "no_embed_class", False) else self.model.num_prefix_tokens
            state["pos_embed"] = resample_abs_pos_embed(
                state["pos_embed"], self.model.patch_embed.grid_size, num_prefix_tokens=prefix
            )
        try:
            load_state(self.model, state, strict=True)
        except RuntimeError as err:  # missing, unexpected or mis-shaped weights
            raise ValueError(f"{checkpoint} does not fit timm model {self.name}: {err}") from None

    def forward(self, frames: Tensor) -> Tensor:
        return self.model(frames)

    def extra_repr(self) -> str:
        return f"name={self.name!r}, checkpoint={self.checkpoint!r}, trainable={self.trainable}"


class WithExtraModel(TransferStrategy):
    """Args:
    extra: the extra model.
    strategy: the backbone's own strategy (default ``Frozen``); it must output tower features per frame (side
        networks that only output CLIP's joint space, such as DiST, do not compose here).
    """

    @classmethod
    def tiny(cls) -> WithExtraModel:
        args = dict(img_size=32, patch_size=8, depth=2, embed_dim=48, num_heads=2)  # built at random, no download
        extra = TimmImageModel("vit_tiny_patch16_224", pretrained=False, model_args=args)
        from lit_i2v.strategies.lora import LoRA

        return cls(extra, strategy=LoRA(rank=4, targets=["attn.qkv"]))

    @property
    def identity_at_init(self) -> bool:  # the fusion into the tower starts at zero
        return self.inner.identity_at_init

    @property
    def needs_projection(self) -> bool:
        return self.inner.needs_projection

    @property
    def needs_class_token(self) -> bool:
        return self.inner.needs_class_token

    def reference_at_init(self) -> TransferStrategy:
        return self.inner.reference_at_init()

    def __init__(self, extra: ExtraModel, strategy: TransferStrategy | None = None) -> None:
        super().__init__()
        self.inner = strategy or Frozen()
        self.extra = extra

    def apply(self, backbone: CLIP) -> None:
        self.inner.apply(backbone)
        self.fuse = nn.Linear(self.extra.width, backbone.visual.width)  # into the tower's features (D)
        nn.init.zeros_(self.fuse.weight)
        nn.init.zeros_(self.fuse.bias)
        self.register_buffer("clip_mean", torch.tensor(backbone.pretrained_cfg["mean"]).view(1, 3, 1, 1))
        self.register_buffer("clip_std", torch.tensor(backbone.pretrained_cfg["std"]).view(1, 3, 1, 1))
        self.register_buffer("extra_mean", torch.tensor(self.extra.mean).view(1, 3, 1, 1))
        self.register_buffer("extra_std", torch.tensor(self.extra.std).view(1, 3, 1, 1))

    def trainable(self, name: str) -> bool:
        return self.inner.trainable(name)

    def owns(self, name: str) -> bool:
        return self.inner.owns(name)

    def extra_features(self, video: Tensor) -> Tensor:
        """Clips normalised for CLIP ``(B, T, 3, H, W)`` → the extra model's features ``(B, T, C)``."""
        b, t = video.shape[:2]
        frames = video.flatten(0, 1) * self.clip_std + self.clip_mean  # back to [0, 1]
        frames = (frames - self.extra_mean) / self.extra_std
        if frames.shape[-1] != self.extra.image_size:
            size = (self.extra.image_size, self.extra.image_size)
            frames = F.interpolate(frames, size=size, mode="bilinear", align_corners=False, antialias=True)
        if self.extra.trainable:
            return self.extra(frames).unflatten(0, (b, t))
        self.extra.eval()
        with torch.no_grad():
            return self.extra(frames).unflatten(0, (b, t))

    def forward(self, backbone: CLIP, video: Tensor, project: bool = False) -> Tensor:
        """Per-frame ``f + W e`` in the tower's width, projected by CLIP's own projection if ``project``."""
        return self.encode(backbone, video, project).frames

    def encode(self, backbone: CLIP, video: Tensor, project: bool = False, tokens: bool = False) -> VideoFeatures:
        """The fused per-frame features and, with ``tokens``, the wrapped strategy's tower tokens."""
        inner = self.inner.encode(backbone, video, project=False, tokens=tokens)  # (B, T, D): the wrapped strategy's
        fused = inner.frames + self.fuse(self.extra_features(video).to(inner.frames.dtype))
        return VideoFeatures(backbone.visual.head(fused) if project else fused, inner.tokens)

    def extra_repr(self) -> str:
        return f"strategy={type(self.inner).__name__}"
