"""Partial tuning: only a chosen subset of the pretrained parameters trains.

Survey (arXiv 2510.10671), "modified features / partial tuning" (e.g. mPLUG-2's partially tuned towers). Three
classic subsets, combinable: the last k blocks of the image tower (with the final norm and projection), the
LayerNorm parameters only, and the bias terms only (BitFit: Ben Zaken et al., ACL 2022). No parameter is added.
"""

from __future__ import annotations

import re

from lit_i2v.backbones import CLIP
from lit_i2v.strategies.base import TransferStrategy


class PartialFinetune(TransferStrategy):
    """Args:
    last_blocks: train the last k image-tower blocks and everything after them (final norm, projection).
    norms: train every LayerNorm of the image tower.
    biases: train every bias of the image tower (BitFit).
    """

    @classmethod
    def tiny(cls) -> PartialFinetune:
        return cls(last_blocks=1)

    def __init__(self, last_blocks: int = 0, norms: bool = False, biases: bool = False) -> None:
        super().__init__()
        if not (last_blocks or norms or biases):
            raise ValueError("transfer: choose at least one of last_blocks > 0, norms: true, biases: true")
        self.last_blocks, self.norms, self.biases = last_blocks, norms, biases
        self.depth = 0

    def apply(self, backbone: CLIP) -> None:
        self.depth = len(backbone.visual.blocks)
        if self.last_blocks > self.depth:
            raise ValueError(f"transfer.last_blocks is {self.last_blocks} but the image tower has {self.depth} blocks")

    def trainable(self, name: str) -> bool:
        if not name.startswith("visual."):
            return False
        if self.biases and name.endswith(".bias"):
            return True
        if self.norms and re.search(r"(^|\.)(norm\d?|norm_pre)\.", name.removeprefix("visual.")):
            return True
        if self.last_blocks:
            block = re.match(r"visual\.blocks\.(\d+)\.", name)
            if block:
                return int(block.group(1)) >= self.depth - self.last_blocks
            return name.startswith(("visual.norm.", "visual.head."))
        return False

    def extra_repr(self) -> str:
        return f"last_blocks={self.last_blocks}, norms={self.norms}, biases={self.biases}"
