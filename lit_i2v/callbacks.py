"""Callbacks every run gets from the CLI: a start-up summary that says what is about to train, on what, and the
training throughput with the share of time spent waiting for data."""

from __future__ import annotations

import time

import lightning as L
import torch
from lightning.pytorch.utilities import rank_zero_only


def _millions(n: int) -> str:
    return f"{n / 1e6:.2f}M" if n >= 1e5 else f"{n / 1e3:.1f}k"


class StartupSummary(L.Callback):
    """At the start of ``fit``/``validate``/``test`` (rank 0): task, backbone and its weights, strategy, parameters
    (total / trainable), videos per split, batch size per device and effective, precision, devices and nodes."""

    def _summary(self, trainer: L.Trainer, module: L.LightningModule, stage: str) -> str:
        params = list(module.parameters())
        total, trainable = sum(p.numel() for p in params), sum(p.numel() for p in params if p.requires_grad)
        backbone = getattr(module, "backbone", None)
        lines = [f"lit_i2v {stage}: {type(module).__name__}"]
        if backbone is not None:
            source = backbone.pretrained_cfg.get("source") or "random init"
            lines.append(f"  backbone    {getattr(backbone, 'arch', type(backbone).__name__)} (weights: {source})")
        strategy = getattr(module, "strategy", None)
        if strategy is not None:
            lines.append(f"  strategy    {type(strategy).__name__}({strategy.extra_repr()})")
        lines.append(f"  parameters  {_millions(total)} total, {_millions(trainable)} trainable")
        data = trainer.datamodule
        datasets = getattr(data, "datasets", {})
        if datasets:
            counts = ", ".join(f"{split} {getattr(ds, 'num_videos', len(ds))}" for split, ds in datasets.items())
            lines.append(f"  videos      {counts}")
        batch = getattr(data, "batch_size", None)
        if batch and stage == "fit":
            devices, nodes = trainer.num_devices, trainer.num_nodes
            effective = batch * devices * nodes * trainer.accumulate_grad_batches
            lines.append(
                f"  batch       {batch} per device x {devices} device(s) x {nodes} node(s) x "
                f"{trainer.accumulate_grad_batches} accumulated = {effective} clips per step"
            )
        lines.append(
            f"  precision   {trainer.precision}, {trainer.num_devices} {type(trainer.accelerator).__name__} device(s)"
            f" per node, {trainer.num_nodes} node(s), {type(trainer.strategy).__name__}"
        )
        return "\n".join(lines)

    @rank_zero_only
    def _print(self, trainer: L.Trainer, module: L.LightningModule, stage: str) -> None:
        print(self._summary(trainer, module, stage), flush=True)

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._print(trainer, pl_module, "fit")

    def on_validation_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.state.fn == "validate":
            self._print(trainer, pl_module, "validate")

    def on_test_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._print(trainer, pl_module, "test")


class Throughput(L.Callback):
    """Training clips per second and the share of time spent waiting for data, on the progress bar and in the logs
    (``perf/clips_per_s``: this device's clips over wall time; ``perf/data_wait``: the share of that time between one
    step's end and the next batch's arrival, which is the input pipeline's doing when it is large).

    Args:
        window: optimizer steps averaged over.
        sync_cuda: wait for the GPU at each step's end so that its time is counted as compute, not as data wait.
    """

    def __init__(self, window: int = 20, sync_cuda: bool = True) -> None:
        self.window, self.sync_cuda = window, sync_cuda
        self._reset()

    def _reset(self) -> None:
        self._wait = self._busy = 0.0
        self._clips = self._steps = 0
        self._last_end: float | None = None

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # The first batch of an epoch waits for validation to end and workers to start: not a steady-state figure,
        # so it is left out; the window itself runs on across epochs (short epochs still report).
        self._last_end = None

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        now = time.perf_counter()
        if self._last_end is not None:
            self._wait += now - self._last_end
        self._start = now

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if self.sync_cuda and torch.cuda.is_available() and pl_module.device.type == "cuda":
            torch.cuda.synchronize(pl_module.device)
        now = time.perf_counter()
        if self._last_end is not None:  # count steps after the first, whose wait is known
            self._busy += now - self._start
            self._clips += _batch_size(batch)
            self._steps += 1
        self._last_end = now
        if self._steps >= self.window:
            total = self._wait + self._busy
            pl_module.log("perf/clips_per_s", self._clips / total, prog_bar=True, rank_zero_only=True)
            pl_module.log("perf/data_wait", self._wait / total, prog_bar=True, rank_zero_only=True)
            self._wait = self._busy = 0.0
            self._clips = self._steps = 0


def _batch_size(batch) -> int:
    if isinstance(batch, dict):
        for key in ("video", "query", "label"):
            if key in batch:
                return len(batch[key])
    return len(batch)
