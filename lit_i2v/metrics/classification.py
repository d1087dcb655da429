"""Classification metrics that torchmetrics does not compute the way the video papers' code does.

Mean class accuracy as mmaction2 reports it beside top-1/top-5 (``mmaction/evaluation/functional/accuracy.py``,
``mean_class_accuracy``): the accuracy of each class (hits over the videos of that class), averaged over the classes
that occur in the labels *or* the predictions. A class that is predicted but has no video scores 0 and counts; a
class that neither occurs nor is predicted does not count.
"""

from __future__ import annotations

from torch import Tensor


def mean_class_accuracy(confusion: Tensor) -> float:
    """``confusion[true, predicted]`` counts ``(K, K)`` (torchmetrics' layout) → mean class accuracy in [0, 1]."""
    confusion = confusion.double()
    videos = confusion.sum(1)  # per true class
    occurring = (videos > 0) | (confusion.sum(0) > 0)
    if not occurring.any():
        return float("nan")
    per_class = confusion.diagonal() / videos.clamp_min(1)  # 0 for a class that is only predicted
    return float(per_class[occurring].mean())
