"""CLIP: an image tower and a text tower meeting in a joint embedding space (Radford et al. 2021).

``CLIP`` is the backbone every strategy and task works on. Its constructor is its config schema:

    backbone:
      class_path: lit_i2v.backbones.CLIP
      init_args: {arch: ViT-B-16, pretrained: openai}

``pretrained`` is a tag of the architecture (``openai``), a local file in any supported format, or
``hf-hub:org/repo``. The towers are plain ``torch.nn`` code; nothing here imports Lightning or data code.
"""

from __future__ import annotations

import logging
import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lit_i2v.backbones.folder_tokenizer import FolderTokenizer
from lit_i2v.backbones.registry import get_arch
from lit_i2v.backbones.text import TextTransformer
from lit_i2v.backbones.tokenizer import Tokenizer
from lit_i2v.backbones.vit import VisionTransformer
from lit_i2v.backbones.weights import load_clip_weights, resolve_pretrained

log = logging.getLogger(__name__)


class CLIP(nn.Module):
    """CLIP with a time-aware image tower.

    Args:
        arch: architecture name (``ViT-B-32``, ``ViT-B-16``, ``ViT-L-14``, ``ViT-L-14-336``, ``ViT-T-8-test``, ...).
        pretrained: weights: a tag (``openai``), a path, ``hf-hub:org/repo``, or None for random initialisation
            (also ``"null"``/``"None"``/``""``: what a command-line ``=null`` arrives as in omegaconf mode).
        act: the activation (``quick_gelu`` for OpenAI weights, ``gelu`` for most LAION weights); default: what the
            weights say (a transformers folder's ``config.json``), else ``quick_gelu``.
        drop_path_rate: stochastic depth of the image tower.
        grad_checkpointing: recompute image-tower blocks in backward to save activation memory.
    """

    def __init__(
        self,
        arch: str = "ViT-B-16",
        pretrained: str | None = None,
        act: str | None = None,
        drop_path_rate: float = 0.0,
        grad_checkpointing: bool = False,
    ) -> None:
        super().__init__()
        spec = get_arch(arch)
        self.arch = arch
        if isinstance(pretrained, str) and pretrained.strip().lower() in ("", "none", "null", "~"):
            pretrained = None
        state = source = cfg = None
        if pretrained is not None:  # read first: a transformers folder says which activation the towers need
            state, source, cfg = resolve_pretrained(arch, pretrained)
        weights_act = cfg.extra.get("act") if cfg is not None else None
        if act is not None and weights_act is not None and act != weights_act:
            log.warning("act=%s, but %s was trained with %s", act, source, weights_act)
        act = act or weights_act or spec.act
        self.visual = VisionTransformer(**spec.vision, embed_dim=spec.embed_dim, act=act, drop_path_rate=drop_path_rate)
        self.text = TextTransformer(**spec.text, embed_dim=spec.embed_dim, act=act)
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1 / 0.07) if not spec.logit_bias else math.log(10.0)))
        # SigLIP's sigmoid loss has a learnt bias (initialised at -10, as the paper's)
        self.logit_bias = nn.Parameter(torch.tensor(-10.0)) if spec.logit_bias else None
        self.tokenizer = Tokenizer(spec.text["context_length"]) if spec.text["vocab_size"] == 49408 else None
        folder = cfg.extra.get("tokenizer") if cfg is not None else None
        self._no_tokenizer = "these weights have none"  # why ``tokenize`` cannot, if it cannot
        if folder is not None and self.tokenizer is None:  # SigLIP's, saved beside its weights
            try:
                self.tokenizer = FolderTokenizer(folder, spec.text["context_length"])
            except ImportError as err:  # spiece.model without sentencepiece: the towers still load
                self._no_tokenizer = str(err)
                log.warning("%s: the model loads, but cannot tokenize text", err)
        self.visual.set_grad_checkpointing(grad_checkpointing)
        self.pretrained_cfg = {
            "source": None,
            "mean": spec.mean,
            "std": spec.std,
            "image_size": spec.vision["image_size"],
        }
        # The parameters whose values came from weights (relative names): what a task treats as pretrained.
        self.pretrained_names: frozenset[str] = frozenset()
        if state is not None:
            self.pretrained_names = load_clip_weights(self, state, source)
            self.pretrained_cfg["source"] = source
            if cfg is not None and cfg.mean is not None:
                self.pretrained_cfg.update(mean=cfg.mean, std=cfg.std)

    @property
    def embed_dim(self) -> int:
        return self.visual.embed_dim

    def tokenize(self, texts: str | list[str]) -> Tensor:
        """Texts → token ids ``(N, context_length)`` on the model's device."""
        if self.tokenizer is None and self.logit_scale.is_meta:  # shapes only (``summary``): no ids are read
            count = 1 if isinstance(texts, str) else len(texts)
            return torch.zeros(count, self.text.context_length, dtype=torch.long, device="meta")
        if self.tokenizer is None:
            raise NotImplementedError(
                f"{self.arch}: its tokenizer (SentencePiece or Gemma's) comes from its weights' folder "
                f"(tokenizer.json or spiece.model), and {self._no_tokenizer}; load a folder that has one, or pass "
                "token ids to encode_text"
            )
        return self.tokenizer(texts).to(self.logit_scale.device)

    def encode_image(self, images: Tensor, normalize: bool = False) -> Tensor:
        """Normalised images ``(B, 3, H, W)`` → embeddings ``(B, E)``."""
        x = self.visual(images)
        return F.normalize(x, dim=-1) if normalize else x

    def encode_text(self, token_ids: Tensor, normalize: bool = False) -> Tensor:
        """Token ids ``(B, 77)`` → embeddings ``(B, E)``."""
        x = self.text(token_ids)
        return F.normalize(x, dim=-1) if normalize else x

    def encode_video(self, video: Tensor, project: bool = True) -> Tensor:
        """Normalised clips ``(B, T, 3, H, W)`` → per-frame embeddings ``(B, T, E)`` (``(B, T, D)`` unprojected)."""
        return self.visual.forward_video(video, project=project)

    def forward(self, images: Tensor, token_ids: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """CLIP's contrastive forward: normalised image and text embeddings and the logit scale."""
        return self.encode_image(images, True), self.encode_text(token_ids, True), self.logit_scale.exp()


def scaled_logits(cosine: Tensor, logit_scale: Tensor, logit_bias: Tensor | None = None) -> Tensor:
    """Cosine similarities → the logits of the family's loss, in fp32. CLIP (no bias): ``exp(s)·cos`` with the
    scale clamped at 100, as in its training; SigLIP (a learnt bias): ``exp(s)·cos + b``, unclamped, as in its
    sigmoid loss (a released SigLIP's scale is above 100)."""
    if logit_bias is None:
        return logit_scale.float().clamp(max=4.6052).exp() * cosine.float()
    return logit_scale.float().exp() * cosine.float() + logit_bias.float()


def sigmoid_pair_loss(logits: Tensor) -> Tensor:
    """SigLIP's loss over a batch's ``(N, N)`` pair logits whose diagonal holds the matching pairs:
    ``-Σ log σ(z·logit) / N`` with z = +1 on the diagonal and -1 elsewhere (Zhai et al. 2023)."""
    n = logits.shape[0]
    signs = 2 * torch.eye(n, device=logits.device, dtype=logits.dtype) - 1
    return -F.logsigmoid(signs * logits).sum() / n


def create_clip(name: str, pretrained: str | None = None, **kwargs) -> CLIP:
    """``create_clip("ViT-B-16", "openai")``: the Python entry point, as ``open_clip.create_model``."""
    return CLIP(arch=name, pretrained=pretrained, **kwargs)
