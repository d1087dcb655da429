"""A callback for the preemption tests: it plays the scheduler, sending the requeue signal mid-training."""

from __future__ import annotations

import os
import signal

import lightning as L


class SignalAtStep(L.Callback):
    """Sends this process SIGUSR1 as training step ``step`` starts, on rank 0 only (the other ranks learn of it from
    the ranks' agreement at the step's end)."""

    def __init__(self, step: int = 3) -> None:
        self.step = step

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if trainer.global_step == self.step and trainer.is_global_zero:
            os.kill(os.getpid(), signal.SIGUSR1)
