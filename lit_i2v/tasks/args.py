"""The arguments every task shares, grouped by what they govern (as litgpt's ``TrainArgs``): a task's constructor
takes them as two values, ``optim`` and ``runtime``, rather than repeating nine arguments and passing them on by
position (where a reordering would silently swap two floats).

In a recipe::

    model:
      init_args:
        optim:
          optimizer: {class_path: torch.optim.AdamW, init_args: {lr: 3.0e-4, weight_decay: 0.05}}
          warmup_epochs: 2
          layer_decay: 0.75
        runtime: {compile: true, trainable_only_checkpoints: true}
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from lightning.pytorch.cli import OptimizerCallable

from lit_i2v.errors import ConfigError


@dataclass
class Optimization:
    """How the trainable parameters are optimised.

    Args:
        optimizer: optimizer class and its arguments (``class_path: torch.optim.AdamW``, ``init_args: {lr: ...}``).
        layer_decay: layer-wise lr decay over the image tower's blocks (1.0 for none).
        warmup_epochs: linear warm-up length in epochs (fractions allowed).
        min_lr_ratio: final lr of the cosine schedule as a fraction of the peak.
        new_lr_scale: lr factor of the parameters not loaded from pretrained weights (strategy modules, temporal
            module, head) over the pretrained ones' (X-CLIP: 10).
    """

    optimizer: OptimizerCallable = torch.optim.AdamW
    layer_decay: float = 1.0
    warmup_epochs: float = 0.0
    min_lr_ratio: float = 0.0
    new_lr_scale: float = 1.0

    def __post_init__(self) -> None:
        checks = [
            ("layer_decay", 0 < self.layer_decay <= 1, "in (0, 1]"),
            ("warmup_epochs", self.warmup_epochs >= 0, "at least 0"),
            ("min_lr_ratio", 0 <= self.min_lr_ratio <= 1, "in [0, 1]"),
            ("new_lr_scale", self.new_lr_scale > 0, "positive"),
        ]
        for key, ok, expected in checks:
            if not ok:
                raise ConfigError(f"model.init_args.optim.{key}: must be {expected}, got {getattr(self, key)}")


@dataclass
class Runtime:
    """How a task runs, rather than what it learns.

    Args:
        compile: ``torch.compile`` the image tower in place (parameter names unchanged): True for inductor, or a
            backend name.
        trainable_only_checkpoints: checkpoints hold only what trains (adapters and head: megabytes instead of the
            whole backbone); loading one needs the pretrained weights from ``backbone.pretrained``.
    """

    compile: bool | str = False
    trainable_only_checkpoints: bool = False
