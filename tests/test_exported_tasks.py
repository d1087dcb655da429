"""Invariants every exported task satisfies, parametrized over ``lit_i2v.tasks.__all__`` (as the strategies, heads
and temporal modules are): a new task is tested the moment it is exported, from the facts it declares beside its
code (``tiny()``, ``example_batch()``, ``monitor``)."""

from __future__ import annotations

import math
from pathlib import Path

import lightning as L
import pytest
import torch
import yaml
from torch.utils.data import DataLoader

import lit_i2v.tasks as package

ROOT = Path(__file__).resolve().parents[1]


def exported_tasks() -> dict[str, type]:
    found = {name: getattr(package, name) for name in package.__all__}
    return {
        n: c
        for n, c in found.items()
        if isinstance(c, type) and issubclass(c, L.LightningModule) and c is not package.VideoTask
    }


TASKS = exported_tasks()


def tiny(name: str) -> L.LightningModule:
    torch.manual_seed(0)
    return TASKS[name].tiny()


def loader(batches: list[dict]) -> DataLoader:
    return DataLoader(batches, batch_size=None)  # the batches as they are, one a step


def trainer(tmp_path: Path, **kwargs) -> L.Trainer:
    return L.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False, enable_checkpointing=False,
                     enable_model_summary=False, default_root_dir=tmp_path, **kwargs)  # fmt: skip


def test_the_tasks_are_found():
    assert {"ActionRecognition", "TextVideoRetrieval", "VideoQuestionAnswering", "TemporalGrounding"} <= set(TASKS)


class Gradients(L.Callback):
    """The loss of the first step, and which parameters had a gradient when the optimizer stepped."""

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx) -> None:
        self.loss = float(outputs["loss"])

    def on_before_optimizer_step(self, trainer, module, optimizer) -> None:
        self.with_grad = {n for n, p in module.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("name", sorted(TASKS))
def test_a_training_step_gives_a_finite_loss_and_gradients_only_where_parameters_train(name, tmp_path):
    task = tiny(name)
    grads = Gradients()
    trainer(tmp_path, max_steps=1, limit_val_batches=0, callbacks=[grads]).fit(task, loader([task.example_batch()]))
    frozen = {n for n, p in task.named_parameters() if not p.requires_grad}
    assert math.isfinite(grads.loss)
    assert grads.with_grad and not (grads.with_grad & frozen), sorted(grads.with_grad & frozen)[:4]


@pytest.mark.parametrize("name", sorted(TASKS))
def test_fit_logs_the_monitored_metric_and_a_reload_evaluates_the_same(name, tmp_path):
    """Two training steps and a validation on the task's own example batches: the metric that chooses the best
    checkpoint (``monitor``) is logged, and a fresh tiny task loaded from the trained state dict validates to the
    same figures (nothing the evaluation reads is left out of the checkpoint)."""
    task = tiny(name)
    torch.manual_seed(1)
    train = [task.example_batch(training=True) for _ in range(2)]
    val = [task.example_batch(training=False) for _ in range(2)]
    for k, batch in enumerate(val):
        batch["index"] = batch["index"] + k * len(batch["index"])  # one split: each video its own index
    fit = trainer(tmp_path, max_steps=2, limit_val_batches=2, num_sanity_val_steps=0)
    fit.fit(task, loader(train), loader(val))
    assert task.monitor in fit.callback_metrics and "train/loss" in fit.callback_metrics
    first = trainer(tmp_path).validate(task, loader(val), verbose=False)[0]
    reloaded = tiny(name)
    reloaded.load_state_dict(task.state_dict())
    again = trainer(tmp_path).validate(reloaded, loader(val), verbose=False)[0]
    assert first == pytest.approx(again) and task.monitor in first


@pytest.mark.parametrize("name", sorted(TASKS))
def test_each_task_ships_a_recipe(name):
    recipes = [p for p in (ROOT / "configs").rglob("*.yaml") if "trainer" not in p.parts]
    uses = [p for p in recipes if (yaml.safe_load(p.read_text()) or {}).get("model", {}).get("class_path", "")
            == f"lit_i2v.tasks.{name}"]  # fmt: skip
    assert uses, f"no recipe under configs/ uses lit_i2v.tasks.{name}"
