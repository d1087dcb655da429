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
