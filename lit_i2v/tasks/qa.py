"""Video question answering on the CLIP towers: open-ended over an answer vocabulary, or multiple choice.

- ``open`` (MSRVTT-QA, MSVD-QA): the video embedding ``v`` (frames through the strategy, projected, pooled over
  time) and the question embedding ``q`` (text tower) are fused as ``[v, q, v * q]`` by a two-layer MLP into
  scores over the answer vocabulary, trained with cross-entropy (the classification setting of CLIP-based QA
  baselines, e.g. in CLIP4Clip / All-in-one comparisons).
- ``mc`` (MSRVTT-MC): each candidate (after the question, if any) is embedded by the text tower and scored by its
  cosine similarity with the video times CLIP's logit scale; cross-entropy over the candidates (zero-shot at step 0).

Evaluation averages the video embedding over views and reports accuracy overall and per question type (the types
named in ``question_types``). A question whose answer is outside the vocabulary counts as wrong.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchmetrics import SumMetric

from lit_i2v.backbones import CLIP
from lit_i2v.heads import MeanPool, Temporal
from lit_i2v.strategies import TransferStrategy
from lit_i2v.tasks.args import Optimization, Runtime
from lit_i2v.tasks.base import VideoTask


class VideoQuestionAnswering(VideoTask):
    """Args:
    backbone, transfer, optim, runtime: as ``ActionRecognition``.
    mode: ``open`` (answer vocabulary) or ``mc`` (multiple choice).
    num_answers: size of the answer vocabulary (``open``).
    temporal: pools projected frame embeddings over time (default ``MeanPool``).
    hidden: width of the fusion MLP (``open``).
    dropout: dropout in the fusion MLP.
    question_types: types to report accuracy for separately (``val/acc_<type>``).
    """

    monitor = "val/acc"  # the validation metric that chooses the best checkpoint

    def __init__(
        self,
        backbone: CLIP,
        mode: Literal["open", "mc"] = "open",
        num_answers: int = 0,
        transfer: TransferStrategy | None = None,
        temporal: Temporal | None = None,
        hidden: int = 512,
        dropout: float = 0.1,
        question_types: list[str] | None = None,
        optim: Optimization | None = None,
        runtime: Runtime | None = None,
    ) -> None:
        super().__init__(backbone, transfer, optim=optim, runtime=runtime)
        self.save_hyperparameters(ignore=["backbone", "transfer", "temporal"])
        if backbone.logit_bias is not None:
            backbone.logit_bias.requires_grad_(False)  # SigLIP's bias: a softmax over answers never reads it
        if mode == "open" and num_answers < 1:
            raise ValueError("model.num_answers: open-ended QA needs the size of the answer vocabulary")
        self.mode = mode
        width = backbone.embed_dim
        self.temporal = temporal or MeanPool()
        self.temporal.build(width, backbone)
        if mode == "open":
            self.fusion = nn.Sequential(
                nn.Linear(3 * width, hidden), nn.GELU(), nn.Dropout(dropout), nn.Linear(hidden, num_answers)
            )
        self.question_types = list(question_types or [])
        # Correct and asked counts per group ("all" and each type), summed over ranks: every rank computes every
        # metric (no rank waits for another in a sync), and a type no rank saw is simply not logged.
        groups = ["all", *self.question_types]
        metrics = {f"{kind}_{g}": SumMetric() for g in groups for kind in ("correct", "asked")}
        self.val_metrics = nn.ModuleDict({k: v.clone() for k, v in metrics.items()})
        self.test_metrics = nn.ModuleDict({k: v.clone() for k, v in metrics.items()})

    @classmethod
    def tiny(cls) -> VideoQuestionAnswering:
        return cls(CLIP("ViT-T-8-test"), num_answers=4, hidden=16, question_types=["what"])

    def example_batch(self, size: int = 2, training: bool = True, frames: int = 4, views: int = 2) -> dict:
        """Clips, ``question``, ``qtype`` (lists of strings), ``candidates`` (a list of options per question for
        ``mc``, empty lists for ``open``) and ``label`` (the answer's index, or the right option's)."""
        options = 4 if self.mode == "open" else 3
        return super().example_batch(size, training, frames, views) | {
            "question": [f"what is thing {i} doing?" for i in range(size)],
            "qtype": ["what"] * size,
            "candidates": [[f"option {j}" for j in range(options)] if self.mode == "mc" else [] for _ in range(size)],
            "label": torch.arange(size) % options,
        }

    def video_embedding(self, video: Tensor) -> Tensor:
        """Normalised clips ``(B, T, 3, H, W)`` → L2-normalised ``(B, E)``."""
        return F.normalize(self.temporal(self.transfer(self.backbone, video, project=True)).float(), dim=-1)

    def text_embedding(self, texts: list[str]) -> Tensor:
        tokens = self.backbone.tokenize(texts).to(self.device)
        return F.normalize(self.backbone.encode_text(tokens).float(), dim=-1)

    def scores(self, v: Tensor, questions: list[str], candidates: list[list[str]]) -> Tensor:
        """Video embeddings ``(B, E)`` → answer scores ``(B, num_answers)`` or candidate scores ``(B, C)``."""
        if self.mode == "open":
            q = self.text_embedding(questions)
            return self.fusion(torch.cat([v, q, v * q], dim=-1))
        counts = {len(c) for c in candidates}
        if len(counts) != 1:
            raise ValueError(f"multiple choice needs the same number of candidates per question, got {counts}")
        texts = [f"{q} {c}".strip() for q, cands in zip(questions, candidates) for c in cands]
        t = self.text_embedding(texts).view(len(candidates), counts.pop(), -1)  # (B, C, E)
        scale = self.backbone.logit_scale.float().clamp(max=4.6052).exp()
        return scale * torch.einsum("be,bce->bc", v, t)

    def forward(self, video: Tensor) -> Tensor:
        """Normalised clips → video embeddings (what ``summary`` counts per view)."""
        return self.video_embedding(video)

    def training_step(self, batch: dict, batch_idx: int) -> Tensor:
        if self.mode == "open" and bool((batch["label"] < 0).any()):
            raise ValueError(
                "a training answer has no index in an answer vocabulary (a generative format: open, activitynet, "
                "videochatgpt); VideoQuestionAnswering chooses among answers: use data format qa with "
                "data.annotations.answers, or lit_i2v.tasks.GenerativeVideoQA"
            )
        v = self.video_embedding(self.normalize(batch["video"]))
        scores = self.scores(v, batch["question"], batch["candidates"])
        loss = F.cross_entropy(scores.float(), batch["label"])
        self.log("train/loss", loss, prog_bar=True, batch_size=len(batch["label"]))
        return loss

    def _evaluate(self, batch: dict, metrics: nn.ModuleDict, stage: str) -> None:
        b, views = batch["video"].shape[:2]
        with torch.no_grad():
            v = self.video_embedding(self.normalize(batch["video"].flatten(0, 1))).unflatten(0, (b, views))
            scores = self.scores(F.normalize(v.mean(1), dim=-1), batch["question"], batch["candidates"])
        valid = batch["valid"].float()
        correct = (scores.argmax(-1) == batch["label"]).float() * valid  # label -1 (outside the vocabulary): wrong
        metrics["correct_all"].update(correct.sum())
        metrics["asked_all"].update(valid.sum())
        for group in self.question_types:
            chosen = torch.tensor([t == group for t in batch["qtype"]], device=valid.device).float() * valid
            metrics[f"correct_{group}"].update((correct * chosen).sum())
            metrics[f"asked_{group}"].update(chosen.sum())
        self.log(f"{stage}/skipped", (1 - valid).sum(), reduce_fx="sum", batch_size=b)

    def _log_epoch(self, metrics: nn.ModuleDict, stage: str) -> None:
        totals = {name: float(metric.compute()) for name, metric in metrics.items()}  # every rank, every metric
        for metric in metrics.values():
            metric.reset()
        self.log(f"{stage}/questions", totals["asked_all"], rank_zero_only=True)
        for group in ["all", *self.question_types]:
            asked = totals[f"asked_{group}"]
            if asked:
                name = "acc" if group == "all" else f"acc_{group}"
                self.log(f"{stage}/{name}", 100 * totals[f"correct_{group}"] / asked, rank_zero_only=True)

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        self._evaluate(batch, self.val_metrics, "val")

    def test_step(self, batch: dict, batch_idx: int) -> None:
        self._evaluate(batch, self.test_metrics, "test")

    def on_validation_epoch_end(self) -> None:
        self._log_epoch(self.val_metrics, "val")

    def on_test_epoch_end(self) -> None:
        self._log_epoch(self.test_metrics, "test")
