"""Action recognition: clip → backbone + strategy → per-frame features → temporal module → head → class scores.

Training takes one clip per video; evaluation takes V views (temporal clips x spatial crops) per video, averages the
softmax scores over the views, and scores top-1/top-5 per video, the mean class accuracy (mmaction2's, from the
confusion matrix: ``lit_i2v.metrics.mean_class_accuracy``) and the loss (the negative log of the view-averaged
probability of the true class), each over the whole split and all ranks. With ``loss: sigmoid`` (SigLIP's, Zhai et
al. 2023) every class is scored on its own: training minimises ``-log σ(z·logit)`` summed over classes (z = +1 for
the label, -1 for the others; binary cross-entropy, soft targets under smoothing and mixing), and evaluation
averages the per-class sigmoids over the views, as SigLIP's zero-shot classifier scores classes (the evaluation loss
is then the negative log of the true class's view-averaged sigmoid, not the training loss). Evaluation videos that
failed to decode come with ``valid=False`` and are left out of the metrics (and counted in ``<stage>/skipped``); the
number of videos scored is logged as ``<stage>/videos`` so a reader can check that every video counted exactly once.
"""

from __future__ import annotations

import os
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor
from torchmetrics import MeanMetric, MetricCollection, SumMetric
from torchmetrics.classification import MulticlassAccuracy, MulticlassConfusionMatrix

from lit_i2v.backbones import CLIP
from lit_i2v.errors import ConfigError
from lit_i2v.heads import Head, LinearHead, MeanPool, Temporal
from lit_i2v.metrics import mean_class_accuracy
from lit_i2v.strategies import TransferStrategy
from lit_i2v.tasks.args import Optimization, Runtime
from lit_i2v.tasks.base import VideoTask
from lit_i2v.tasks.distillation import Distillation
from lit_i2v.tasks.mixing import Mixer, one_hot


class ActionRecognition(VideoTask):
    """Video classification over ``num_classes`` actions.

    Args:
        backbone: the image-language model.
        num_classes: number of classes K.
        transfer: the transfer strategy (``lit_i2v.strategies.*``; default: full fine-tuning).
        head: classification head (default: ``LinearHead``).
        temporal: module pooling per-frame features over time (default: ``MeanPool``).
        class_names: class names in index order, needed by text heads; in a config, an SSv2 labels JSON or a text
            file of one name a line, which the CLI reads into the list (the task reads no files).
        optim: optimizer, layer decay, warm-up, schedule floor, new-module lr scale (``Optimization``).
        runtime: compile, trainable-only checkpoints (``Runtime``).
        label_smoothing: label smoothing of the cross-entropy targets.
        mixup_alpha: Beta parameter of mixup (0 disables).
        cutmix_alpha: Beta parameter of cutmix (0 disables).
        mix_prob: probability that a batch is mixed when mixup or cutmix is on.
        distillation: a frozen teacher whose features and zero-shot scores the student also learns from.
        report_samples: clips shown with their predictions at each evaluation (``lit_i2v.reports``; 0 for none),
            beside the per-class accuracy and confusion matrix written (and logged to W&B) every time.
        loss: ``softmax`` (cross-entropy over the classes, CLIP's) or ``sigmoid`` (one binary decision per class,
            SigLIP's); evaluation scores classes the same way (softmax probabilities or per-class sigmoids).
    """

    monitor = "val/top1"  # the validation metric that chooses the best checkpoint

    def __init__(
        self,
        backbone: CLIP,
        num_classes: int,
        transfer: TransferStrategy | None = None,
        head: Head | None = None,
        temporal: Temporal | None = None,
        class_names: list[str] | str | None = None,
        optim: Optimization | None = None,
        runtime: Runtime | None = None,
        label_smoothing: float = 0.0,
        mixup_alpha: float = 0.0,
        cutmix_alpha: float = 0.0,
        mix_prob: float = 1.0,
        distillation: Distillation | None = None,
        report_samples: int = 4,
        loss: Literal["softmax", "sigmoid"] = "softmax",
    ) -> None:
        super().__init__(backbone, transfer, optim=optim, runtime=runtime)
        if num_classes < 1:
            raise ConfigError(f"model.init_args.num_classes: must be at least 1, got {num_classes}")
        self.save_hyperparameters(ignore=["backbone", "transfer", "head", "temporal", "distillation"])
        self.num_classes = num_classes
        self.temporal = temporal or MeanPool()
        self.head = head or LinearHead()
        # Read a labels file only when names are needed: a generated dataset may not exist yet.
        needs_names = self.head.needs_class_names or (distillation is not None and distillation.logit_weight > 0)
        if isinstance(class_names, str) and needs_names:  # the CLI reads a file into the list; Python callers do
            if not os.path.isfile(class_names):
                raise FileNotFoundError(f"model.init_args.class_names: {class_names} does not exist")
            raise ConfigError(
                f"model.init_args.class_names: the task takes the names, not the file {class_names}: pass "
                "lit_i2v.data.read_class_names(path) (the CLI reads the file for you)"
            )
        self.class_names = class_names if isinstance(class_names, list) else None
        self.head.build(backbone, num_classes, self.class_names)
        if self.transfer.needs_projection and not self.head.needs_projection:
            raise ConfigError(
                f"model.init_args.head: {type(self.transfer).__name__} outputs CLIP's joint space; use a head on "
                "projected features (TextClassifierHead, or LinearHead with project: true)"
            )
        width = backbone.embed_dim if self.head.needs_projection else backbone.visual.width
        self.temporal.build(width, backbone)
        self.distillation = distillation
        if distillation is not None:
            distillation.build(width, num_classes, self.class_names)
        if not self.head.needs_projection:
            # The head reads tower features, so CLIP's projection is off the forward path: a parameter without
            # gradients would only cost optimizer state, and DDP rejects it.
            backbone.visual.head.requires_grad_(False)
        if not self.head.reads_text_tower:
            # Likewise the text tower, scale and bias when no loss reaches them (a text classifier encodes its prompts
            # once, at build; a linear head never): a strategy training both towers trains the image tower here.
            for name, param in backbone.named_parameters():
                if name.startswith(("text.", "logit_")):
                    param.requires_grad_(False)
        if loss not in ("softmax", "sigmoid"):
            raise ConfigError(f"model.init_args.loss: {loss!r}; choose softmax (CLIP's) or sigmoid (SigLIP's)")
        if loss == "sigmoid" and self.head.needs_class_names and backbone.logit_bias is None:
            raise ConfigError(
                f"model.init_args.loss: sigmoid with a text head needs a backbone with a learnt logit bias (SigLIP); "
                f"{backbone.arch}'s scaled cosines (up to 100) would saturate every class's sigmoid at 1"
            )
        self.loss = loss
        self.label_smoothing = label_smoothing
        self.mixer = Mixer(mixup_alpha, cutmix_alpha, mix_prob)
        top5 = min(5, num_classes)
        metrics = MetricCollection(
            {
                "top1": MulticlassAccuracy(num_classes, top_k=1, average="micro"),
                "top5": MulticlassAccuracy(num_classes, top_k=top5, average="micro"),
                "loss": MeanMetric(),
                "videos": SumMetric(),
            }
        )
        self.val_metrics = metrics.clone(prefix="val/")
        self.test_metrics = metrics.clone(prefix="test/")
        self.confusion = torch.nn.ModuleDict({s: MulticlassConfusionMatrix(num_classes) for s in ("val", "test")})
        self.report_samples = report_samples
        self._samples: tuple | None = None

    @classmethod
    def tiny(cls) -> ActionRecognition:
        return cls(CLIP("ViT-T-8-test"), num_classes=3)

    def example_batch(self, size: int = 2, training: bool = True, frames: int = 4, views: int = 2) -> dict:
        """Clips and ``label`` (B,) class indices."""
        return super().example_batch(size, training, frames, views) | {"label": torch.arange(size) % self.num_classes}

    def setup(self, stage: str) -> None:
        datamodule = self.trainer.datamodule if self._trainer is not None else None
        if datamodule is not None and getattr(datamodule, "num_classes", 0) is None:  # built without num_classes
            datamodule.check_labels(self.num_classes)  # names the file and line of a label outside the classes

    def pooled(self, video: Tensor) -> tuple[Tensor, Tensor | None]:
        """Normalised clips ``(B, T, 3, H, W)`` → the video feature ``(B, C)``, and the last block's patch tokens
        ``(B, T, N, D)`` when the head reads them (None otherwise)."""
        features = self.transfer.encode(
            self.backbone, video, project=self.head.needs_projection, tokens=self.head.needs_tokens
        )  # frames (B, T, C), tokens (B, T, N, D) or None
        return self.temporal(features.frames), features.tokens

    def classify(self, feature: Tensor, tokens: Tensor | None) -> Tensor:
        """The head's logits ``(B, K)`` for pooled features (and tokens, for heads that read them)."""
        return self.head(feature, tokens) if self.head.needs_tokens else self.head(feature)

    def forward(self, video: Tensor) -> Tensor:
        """Normalised clips ``(B, T, 3, H, W)`` → logits ``(B, K)``."""
        return self.classify(*self.pooled(video))

    def training_step(self, batch: dict, batch_idx: int) -> Tensor:
        video = self.normalize(batch["video"])  # (B, T, 3, H, W)
        labels = batch["label"]
        targets = one_hot(labels, self.num_classes, self.label_smoothing)
        video, targets = self.mixer(video, targets)
        feature, tokens = self.pooled(video)
        logits = self.classify(feature, tokens)
        loss = self.classification_loss(logits, targets)
        batch_size = labels.shape[0]
        if self.distillation is not None:
            for name, value in self.distillation(video, feature, logits).items():
                self.log(f"train/{name}", value, batch_size=batch_size)
                loss = loss + value
        self.log("train/loss", loss, prog_bar=True, batch_size=batch_size)
        self.log("train/skipped", batch["skipped"].sum().float(), reduce_fx="sum", batch_size=batch_size)
        return loss

    def classification_loss(self, logits: Tensor, targets: Tensor) -> Tensor:
        """Soft targets ``(B, K)`` against logits: cross-entropy over the classes, or (``sigmoid``) the binary
        cross-entropy of every class summed, SigLIP's ``-Σ log σ(z·logit)`` for one-hot targets; mean over the batch."""
        if self.loss == "sigmoid":
            return F.binary_cross_entropy_with_logits(logits.float(), targets, reduction="none").sum(-1).mean()
        return torch.sum(-targets * F.log_softmax(logits.float(), dim=-1), dim=-1).mean()

    def scores(self, logits: Tensor) -> Tensor:
        """Logits ``(N, K)`` → class scores: softmax probabilities, or each class's sigmoid with ``loss: sigmoid``."""
        return logits.float().sigmoid() if self.loss == "sigmoid" else logits.float().softmax(-1)

    def predict_views(self, video: Tensor) -> Tensor:
        """uint8 multi-view clips ``(B, V, T, 3, H, W)`` → class scores averaged over views ``(B, K)``."""
        b, v = video.shape[:2]
        logits = self(self.normalize(video.flatten(0, 1)))  # (B*V, K)
        return self.scores(logits).unflatten(0, (b, v)).mean(1)  # (B, K)

    def _evaluate(self, batch: dict, metrics: MetricCollection, stage: str, batch_idx: int = 0) -> None:
        probs = self.predict_views(batch["video"])
        valid = batch["valid"]
        labels = batch["label"]
        if valid.any():
            metrics["top1"].update(probs[valid], labels[valid])
            metrics["top5"].update(probs[valid], labels[valid])
            self.confusion[stage].update(probs[valid].argmax(-1), labels[valid])
            true = probs[valid].gather(1, labels[valid].view(-1, 1)).squeeze(1)  # (n,)
            metrics["loss"].update(-true.clamp_min(1e-8).log())  # per video: averaged over the split
        attached = self._trainer is not None
        if batch_idx == 0 and self.report_samples and attached and self.trainer.is_global_zero:
            n = self.report_samples
            self._samples = (batch["video"][:n, 0].cpu(), labels[:n].tolist(), probs[:n].max(-1))
        metrics["videos"].update(valid.sum().float())
        self.log(f"{stage}/skipped", (~valid).sum().float(), reduce_fx="sum", batch_size=valid.shape[0])
        self.log_dict(metrics, prog_bar=stage == "val", batch_size=valid.shape[0])

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        self._evaluate(batch, self.val_metrics, "val", batch_idx)

    def test_step(self, batch: dict, batch_idx: int) -> None:
        self._evaluate(batch, self.test_metrics, "test", batch_idx)

    def _report(self, stage: str) -> None:
        """Per-class accuracy, confusion matrix and sample clips (``lit_i2v.reports``), on rank 0."""
        from lit_i2v.reports import report_confusion, report_samples

        matrix = self.confusion[stage].compute()  # summed over ranks: every rank takes part
        self.confusion[stage].reset()
        if self._trainer is not None:  # the same value on every rank: the matrix is summed over them
            self.log(f"{stage}/mean_class_acc", mean_class_accuracy(matrix), prog_bar=stage == "val")
        samples, self._samples = self._samples, None
        if self._trainer is None or self.trainer.sanity_checking or not self.trainer.is_global_zero:
            return
        datamodule = self.trainer.datamodule
        names = self.class_names or (datamodule.class_names() if hasattr(datamodule, "class_names") else None)
        name = (lambda k: names[k]) if names else str
        report_confusion(self.trainer, stage, matrix, names)
        if samples is not None:
            clips, truth, (confidence, predicted) = samples
            report_samples(self.trainer, stage, clips, [name(k) for k in truth],
                           [(name(int(p)), float(c)) for p, c in zip(predicted, confidence, strict=True)])  # fmt: skip

    def on_validation_epoch_end(self) -> None:
        self._report("val")

    def on_test_epoch_end(self) -> None:
        self._report("test")

    def predict_step(self, batch: dict, batch_idx: int) -> dict:
        return {"video_id": batch["video_id"], "probs": self.predict_views(batch["video"]), "valid": batch["valid"]}
