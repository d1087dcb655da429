"""Slurm launch, against a real one-node Slurm started here (munged, slurmctld, slurmd as root), not a mock.

Each job runs two CPU tasks (gloo DDP) of the tiny quickstart; Lightning must take ranks from Slurm, so each rank
initialises once and every validation video counts once. Skipped, with the reason, where Slurm cannot run.
"""

from __future__ import annotations

import re

import pytest

from lit_i2v.cli import main
from tests.slurm_cluster import LocalSlurm, unavailable
from tests.test_cli import ROOT, last_value, metrics, tiny_overrides


@pytest.fixture(scope="module")
def slurm(tmp_path_factory):
    reason = unavailable()
    if reason:
        pytest.skip(reason)
    cluster = LocalSlurm(tmp_path_factory.mktemp("slurm")).start()
    yield cluster
    cluster.stop()


def job_overrides(synth_root, run_dir) -> list[str]:
    overrides = tiny_overrides(synth_root, run_dir)
    assert overrides[0] == "--config"
    return overrides[2:]  # the quickstart config itself is given by the launcher


def check_two_rank_run(log: str, run_dir) -> None:
    assert log.count("Initializing distributed: GLOBAL_RANK:") == 2, log[-3000:]  # ranks from Slurm, not spawned
    assert "MEMBER: 2/2" in log, log[-3000:]
    assert last_value(metrics(run_dir), "val/videos") == 16  # the fixture's 16 validation videos, once each
    assert (run_dir / "checkpoints" / "last.ckpt").is_file()


def test_submit_dry_run_prints_a_requeueable_one_task_per_gpu_script(capsys):
    config = str(ROOT / "configs" / "quickstart.yaml")
    args = ["submit", "--config", config, "--nodes", "2", "--gpus-per-node", "4", "--partition", "gpu"]
    assert main([*args, "--time", "24:00:00", "--dry-run", "--", "--trainer.max_epochs=3"]) == 0
    script = capsys.readouterr().out
    for line in ("#SBATCH --nodes=2", "#SBATCH --ntasks-per-node=4", "#SBATCH --gpus-per-node=4",
                 "#SBATCH --partition=gpu", "#SBATCH --time=24:00:00", "#SBATCH --signal=SIGUSR1@90",
                 "#SBATCH --requeue"):  # fmt: skip
        assert line in script.splitlines(), line
    srun = script.splitlines()[-1]
    assert srun.startswith("srun ") and f"--config {config}" in srun
    assert "--trainer.num_nodes=2 --trainer.devices=4 --trainer.accelerator=gpu --trainer.max_epochs=3" in srun
    assert main(["submit", "--config", config, "--gpus-per-node", "4", "--tasks-per-node", "2", "--dry-run"]) == 2
    assert "one task per GPU" in capsys.readouterr().err
    assert main(["submit", "--config", "nope.yaml", "--dry-run"]) == 2
    assert "--config nope.yaml does not exist" in capsys.readouterr().err


def test_submit_runs_two_task_ddp_on_slurm(slurm, tmp_path, synth_root, monkeypatch, capsys):
    monkeypatch.setenv("SLURM_CONF", str(slurm.conf))
    monkeypatch.chdir(tmp_path)
    run_dir = tmp_path / "run"
    args = ["submit", "--config", str(ROOT / "configs" / "quickstart.yaml"), "--gpus-per-node", "0",
            "--tasks-per-node", "2", "--cpus-per-task", "1", "--log-dir", str(tmp_path / "logs"), "--",
            *job_overrides(synth_root, run_dir)]  # fmt: skip
    assert main(args) == 0
    job = re.search(r"submitted job (\d+)", capsys.readouterr().out).group(1)
    slurm.wait(job)
    log = (tmp_path / "logs" / f"quickstart-{job}.out").read_text()
    check_two_rank_run(log, run_dir)


def test_shipped_sbatch_script_runs_on_slurm(slurm, tmp_path, synth_root):
    """launch/slurm/single_node.sbatch, its GPU defaults overridden on sbatch's command line for 2 CPU tasks."""
    run_dir = tmp_path / "run"
    done = slurm.run(
        "sbatch", "--parsable", "--gpus-per-node=0", "--ntasks-per-node=2", "--cpus-per-task=1",
        f"--chdir={tmp_path}", str(ROOT / "launch" / "slurm" / "single_node.sbatch"),
        str(ROOT / "configs" / "quickstart.yaml"), *job_overrides(synth_root, run_dir),
        "--trainer.accelerator=cpu", "--trainer.strategy=ddp",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    job = done.stdout.strip().split(";")[0]
    slurm.wait(job)
    log = (tmp_path / f"lit_i2v-{job}.out").read_text()
    check_two_rank_run(log, run_dir)


def test_requeue_signal_checkpoints_requeues_and_the_job_ends_as_an_uninterrupted_one(slurm, tmp_path, synth_root):
    """Through the shipped sbatch script (2 CPU tasks, 2 steps an epoch each, 2 epochs): rank 0 gets SIGUSR1 at the
    first step of epoch 1; the job checkpoints at that step's end, runs `scontrol requeue`, is started again by Slurm
    and resumes from last.ckpt; its final weights and metrics equal those of the same job left alone."""
    import torch

    def submit(run_dir, *extra):
        done = slurm.run(
            "sbatch", "--parsable", "--gpus-per-node=0", "--ntasks-per-node=2", "--cpus-per-task=1",
            f"--chdir={tmp_path}", f"--export=ALL,PYTHONPATH={ROOT}",
            str(ROOT / "launch" / "slurm" / "single_node.sbatch"), str(ROOT / "configs" / "quickstart.yaml"),
            *job_overrides(synth_root, run_dir), "--trainer.max_epochs=2", "--trainer.accelerator=cpu",
            "--trainer.strategy=ddp", *extra,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        job = done.stdout.strip().split(";")[0]
        slurm.wait(job)
        return (tmp_path / f"lit_i2v-{job}.out").read_text(), slurm.run("scontrol", "show", "job", job).stdout

    signal = tmp_path / "signal.yaml"
    signal.write_text("trainer:\n  callbacks:\n    - class_path: tests.preemption_helper.SignalAtStep\n"
                      "      init_args: {step: 2}\n")  # fmt: skip
    log, _ = submit(tmp_path / "cut", "--config", str(signal))
    assert "preempted: checkpoint written to" in log and "job requeued" in log, log[-3000:]
    assert log.count("Initializing distributed: GLOBAL_RANK:") == 4, log[-3000:]  # two ranks, twice
    whole_log, _ = submit(tmp_path / "whole")
    assert "preempted" not in whole_log
    cut, whole = (torch.load(tmp_path / r / "checkpoints" / "last.ckpt", weights_only=False, map_location="cpu")
                  for r in ("cut", "whole"))  # fmt: skip
    assert cut["global_step"] == whole["global_step"] == 4
    for name, value in whole["state_dict"].items():
        assert torch.allclose(cut["state_dict"][name], value, atol=1e-6), name
    assert last_value(metrics(tmp_path / "cut"), "val/loss") == pytest.approx(
        last_value(metrics(tmp_path / "whole"), "val/loss"), abs=1e-6
    )
