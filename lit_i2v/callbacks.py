"""Callbacks every run gets from the CLI: a start-up summary that says what is about to train, on what."""

from __future__ import annotations

import lightning as L
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
