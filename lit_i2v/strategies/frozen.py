"""Frozen features: the image-language model is not changed at all.

Survey (arXiv 2510.10671), "frozen features": zero-shot transfer and linear probing, the baselines every other family
is measured against (CLIP, Radford et al. 2021, section 3.1 and 3.2). With a ``LinearHead`` on ``MeanPool``-ed frame
features this is the linear probe; with a frozen ``TextClassifierHead`` it is zero-shot classification, which needs
no training at all. The backbone runs without autograd.
"""

from __future__ import annotations

from lit_i2v.strategies.base import TransferStrategy


class Frozen(TransferStrategy):
    """No backbone parameter trains; only the task's temporal module and head do."""

    def trainable(self, name: str) -> bool:
        return False
