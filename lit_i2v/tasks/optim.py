"""Optimizer parameter groups and the learning-rate schedule shared by every task.

Groups: layer-wise learning-rate decay (BEiT, Bao et al. 2022; used for CLIP fine-tuning), where the parameters of
image-tower layer ``i`` of ``L`` get ``lr * decay ** (L + 1 - i)``, and no weight decay on norms, biases and
embeddings (ndim <= 1, or listed by a module's ``no_weight_decay()``), and optionally a separate lr for new modules
(X-CLIP: 10x for what is not pretrained). Schedule: linear warm-up then cosine decay,
stepped per optimizer step.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable

from torch import nn
from torch.optim.lr_scheduler import LambdaLR


def param_groups(
    named_params: Iterable[tuple[str, nn.Parameter]],
    layer_id: Callable[[str], int],
    num_layers: int,
    layer_decay: float = 1.0,
    no_decay: set[str] = frozenset(),
    lr_scale: Callable[[str], float] = lambda name: 1.0,
) -> list[dict]:
    """Trainable parameters grouped by (layer, decay?), each group with an ``lr_scale`` and maybe ``weight_decay=0``.

    Args:
        named_params: ``(name, parameter)`` pairs; frozen ones are skipped.
        layer_id: layer of a parameter name, 0 (embeddings) to ``num_layers + 1`` (head and everything after).
        num_layers: depth L of the tower the decay runs over.
        layer_decay: 1.0 for none.
        no_decay: full names exempt from weight decay besides ndim <= 1 parameters.
        lr_scale: a further lr factor per name (new modules at a multiple of the pretrained ones' lr).
    """
    groups: dict[tuple[int, bool, float], dict] = {}
    for name, param in named_params:
        if not param.requires_grad:
            continue
        decay = param.ndim > 1 and name not in no_decay
        layer, scale = layer_id(name), lr_scale(name)
        group = groups.setdefault(
            (layer, decay, scale),
            {"params": [], "names": [], "lr_scale": scale * layer_decay ** (num_layers + 1 - layer)},
        )
        if not decay:
            group["weight_decay"] = 0.0
        group["params"].append(param)
        group["names"].append(name)
    return [groups[k] for k in sorted(groups)]


def warmup_cosine(optimizer, warmup_steps: int, total_steps: int, min_lr_ratio: float = 0.0) -> LambdaLR:
    """Multiply each group's lr by a factor rising linearly to 1 over ``warmup_steps``, then a cosine to
    ``min_lr_ratio`` at ``total_steps``."""

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = min((step - warmup_steps) / max(total_steps - warmup_steps, 1), 1.0)
        return min_lr_ratio + (1 - min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))

    return LambdaLR(optimizer, factor)


def total_steps(trainer) -> int:
    """Optimizer steps of the whole fit, as Lightning's ``estimated_stepping_batches`` counts them, without it.

    That property builds and starts iterating the training loader before a checkpoint's loop and loader states are
    restored, so a run resumed part-way into an epoch would iterate the epoch from its start; this asks the
    DataModule's loader for its length instead (no iteration).
    """
    if trainer.max_steps is not None and trainer.max_steps > 0:
        return trainer.max_steps
    datamodule = trainer.datamodule
    if datamodule is None:
        return int(trainer.estimated_stepping_batches)
    batches = len(datamodule.train_dataloader())
    limit = trainer.limit_train_batches
    if isinstance(limit, int):
        batches = min(batches, limit)
    elif limit is not None:
        batches = int(batches * limit)
    per_epoch = max(math.ceil(batches / trainer.accumulate_grad_batches), 1)
    epochs = trainer.max_epochs if trainer.max_epochs is not None and trainer.max_epochs > 0 else 1
    return per_epoch * epochs
