"""Task metrics computed on whole evaluation sets (retrieval ranks over the full similarity matrix)."""

from lit_i2v.metrics.retrieval import chunked_similarity, dual_softmax, retrieval_metrics

__all__ = ["chunked_similarity", "dual_softmax", "retrieval_metrics"]
