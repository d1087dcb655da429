"""Temporal grounding metrics: R1@IoU and mIoU (Charades-STA), mAP@IoU 0.5:0.95 (QVHighlights).

Spans are ``(start, end)`` in seconds. Per query, with ranked predicted spans and one or more ground-truth windows:

- **R1@t**: 1 if the top-ranked prediction overlaps some ground-truth window with IoU >= t, else 0;
- **IoU** (mIoU when averaged): the top prediction's best IoU with the ground truth;
- **AP@t**: the average precision of the ranked predictions, a ground-truth window matched at most once (by the
  highest-ranked prediction that reaches IoU t with it, as ActivityNet/QVHighlights evaluation does), precision
  interpolated to be non-increasing in recall and integrated over recall; 0 with no prediction.

The per-query functions return plain floats so that tasks sum them over ranks (every query counted once) and divide
by the number of queries.
"""

from __future__ import annotations

import torch
from torch import Tensor

IOU_THRESHOLDS = (0.3, 0.5, 0.7)
MAP_THRESHOLDS = tuple(round(0.5 + 0.05 * i, 2) for i in range(10))  # 0.5, 0.55, ..., 0.95


def temporal_iou(a: Tensor, b: Tensor) -> Tensor:
    """IoU of every span of ``a`` (N, 2) with every span of ``b`` (M, 2) → (N, M); empty spans have IoU 0."""
    a, b = a.double(), b.double()
    inter = (torch.minimum(a[:, None, 1], b[None, :, 1]) - torch.maximum(a[:, None, 0], b[None, :, 0])).clamp(min=0)
    union = (a[:, 1] - a[:, 0])[:, None] + (b[:, 1] - b[:, 0])[None, :] - inter
    return torch.where(union > 0, inter / union.clamp(min=1e-12), torch.zeros_like(union))


def average_precision(predictions: Tensor, ground_truth: Tensor, threshold: float) -> float:
    """AP of ranked ``predictions`` (N, 2), best first, against ``ground_truth`` windows (M, 2) at IoU ``threshold``."""
    if len(predictions) == 0 or len(ground_truth) == 0:
        return 0.0
    iou = temporal_iou(predictions, ground_truth)
    matched = torch.zeros(len(ground_truth), dtype=torch.bool)
    hits = torch.zeros(len(predictions))
    for i in range(len(predictions)):
        candidates = (iou[i] >= threshold) & ~matched
        if candidates.any():
            j = int(torch.where(candidates, iou[i], torch.full_like(iou[i], -1)).argmax())
            matched[j] = True
            hits[i] = 1
    tp = hits.cumsum(0)
    precision = tp / torch.arange(1, len(predictions) + 1)
    recall = tp / len(ground_truth)
    # Interpolate: precision at recall r is the best precision at any recall >= r; integrate over recall steps.
    precision = torch.cat([torch.zeros(1), precision, torch.zeros(1)])
    recall = torch.cat([torch.zeros(1), recall, torch.ones(1)])
    for i in range(len(precision) - 2, -1, -1):
        precision[i] = max(precision[i], precision[i + 1])
    steps = torch.nonzero(recall[1:] != recall[:-1]).flatten() + 1
    return float(((recall[steps] - recall[steps - 1]) * precision[steps]).sum())


def query_scores(predictions: Tensor, ground_truth: Tensor) -> dict[str, float]:
    """Every metric of one query: ``R1@0.3/0.5/0.7``, ``IoU`` (for mIoU), ``mAP`` (over 0.5:0.95), ``mAP@0.5``,
    ``mAP@0.75``. ``predictions`` (N, 2) ranked best first (N may be 0), ``ground_truth`` (M >= 1, 2)."""
    if len(predictions):
        top = temporal_iou(predictions[:1], ground_truth).max().item()
    else:
        top = 0.0
    scores = {f"R1@{t}": float(top >= t) for t in IOU_THRESHOLDS}
    scores["IoU"] = top
    aps = {t: average_precision(predictions, ground_truth, t) for t in MAP_THRESHOLDS}
    scores["mAP"] = sum(aps.values()) / len(aps)
    scores["mAP@0.5"], scores["mAP@0.75"] = aps[0.5], aps[0.75]
    return scores
