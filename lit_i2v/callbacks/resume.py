"""What makes a run survive its interruptions: preemption (checkpoint at a step boundary, requeue, exact resume) and
the checkpoint callback whose last.ckpt follows every validation and that clears what killed writes left."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import threading

import lightning as L
import torch
from lightning.pytorch.callbacks import ModelCheckpoint


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
