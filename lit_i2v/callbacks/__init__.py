"""Callbacks every run gets from the CLI: what a run shows (``display``: start-up summary, throughput, progress
bar) and what makes it survive interruptions (``resume``: preemption with exact resume, checkpoints)."""

from lit_i2v.callbacks.display import COUNTS, RunProgressBar, StartupSummary, Throughput, bar_metrics
from lit_i2v.callbacks.resume import Checkpoint, Preempted, Preemption

__all__ = [
    "COUNTS",
    "Checkpoint",
    "Preempted",
    "Preemption",
    "RunProgressBar",
    "StartupSummary",
    "Throughput",
    "bar_metrics",
]
