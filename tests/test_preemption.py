"""Preemption: a run signalled mid-epoch checkpoints at the step's end, stops, and resumed with --ckpt_path=last
finishes with the weights and metrics of an uninterrupted run (one process with workers, and 2 DDP processes)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

from lit_i2v.callbacks import Preemption

from .test_cli import ROOT, last_value, metrics, tiny_overrides


def fit(synth_root, run, *extra, signal_at: int | None = None) -> subprocess.CompletedProcess:
    args = [sys.executable, "-m", "lit_i2v", "fit", *tiny_overrides(synth_root, run), "--trainer.max_epochs=2",
            "--model.init_args.head.init_args.dropout=0.5", "--trainer.log_every_n_steps=1", *extra]  # fmt: skip
    if signal_at is not None:
        config = run.parent / f"{run.name}_signal.yaml"
        config.write_text("trainer:\n  callbacks:\n    - class_path: tests.preemption_helper.SignalAtStep\n"
                          f"      init_args: {{step: {signal_at}}}\n")  # fmt: skip
        args += ["--config", str(config)]
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    return subprocess.run(args, cwd=run.parent, capture_output=True, text=True, timeout=600, env=env)


def weights(run) -> dict[str, torch.Tensor]:
    return torch.load(run / "checkpoints" / "last.ckpt", weights_only=False, map_location="cpu")["state_dict"]


@pytest.mark.parametrize(
    "extra, signal_at, stopped_at",
    [
        # 32 training videos in batches of 8: 4 steps an epoch on one process. Signalled at step 5 (the second of
        # epoch 1), the run stops at that step's end.
        (["--data.init_args.num_workers=2"], 5, 6),
        # 2 steps an epoch on each of two ranks, rank 0 signalled at step 1, the last of epoch 0: the epoch's
        # validation and checkpoints run, and the run stops before step 2.
        (["--trainer.devices=2", "--trainer.strategy=ddp"], 1, 2),
    ],
    ids=["1 process, 2 workers, mid-epoch", "2 DDP processes, last step of an epoch"],
)
def test_preempted_run_resumes_to_the_uninterrupted_result(synth_root, tmp_path, extra, signal_at, stopped_at):
    whole = tmp_path / "whole"
    done = fit(synth_root, whole, *extra, "--ckpt_path=last")  # no checkpoint yet: "last" starts afresh
    assert done.returncode == 0, done.stderr[-3000:]

    cut = tmp_path / "cut"
    first = fit(synth_root, cut, *extra, signal_at=signal_at)
    assert first.returncode == 75, first.stderr[-3000:]  # EX_TEMPFAIL: checkpoint written, run me again
    assert "preempted: checkpoint written to" in first.stderr
    saved = torch.load(cut / "checkpoints" / "last.ckpt", weights_only=False, map_location="cpu")
    assert saved["global_step"] == stopped_at and saved["epoch"] == 1
    assert "rng_states" in saved and saved["loops"]["fit_loop"]["state_dict"]["combined_loader"]
    assert not list((cut / "checkpoints").glob(".*tmp"))

    second = fit(synth_root, cut, *extra, "--ckpt_path=last")
    assert second.returncode == 0, second.stderr[-3000:]
    assert "resuming from a checkpoint that ended before the epoch ended" not in second.stderr  # the loader resumed
    expected, resumed = weights(whole), weights(cut)
    assert expected.keys() == resumed.keys()
    for name in expected:
        assert torch.allclose(expected[name], resumed[name], atol=1e-6), name
    for key in ("val/loss", "val/top1"):
        assert last_value(metrics(cut), key) == pytest.approx(last_value(metrics(whole), key), abs=1e-6)


def test_the_signal_only_sets_a_flag_until_the_step_ends():
    import signal

    callback = Preemption()

    class Trainer:  # the parts of a trainer the handler installation touches
        pass

    callback.setup(Trainer(), None, "fit")
    try:
        os.kill(os.getpid(), signal.SIGUSR1)
        assert callback.requested
    finally:
        callback.teardown(Trainer(), None, "fit")
    assert signal.getsignal(signal.SIGUSR1) is not callback._handle
