"""Temporal grounding (moment retrieval) by post-network tuning on frozen per-frame CLIP features.

A proposal-free span head conditioned on the query (``lit_i2v.heads.SpanHead``: segment features fused with the
query, a transformer encoder over the segments, per-segment start, end and inside logits).

Training: cross-entropy of the start (end) distribution over the segments against the segment(s) where the
ground-truth windows start (end), plus a binary cross-entropy of "inside a window" per segment. Inference: span
``(i, j)``, i <= j, scores ``p_start(i) * p_end(j)``; the top spans after non-maximum suppression are the ranked
predictions for R1@IoU, mIoU and mAP (``lit_i2v.metrics.grounding``), computed per query and summed over ranks.
"""

from __future__ import annotations

import lightning as L
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchmetrics import SumMetric

from lit_i2v.backbones import FeatureExtractor
from lit_i2v.heads.span import SpanHead, decode_spans, segment_targets
from lit_i2v.metrics.grounding import IOU_THRESHOLDS, query_scores
from lit_i2v.tasks.args import Optimization
from lit_i2v.tasks.optim import total_steps, warmup_cosine

METRICS = [*(f"R1@{t}" for t in IOU_THRESHOLDS), "IoU", "mAP", "mAP@0.5", "mAP@0.75"]


class TemporalGrounding(L.LightningModule):
    """Args:
    extractor: the frozen CLIP and frame rate the features come from (``lit_i2v.backbones.FeatureExtractor``;
        ``python -m lit_i2v extract`` runs it; the model never calls it while training).
    feature_dim: width of the features (default: the extractor's embedding width, 512 for ViT-B/16, 768 for L/14).
    head: the span head (``SpanHead``: encoder width, layers, heads, dropout, longest sequence).
    top_k: ranked predictions kept per query (for mAP).
    nms_iou: IoU above which a lower-ranked span is suppressed.
    optim: optimizer, warm-up and schedule floor (``Optimization``; no backbone here, so no layer decay and no
        pretrained/new split).
    """

    monitor = "val/R1@0.5"  # the validation metric that chooses the best checkpoint

    def __init__(
        self,
        extractor: FeatureExtractor | None = None,
        feature_dim: int | None = None,
        head: SpanHead | None = None,
        top_k: int = 10,
        nms_iou: float = 0.7,
        optim: Optimization | None = None,
    ) -> None:
        super().__init__()
        self.save_hyperparameters(ignore=["extractor", "head"])  # modules and models: the config holds them
        self.extractor = extractor or FeatureExtractor()
        self.feature_dim = feature_dim = feature_dim or self.extractor.embed_dim
        self.head = (head or SpanHead()).build(feature_dim)
        self.top_k, self.nms_iou = top_k, nms_iou
        self.optim = optim or Optimization()
        metrics = {name.replace(".", "_"): SumMetric() for name in [*METRICS, "queries"]}
        self.val_metrics = nn.ModuleDict({k: v.clone() for k, v in metrics.items()})
        self.test_metrics = nn.ModuleDict({k: v.clone() for k, v in metrics.items()})

    @classmethod
    def tiny(cls) -> TemporalGrounding:
        """On the features of the tiny test CLIP (32-d), with a one-layer span head."""
        return cls(FeatureExtractor("ViT-T-8-test", None), head=SpanHead(hidden=32, layers=1, heads=2))

    def example_batch(self, size: int = 2, training: bool = True, segments: int = 6) -> dict:
        """Per query: segment features ``video`` (B, N, E) float with ``mask`` (B, N) True where real, the query
        embedding ``query`` (B, E), ground-truth ``windows`` (seconds, a list per query), ``duration`` (B,), ``qid``,
        ``video_id`` and ``index``."""
        mask = torch.ones(size, segments, dtype=torch.bool)
        mask[1:, segments // 2 :] = False  # shorter videos are padded
        return {
            "video": torch.randn(size, segments, self.feature_dim),
            "mask": mask,
            "query": torch.randn(size, self.feature_dim),
            "windows": [[(1.0, 3.0)] for _ in range(size)],
            "duration": torch.full((size,), 6.0),
            "qid": [str(i) for i in range(size)],
            "video_id": [f"v{i}" for i in range(size)],
            "index": torch.arange(size),
        }

    def forward(self, video: Tensor, mask: Tensor, query: Tensor) -> Tensor:
        if video.shape[-1] != self.feature_dim:
            raise ValueError(
                f"the features are {video.shape[-1]}-dimensional but model.init_args.feature_dim is {self.feature_dim}"
            )
        return self.head(video, mask, query)

    def loss(self, logits: Tensor, batch: dict) -> Tensor:
        lengths = batch["mask"].sum(1).tolist()
        n = logits.shape[1]
        targets = [segment_targets(w, float(d), k) for w, d, k in zip(batch["windows"], batch["duration"], lengths)]
        pad = lambda t: F.pad(t, (0, n - len(t)))  # noqa: E731
        start = torch.stack([pad(t[0]) for t in targets]).to(logits)
        end = torch.stack([pad(t[1]) for t in targets]).to(logits)
        inside = torch.stack([pad(t[2]) for t in targets]).to(logits)
        mask = batch["mask"]
        ce = lambda x, t: -(t * x.float().log_softmax(-1).masked_fill(~mask, 0)).sum(-1).mean()  # noqa: E731
        bce = F.binary_cross_entropy_with_logits(logits[..., 2].float(), inside, reduction="none")
        return ce(logits[..., 0], start) + ce(logits[..., 1], end) + (bce * mask).sum() / mask.sum()

    def training_step(self, batch: dict, batch_idx: int) -> Tensor:
        loss = self.loss(self(batch["video"], batch["mask"], batch["query"]), batch)
        self.log("train/loss", loss, prog_bar=True, batch_size=len(batch["duration"]))
        return loss

    def predict_spans(self, batch: dict, logits: Tensor | None = None) -> list[tuple[Tensor, Tensor]]:
        """Ranked spans (seconds) and scores per query, from ``logits`` when the caller has them already."""
        logits = self(batch["video"], batch["mask"], batch["query"]) if logits is None else logits
        out = []
        for b, n in enumerate(batch["mask"].sum(1).tolist()):
            out.append(decode_spans(logits[b, :n, 0], logits[b, :n, 1], float(batch["duration"][b]), self.top_k,
                                    self.nms_iou))  # fmt: skip
        return out

    def _evaluate(self, batch: dict, metrics: nn.ModuleDict, stage: str) -> None:
        with torch.no_grad():
            logits = self(batch["video"], batch["mask"], batch["query"])
            spans = self.predict_spans(batch, logits)
            self.log(f"{stage}/loss", self.loss(logits, batch), batch_size=len(spans))
        totals = dict.fromkeys(METRICS, 0.0)
        counted = 0
        for (predicted, _), windows in zip(spans, batch["windows"], strict=True):
            if not windows:
                continue  # a hidden-annotation query: predicted, not scored
            for name, value in query_scores(predicted, torch.tensor(windows, dtype=torch.float64)).items():
                totals[name] += value
            counted += 1
        for name, value in totals.items():
            metrics[name.replace(".", "_")].update(torch.tensor(value, device=self.device))
        metrics["queries"].update(torch.tensor(float(counted), device=self.device))

    def _log_epoch(self, metrics: nn.ModuleDict, stage: str) -> None:
        totals = {name: float(metric.compute()) for name, metric in metrics.items()}  # every rank, every metric
        for metric in metrics.values():
            metric.reset()
        queries = totals.pop("queries")
        self.log(f"{stage}/queries", queries, rank_zero_only=True)
        if queries:
            for name in METRICS:
                self.log(f"{stage}/{name}", 100 * totals[name.replace(".", "_")] / queries, rank_zero_only=True)

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        self._evaluate(batch, self.val_metrics, "val")

    def test_step(self, batch: dict, batch_idx: int) -> None:
        self._evaluate(batch, self.test_metrics, "test")

    def predict_step(self, batch: dict, batch_idx: int) -> list[dict]:
        return [{"qid": q, "video_id": v, "spans": s.tolist(), "scores": c.tolist()}
                for q, v, (s, c) in zip(batch["qid"], batch["video_id"], self.predict_spans(batch))]  # fmt: skip

    def on_validation_epoch_end(self) -> None:
        self._log_epoch(self.val_metrics, "val")

    def on_test_epoch_end(self) -> None:
        self._log_epoch(self.test_metrics, "test")

    def configure_optimizers(self):
        decay = [p for p in self.parameters() if p.ndim > 1]
        no_decay = [p for p in self.parameters() if p.ndim <= 1]
        optimizer = self.optim.optimizer([{"params": decay}, {"params": no_decay, "weight_decay": 0.0}])
        total = total_steps(self.trainer)
        epochs = self.trainer.max_epochs if self.trainer.max_epochs and self.trainer.max_epochs > 0 else 1
        scheduler = warmup_cosine(
            optimizer, round(self.optim.warmup_epochs * total / epochs), total, self.optim.min_lr_ratio
        )
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}
