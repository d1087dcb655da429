"""What a run shows while it runs: a start-up summary of what is about to train, on what; the training throughput with
the share of time spent waiting for data; and Rich's progress bar with counts as whole numbers."""

from __future__ import annotations

import time

import lightning as L
import torch
from lightning.pytorch.callbacks import RichProgressBar
from lightning.pytorch.utilities import rank_zero_only


def _millions(n: int) -> str:
    return f"{n / 1e6:.2f}M" if n >= 1e5 else f"{n / 1e3:.1f}k"


class StartupSummary(L.Callback):
    """At the start of ``fit``/``validate``/``test`` (rank 0): task, backbone and its weights, strategy, parameters
    (total / trainable, and per part of the model), GFLOPs per view (from the run's manifest), videos per split,
    where they come from and who decodes them, batch size per device and effective, precision, devices and nodes.

    It stands in for Lightning's model summary, which the CLI turns off by default: that table puts a strategy's
    inserted modules under the backbone and prints "Total FLOPs: 0" unless the model has an example input.

    Parameters are counted in ``setup``, before the trainer's strategy wraps the model: FSDP leaves each rank only
    its shard of every parameter, so a count at the start of ``fit`` would be one rank's share."""

    _counted: list[str] | None = None

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        self._counted = self._parameters(pl_module)

    @staticmethod
    def _parameters(module: L.LightningModule) -> list[str]:
        """The parameters and parts lines: total and trainable, and per part of the model."""
        params = list(module.parameters())
        total, trainable = sum(p.numel() for p in params), sum(p.numel() for p in params if p.requires_grad)
        lines = [f"  parameters  {_millions(total)} total, {_millions(trainable)} trainable"]
        parts = []
        for name, child in module.named_children():
            counts = [(p.numel(), p.requires_grad) for p in child.parameters()]
            if counts:
                part_trainable = sum(n for n, grad in counts if grad)
                parts.append(f"{name} {_millions(sum(n for n, _ in counts))} ({_millions(part_trainable)} trainable)")
        if parts:
            lines.append(f"  parts       {', '.join(parts)}")
        return lines

    def _summary(self, trainer: L.Trainer, module: L.LightningModule, stage: str) -> str:
        backbone = getattr(module, "backbone", None)
        lines = [f"lit_i2v {stage}: {type(module).__name__}"]
        if backbone is not None:
            source = backbone.pretrained_cfg.get("source") or "random init"
            lines.append(f"  backbone    {getattr(backbone, 'arch', type(backbone).__name__)} (weights: {source})")
        strategy = getattr(module, "transfer", None)
        if strategy is not None:
            lines.append(f"  strategy    {type(strategy).__name__}({strategy.extra_repr()})")
        lines += self._counted if self._counted is not None else self._parameters(module)
        gflops = self._gflops(trainer)
        if gflops is not None:
            lines.append(f"  GFLOPs      {gflops} per view (multiply-add = 1 FLOP; manifest.json beside the logs)")
        data = trainer.datamodule
        datasets = getattr(data, "datasets", {})
        if datasets:
            counts = ", ".join(f"{split} {getattr(ds, 'num_videos', len(ds))}" for split, ds in datasets.items())
            lines.append(f"  videos      {counts}")
        if hasattr(data, "describe"):
            lines.append(f"  data        {data.describe()}")
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

    @staticmethod
    def _gflops(trainer: L.Trainer) -> float | str | None:
        from lit_i2v.manifest import LoggedConfig

        for callback in trainer.callbacks:
            if isinstance(callback, LoggedConfig) and callback.manifest is not None:
                return callback.manifest["model"].get("gflops_per_view")
        return None

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


COUNTS = ("videos", "captions", "queries", "questions", "skipped")  # logged counts: ``val/videos`` and the like


class RunProgressBar(RichProgressBar):
    """Lightning's Rich progress bar, with counts (``val/videos``, ``train/skipped``...) shown as whole numbers rather
    than as ``160.000``, and without the logger's version number (``v_num``: the run directory and W&B name the run).
    """

    def get_metrics(self, trainer, pl_module) -> dict:
        return bar_metrics(super().get_metrics(trainer, pl_module))


def bar_metrics(items: dict) -> dict:
    """``items`` for the progress bar: ``v_num`` left out, counts as text of whole numbers."""
    return {
        name: f"{value:.0f}" if name.rsplit("/", 1)[-1] in COUNTS and isinstance(value, int | float) else value
        for name, value in items.items()
        if name != "v_num"
    }


def _batch_size(batch) -> int:
    if isinstance(batch, dict):
        for key in ("video", "query", "label"):
            if key in batch:
                return len(batch[key])
    return len(batch)
