"""Classification heads on pooled video features ``(B, C)`` → logits ``(B, K)``.

Heads are built by the task once it knows the backbone and the classes (``build``), so a config names a head's
hyperparameters only:

- ``LinearHead``: dropout + linear, zero-initialised bias; on the tower's features (ST-Adapter, AIM, linear probe).
- ``TextClassifierHead``: cosine similarity with class-name prompt embeddings from CLIP's text tower, scaled by
  CLIP's logit scale (Radford et al. 2021, section 3.1.4: prompt ensembling over templates). Frozen it is zero-shot
  classification; trainable its weights start from the text embeddings (a text-initialised classifier). On SigLIP
  the logits are its sigmoid loss's, ``t·cos + b`` with the backbone's learnt bias (Zhai et al. 2023), so that the
  task's ``loss: sigmoid`` scores each class as SigLIP's zero-shot classifier does.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lit_i2v.backbones import CLIP, scaled_logits


class Head(nn.Module):
    """Base class. ``needs_projection``: the head reads CLIP-projected features (E) rather than tower features;
    ``needs_class_names``: ``build`` needs the class names; ``needs_tokens``: ``forward(x, tokens)`` also reads the
    last block's patch tokens ``(B, T, N, D)`` (video-conditioned text prompts); ``reads_text_tower``: the text tower
    (and the backbone's logit scale and bias) is on the training path, so a strategy may train it (ViFi-CLIP)."""

    needs_projection = False
    needs_class_names = False
    needs_tokens = False
    reads_text_tower = False

    @classmethod
    def tiny(cls) -> Head:
        """This head configured for the tiny test towers (``tests/test_heads.py`` runs every exported head)."""
        return cls()

    def build(self, backbone: CLIP, num_classes: int, class_names: list[str] | None) -> None:
        raise NotImplementedError


@torch.no_grad()
def encode_class_prompts(
    backbone: CLIP, num_classes: int, class_names: list[str] | None, templates: list[str]
) -> Tensor:
    """Text-tower embeddings of every (class, template) prompt, unnormalised ``(K, templates, E)``, in eval mode."""
    if not class_names:
        raise ValueError("model.class_names is required by text heads (a list or a labels file)")
    if len(class_names) != num_classes:
        raise ValueError(f"model.class_names has {len(class_names)} names but num_classes is {num_classes}")
    was_training = backbone.text.training
    backbone.text.eval()
    tokens = backbone.tokenize([t.format(name) for name in class_names for t in templates])
    embeddings = backbone.encode_text(tokens).float().unflatten(0, (num_classes, len(templates)))
    backbone.text.train(was_training)
    return embeddings


class LinearHead(Head):
    """Args: dropout before the linear layer (0.5 in ST-Adapter/EVL); project: read CLIP-projected features."""

    def __init__(self, dropout: float = 0.5, project: bool = False) -> None:
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        self.needs_projection = project
        self.fc: nn.Linear | None = None

    def build(self, backbone: CLIP, num_classes: int, class_names: list[str] | None) -> None:
        width = backbone.embed_dim if self.needs_projection else backbone.visual.width
        self.fc = nn.Linear(width, num_classes)
        nn.init.normal_(self.fc.weight, std=0.02)
        nn.init.zeros_(self.fc.bias)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(self.dropout(x))


class TextClassifierHead(Head):
    """Cosine classifier whose class weights are CLIP text embeddings of prompts built from class names.

    Args:
        templates: prompt templates with ``{}`` for the class name; embeddings are averaged over templates.
        trainable: train the class weights and the scale (False: zero-shot, a fixed classifier).
    """

    needs_projection = True
    needs_class_names = True

    def __init__(self, templates: list[str] | None = None, trainable: bool = True) -> None:
        super().__init__()
        self.templates = templates or ["a video of {}."]
        self.is_trainable = trainable
        self.weight: nn.Parameter | None = None
        self.logit_scale: nn.Parameter | None = None
        self.logit_bias: nn.Parameter | None = None  # SigLIP's

    def build(self, backbone: CLIP, num_classes: int, class_names: list[str] | None) -> None:
        per_template = F.normalize(encode_class_prompts(backbone, num_classes, class_names, self.templates), dim=-1)
        embeddings = F.normalize(per_template.mean(1), dim=-1)  # (K, E): the ensemble over templates
        self.weight = nn.Parameter(embeddings, requires_grad=self.is_trainable)  # (K, E)
        self.logit_scale = nn.Parameter(backbone.logit_scale.detach().clone(), requires_grad=self.is_trainable)
        if backbone.logit_bias is not None:
            self.logit_bias = nn.Parameter(backbone.logit_bias.detach().clone(), requires_grad=self.is_trainable)

    def forward(self, x: Tensor) -> Tensor:
        cosine = F.normalize(x.float(), dim=-1) @ F.normalize(self.weight.float(), dim=-1).t()  # (B, K)
        return scaled_logits(cosine, self.logit_scale, self.logit_bias)  # fp32, for a stable softmax or sigmoid

    def extra_repr(self) -> str:
        return f"templates={len(self.templates)}, trainable={self.is_trainable}"


class PromptEncoderHead(Head):
    """Cosine classifier whose class embeddings come from the text tower at every training step (ViFi-CLIP).

    Rasheed et al., *Fine-tuned CLIP Models are Efficient Video Learners*, CVPR 2023 (ViFi-CLIP); official code:
    github.com/muzairkhattak/ViFi-CLIP. With ``FullFinetune(towers: [visual, text])`` both towers learn: each step
    encodes the K class prompts through the text tower (gradients reach it and CLIP's logit scale), and the logits
    are CLIP's scaled cosine similarities with the frame-averaged video embedding. In evaluation the prompts are
    encoded once per pass. Unlike ``TextClassifierHead`` it owns no parameters: the class embeddings are always the
    text tower's current output, so a fine-tuned text tower is what a checkpoint carries.

    Args: templates with ``{}`` for the class name (ViFi-CLIP: ``"a photo of a {}."``), embeddings averaged.
    """

    needs_projection = True
    needs_class_names = True
    reads_text_tower = True

    def __init__(self, templates: list[str] | None = None) -> None:
        super().__init__()
        self.templates = templates or ["a photo of a {}."]
        self.clip: list[CLIP] = []  # the backbone, outside the module tree: its parameters belong to the task
        self._cached: Tensor | None = None

    def build(self, backbone: CLIP, num_classes: int, class_names: list[str] | None) -> None:
        encode_class_prompts(backbone, num_classes, class_names, self.templates[:1])  # checks the names
        tokens = backbone.tokenize([t.format(name) for name in class_names for t in self.templates])
        self.register_buffer("token_ids", tokens, persistent=False)  # (K * templates, L)
        self.num_classes = num_classes
        self.clip = [backbone]

    def class_embeddings(self) -> Tensor:
        """``(K, E)``, normalised: the template ensemble of each class through the text tower as it is now."""
        text = self.clip[0].encode_text(self.token_ids).float()
        per_template = F.normalize(text, dim=-1).unflatten(0, (self.num_classes, len(self.templates)))
        return F.normalize(per_template.mean(1), dim=-1)

    def train(self, mode: bool = True) -> PromptEncoderHead:
        self._cached = None  # a switch (an evaluation pass begins or ends) re-encodes
        return super().train(mode)

    @torch.no_grad()
    def prepare_evaluation(self) -> None:
        self._cached = self.class_embeddings()

    def forward(self, x: Tensor) -> Tensor:
        if self.training or torch.is_grad_enabled():
            weights = self.class_embeddings()
        else:
            if self._cached is None:
                self._cached = self.class_embeddings()
            weights = self._cached
        clip = self.clip[0]
        return scaled_logits(F.normalize(x.float(), dim=-1) @ weights.t(), clip.logit_scale, clip.logit_bias)

    def extra_repr(self) -> str:
        return f"templates={len(self.templates)}"
