"""Task metrics computed on whole evaluation sets (generated answers and captions against references; retrieval
ranks over the full similarity matrix; grounding spans per query; mean class accuracy from a confusion matrix)."""

from lit_i2v.metrics.answers import contains_match, exact_match, normalize_answer
from lit_i2v.metrics.captions import caption_metrics
from lit_i2v.metrics.classification import mean_class_accuracy
from lit_i2v.metrics.grounding import average_precision, query_scores, temporal_iou
from lit_i2v.metrics.retrieval import chunked_similarity, dual_softmax, retrieval_metrics

__all__ = [
    "average_precision",
    "caption_metrics",
    "chunked_similarity",
    "contains_match",
    "dual_softmax",
    "exact_match",
    "mean_class_accuracy",
    "normalize_answer",
    "query_scores",
    "retrieval_metrics",
    "temporal_iou",
]
