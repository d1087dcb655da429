"""Knowledge distillation from a frozen image-language teacher into any student.

Survey (arXiv 2510.10671), "frozen features / knowledge distillation": the image-language model is kept frozen as a
teacher, and a student (any backbone + strategy + head of this framework) learns from it as well as from labels, as
in TeachCLIP (Tian et al., CVPR 2024) and FitCLIP (Castro & Heilbron, BMVC 2022). Two losses, each optional:

- feature distillation: the student's pooled video feature, through a learnable linear map into the teacher's
  embedding space (the identity at start when the widths match), against the teacher's frame-averaged image
  embedding: ``1 - cosine``;
- logit distillation (Hinton et al. 2015): ``T^2 * KL(softmax(t / T) || softmax(s / T))`` between the teacher's
  zero-shot class scores (cosine with prompt embeddings of the class names, ensembled over templates, times CLIP's
  logit scale) and the student's logits.

The teacher runs without autograd and never trains; it is a submodule so it moves with the task, and
``trainable_only_checkpoints`` keeps it out of checkpoints.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lit_i2v.backbones import CLIP
from lit_i2v.heads import TextClassifierHead


class Distillation(nn.Module):
    """Args:
    teacher: the frozen image-language model (same input size as the student).
    feature_weight: weight of the feature loss (0 disables it).
    logit_weight: weight of the logit loss (0 disables it; needs class names).
    temperature: softmax temperature T of the logit loss.
    templates: prompt templates of the teacher's zero-shot classifier.
    """

    def __init__(
        self,
        teacher: CLIP,
        feature_weight: float = 1.0,
        logit_weight: float = 1.0,
        temperature: float = 2.0,
        templates: list[str] | None = None,
    ) -> None:
        super().__init__()
        self.teacher = teacher.requires_grad_(False).eval()
        self.feature_weight, self.logit_weight, self.temperature = feature_weight, logit_weight, temperature
        self.classifier = TextClassifierHead(templates=templates, trainable=False)
        self.proj: nn.Linear | None = None

    def build(self, student_width: int, num_classes: int, class_names: list[str] | None) -> None:
        if self.feature_weight > 0:
            width = self.teacher.embed_dim
            self.proj = nn.Linear(student_width, width, bias=False)
            if student_width == width:
                nn.init.eye_(self.proj.weight)  # distilling a model into itself starts at zero loss
        if self.logit_weight > 0:
            self.classifier.build(self.teacher, num_classes, class_names)

    def train(self, mode: bool = True) -> Distillation:
        super().train(mode)
        self.teacher.eval()  # the teacher stays in eval mode: no dropout, no drop-path
        return self

    def forward(self, video: Tensor, student_feature: Tensor, student_logits: Tensor) -> dict[str, Tensor]:
        """Normalised clips ``(B, T, 3, H, W)``, the student's pooled feature ``(B, C)`` and logits ``(B, K)`` →
        the weighted losses by name."""
        with torch.no_grad():
            target = self.teacher.encode_video(video, project=True).mean(1).float()  # (B, E)
        losses = {}
        if self.proj is not None:
            cosine = F.cosine_similarity(self.proj(student_feature.float()), target, dim=-1)
            losses["distill_feature"] = self.feature_weight * (1 - cosine).mean()
        if self.logit_weight > 0:
            with torch.no_grad():
                teacher_logits = self.classifier(target)  # (B, K)
            t = self.temperature
            kl = F.kl_div(
                F.log_softmax(student_logits.float() / t, dim=-1),
                F.log_softmax(teacher_logits / t, dim=-1),
                log_target=True,
                reduction="batchmean",
            )
            losses["distill_logit"] = self.logit_weight * t * t * kl
        return losses
