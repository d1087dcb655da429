"""Full fine-tuning: every parameter of the chosen towers trains.

Survey (arXiv 2510.10671), "modified features / full fine-tuning": ViFi-CLIP (Rasheed et al., CVPR 2023) fine-tunes
both towers with frame-averaged video embeddings and cosine logits against class prompts; ActionCLIP (Wang et al.
2021) fine-tunes with a temporal fusion module. Layer-wise learning-rate decay and no weight decay on norms, biases
and embeddings are set in the task's optimizer groups (``tasks/optim.py``), not here.

By default only the image tower trains: a text tower that no loss reaches would hold parameters without gradients,
which DDP rejects. Train it too (ViFi-CLIP) with ``towers: [visual, text]`` and a head that re-encodes the class
prompts every step; under any other head, action recognition keeps the text tower frozen whatever ``towers`` says.
"""

from __future__ import annotations

from lit_i2v.strategies.base import TransferStrategy


class FullFinetune(TransferStrategy):
    """Args: towers: which towers train (``visual``, ``text``); ``logit_scale`` (and SigLIP's ``logit_bias``)
    train with the text tower."""

    def __init__(self, towers: list[str] | None = None) -> None:
        super().__init__()
        self.towers = towers or ["visual"]
        unknown = set(self.towers) - {"visual", "text"}
        if unknown:
            raise ValueError(f"transfer.towers: unknown tower(s) {sorted(unknown)}; choose from visual, text")

    def trainable(self, name: str) -> bool:
        tower = "text" if name in ("logit_scale", "logit_bias") else name.split(".")[0]
        return tower in self.towers

    def extra_repr(self) -> str:
        return f"towers={self.towers}"
