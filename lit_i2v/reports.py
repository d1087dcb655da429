"""Evaluation reports beside the scalar metrics: per-class accuracy, the confusion matrix and sample clips with their
predictions, written under ``<log dir>/evaluation/`` and, for W&B loggers, logged as tables and images.

Files (rank 0, each evaluation): ``<stage>-epoch<NNN>-per-class.csv`` (class, videos, correct, accuracy),
``<stage>-epoch<NNN>-confusion.csv`` (rows: true class, columns: predicted), ``<stage>-epoch<NNN>-confusion.png``
(rows normalised, white = all of a class's videos) and ``<stage>-epoch<NNN>-samples.png`` (a few clips, one frame
strip a clip; the captions are in ``-samples.csv``).
"""

from __future__ import annotations

import csv
from pathlib import Path

import lightning as L
import torch
from torch import Tensor

from lit_i2v.data.video.images import write_png


def log_dir(trainer: L.Trainer) -> Path:
    """The trainer's log folder as ``trainer.log_dir`` names it, without its broadcast: code that runs on rank 0
    alone must not enter a collective the other ranks never join."""
    from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger

    if not trainer.loggers:
        return Path(trainer.default_root_dir)
    first = trainer.loggers[0]
    folder = first.log_dir if isinstance(first, CSVLogger | TensorBoardLogger) else first.save_dir
    return Path(folder or trainer.default_root_dir)


def _folder(trainer: L.Trainer) -> Path:
    folder = log_dir(trainer) / "evaluation"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _wandb_loggers(trainer: L.Trainer) -> list:
    from lightning.pytorch.loggers import WandbLogger

    return [logger for logger in trainer.loggers if isinstance(logger, WandbLogger)]


def confusion_image(matrix: Tensor, min_side: int = 256) -> Tensor:
    """A ``(1, S, S)`` uint8 picture of a confusion matrix with rows normalised, each cell a square of pixels."""
    rows = matrix.float() / matrix.sum(1, keepdim=True).clamp_min(1)
    scale = max(1, min_side // max(matrix.shape[0], 1))
    image = (rows * 255).round().to(torch.uint8).repeat_interleave(scale, 0).repeat_interleave(scale, 1)
    return image[None]


def report_confusion(trainer: L.Trainer, stage: str, matrix: Tensor, class_names: list[str] | None) -> dict:
    """Write (and log to W&B) the per-class accuracy and the confusion matrix; returns the per-class accuracy."""
    matrix = matrix.cpu().long()
    names = class_names or [str(i) for i in range(matrix.shape[0])]
    videos, correct = matrix.sum(1), matrix.diag()
    per_class = {name: (int(n), int(c), float(c) / int(n) if n else None)
                 for name, n, c in zip(names, videos, correct, strict=True)}  # fmt: skip
    prefix = _folder(trainer) / f"{stage}-epoch{trainer.current_epoch:03d}"
    with open(f"{prefix}-per-class.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["class", "videos", "correct", "accuracy"])
        writer.writerows([name, n, c, "" if a is None else round(a, 4)] for name, (n, c, a) in per_class.items())
    with open(f"{prefix}-confusion.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["true \\ predicted", *names])
        writer.writerows([name, *row.tolist()] for name, row in zip(names, matrix, strict=True))
    image = confusion_image(matrix)
    write_png(image, f"{prefix}-confusion.png")
    for logger in _wandb_loggers(trainer):
        rows = [[name, n, c, a] for name, (n, c, a) in per_class.items()]
        logger.log_table(f"{stage}/per_class", columns=["class", "videos", "correct", "accuracy"], data=rows,
                         step=trainer.global_step)  # fmt: skip
        logger.log_image(f"{stage}/confusion", [image[0].numpy()], step=trainer.global_step,
                         caption=["rows: true class, columns: predicted, normalised per row"])  # fmt: skip
    return per_class


def report_samples(
    trainer: L.Trainer, stage: str, clips: Tensor, truth: list[str], predicted: list[tuple[str, float]]
) -> None:
    """A strip of frames a clip (uint8 ``(N, T, 3, H, W)``), captioned with the true and predicted classes."""
    if len(clips) == 0:
        return
    strips = clips.permute(0, 2, 3, 1, 4).flatten(3, 4)  # (N, 3, H, T*W)
    prefix = _folder(trainer) / f"{stage}-epoch{trainer.current_epoch:03d}"
    write_png(torch.cat(list(strips), dim=1).contiguous(), f"{prefix}-samples.png")  # clips stacked vertically
    captions = [f"true: {t} | predicted: {p} ({q:.2f})" for t, (p, q) in zip(truth, predicted, strict=True)]
    with open(f"{prefix}-samples.csv", "w", newline="") as f:
        csv.writer(f).writerows([[c] for c in captions])
    for logger in _wandb_loggers(trainer):
        logger.log_image(f"{stage}/samples", [s.permute(1, 2, 0).numpy() for s in strips], step=trainer.global_step,
                         caption=captions)  # fmt: skip
