"""Callbacks every run gets from the CLI: a start-up summary that says what is about to train, on what; the
training throughput with the share of time spent waiting for data; and preemption handling (checkpoint, requeue,
exact resume)."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import threading
import time

import lightning as L
import torch
from lightning.pytorch.callbacks import ModelCheckpoint, RichProgressBar
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
        strategy = getattr(module, "strategy", None)
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


class Preempted(Exception):
    """Raised on every rank once a preempted run's checkpoint is written; ``python -m lit_i2v`` then exits with 75
    (``EX_TEMPFAIL``: run me again), or 0 when Slurm has requeued the job."""

    def __init__(self, path: str, requeued: bool) -> None:
        super().__init__(f"preempted: checkpoint written to {path}" + ("; job requeued" if requeued else ""))
        self.path, self.requeued = path, requeued


class Preemption(L.Callback):
    """Checkpoint at the first step boundary after a requeue signal, requeue under Slurm, stop; resume exactly.

    A signal handler only sets a flag (saving inside a handler could catch a rank mid-step or mid-collective); at the
    end of each training step the ranks agree whether any of them was signalled, and if so all write one checkpoint
    (atomically, as ``checkpoints/last.ckpt``, which ``--ckpt_path=last`` resumes from), rank 0 runs ``scontrol
    requeue`` under Slurm, and the run stops. Signalled during an epoch's last step, the run first completes that
    epoch's validation and checkpoints and stops before the next step, so the signal's lead time (90 s in the shipped
    sbatch scripts) must cover a validation pass. Checkpoints also carry the random generators' states (torch, CUDA,
    Python, NumPy), restored just before the first resumed step; with the loader's position (``EpochLoader``) and the
    per-sample augmentation seeds, the resumed run continues exactly as an uninterrupted one.

    Args:
        signals: the signals that ask for it (Slurm's ``--signal=USR1@90`` in the shipped sbatch scripts).
        requeue: under Slurm, requeue the job once the checkpoint is written.
    """

    def __init__(self, signals: tuple[str, ...] = ("SIGUSR1",), requeue: bool = True) -> None:
        self.signals, self.requeue = tuple(signals), requeue
        self.requested = self._stop_before_next_step = False
        self._previous: dict = {}
        self._rng_to_restore: dict | None = None

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if stage != "fit" or threading.current_thread() is not threading.main_thread():
            return
        self.requested = False
        for name in self.signals:
            number = getattr(signal, name)
            self._previous[number] = signal.signal(number, self._handle)

    def teardown(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        for number, handler in self._previous.items():
            signal.signal(number, handler)
        self._previous = {}

    def _handle(self, signum: int, frame) -> None:
        self.requested = True

    def checkpoint_path(self, trainer: L.Trainer) -> str:
        callback = trainer.checkpoint_callback
        folder = callback.dirpath if callback is not None and callback.dirpath else None
        return os.path.join(folder or os.path.join(trainer.default_root_dir, "checkpoints"), "last.ckpt")

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if self._stop_before_next_step:
            self._stop(trainer)
        if self._rng_to_restore is not None:
            _set_rng_states(self._rng_to_restore)
            self._rng_to_restore = None

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if not trainer.strategy.reduce_boolean_decision(self.requested, all=False):
            return
        if batch_idx + 1 >= trainer.num_training_batches:
            # The epoch's last step: its validation and epoch-end checkpoints come next, and a checkpoint taken now
            # would resume into the next epoch without them. Stop before the next step instead (none: the fit ends).
            self._stop_before_next_step = True
            return
        self._stop(trainer)

    def _stop(self, trainer: L.Trainer) -> None:
        path = self.checkpoint_path(trainer)
        if isinstance(trainer.checkpoint_callback, ModelCheckpoint):
            trainer.checkpoint_callback.last_model_path = path  # its state then names this file as "last"
        trainer.save_checkpoint(path)
        array = os.environ.get("SLURM_ARRAY_JOB_ID")
        job = f"{array}_{os.environ.get('SLURM_ARRAY_TASK_ID')}" if array else os.environ.get("SLURM_JOB_ID")
        if self.requeue and job and trainer.is_global_zero:
            done = subprocess.run(["scontrol", "requeue", job], check=False, capture_output=True, text=True)
            if done.returncode:
                raise RuntimeError(f"scontrol requeue {job} failed: {done.stderr.strip()}; resume from {path}")
        raise Preempted(path, requeued=bool(self.requeue and job))

    def on_save_checkpoint(self, trainer, pl_module, checkpoint: dict) -> None:
        checkpoint["rng_states"] = _get_rng_states()

    def on_load_checkpoint(self, trainer, pl_module, checkpoint: dict) -> None:
        self._rng_to_restore = checkpoint.get("rng_states")


def _get_rng_states() -> dict:
    """The generators' states in types a ``weights_only`` checkpoint load accepts (tensors, ints, tuples)."""
    import numpy as np

    kind, keys, position, has_gauss, cached = np.random.get_state()
    numpy_state = (kind, torch.from_numpy(keys.astype(np.int64)), int(position), int(has_gauss), float(cached))
    states = {"torch": torch.get_rng_state(), "python": random.getstate(), "numpy": numpy_state}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def _set_rng_states(states: dict) -> None:
    import numpy as np

    torch.set_rng_state(states["torch"])
    random.setstate(states["python"])
    kind, keys, position, has_gauss, cached = states["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), position, has_gauss, cached))
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])


class Checkpoint(ModelCheckpoint):
    """Lightning's ``ModelCheckpoint`` whose ``last.ckpt`` follows every validation, and which clears what killed
    writes left.

    Lightning 2.6 refreshes ``last.ckpt`` only when a top-k checkpoint was saved at the same step, so once the
    monitored metric stops improving, "last" silently stays at the best epoch and a resumed run would repeat epochs.
    At the start of ``fit``, rank 0 deletes the temporary files of checkpoint writes that were killed
    (``checkpoint_io.remove_orphans``: each is as large as a checkpoint). The CLI turns Lightning's version counter
    off, so a run restarted afresh in the same folder overwrites ``best-000-000010.ckpt`` rather than adding
    ``best-000-000010-v1.ckpt`` beside it at every restart.
    """

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        super().setup(trainer, pl_module, stage)
        if stage == "fit" and trainer.is_global_zero and self.dirpath and os.path.isdir(self.dirpath):
            from lit_i2v.tasks.checkpoint_io import remove_orphans

            remove_orphans(self.dirpath)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        super().on_train_epoch_end(trainer, pl_module)
        if self._should_save_on_train_epoch_end(trainer):
            self._refresh_last(trainer)

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        super().on_validation_end(trainer, pl_module)
        if not self._should_save_on_train_epoch_end(trainer):
            self._refresh_last(trainer)

    def _refresh_last(self, trainer: L.Trainer) -> None:
        if self.save_last and not self._should_skip_saving_checkpoint(trainer):  # skipped if saved at this step
            self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))
