"""Temporal modules and task heads; they always train (unless built frozen, as the zero-shot classifier)."""

from lit_i2v.heads.classifier import Head, LinearHead, TextClassifierHead
from lit_i2v.heads.temporal import MeanPool, Temporal, TemporalTransformer

__all__ = ["Head", "LinearHead", "MeanPool", "Temporal", "TemporalTransformer", "TextClassifierHead"]
