"""The sbatch file of a Slurm run (``python -m lit_i2v submit``, ``lit_i2v/commands/submit.py``, writes and submits it).

One Slurm task per device (``--ntasks-per-node`` = GPUs per node), each started by ``srun`` running
``python -m lit_i2v fit``; Lightning reads the ranks from Slurm (``SLURMEnvironment``). The job asks for
``SIGUSR1`` 90 s before its time limit and is requeueable: lit_i2v's ``Preemption`` callback then saves a
checkpoint at the next step boundary and requeues it, and the requeued job resumes from it (``--ckpt_path=last``,
which starts afresh on the first launch). ``--gpus-per-node 0`` makes a CPU job (``--tasks-per-node``
processes on gloo), which is how the tests run it on a local Slurm. The file is written to
``<log-dir>/<job-name>.sbatch`` (printed instead of submitted with ``--dry-run``) and can be resubmitted as is.
"""

from __future__ import annotations

import datetime
import os
import shlex
import sys


def sbatch_script(
    configs: list[str],
    nodes: int = 1,
    gpus_per_node: int = 8,
    tasks_per_node: int | None = None,
    cpus_per_task: int | None = None,
    time: str | None = None,
    partition: str | None = None,
    account: str | None = None,
    job_name: str = "lit_i2v",
    log_dir: str = "runs/slurm",
    workdir: str | None = None,
    fit_args: list[str] | None = None,
) -> str:
    """The text of an sbatch file that runs ``fit`` on ``nodes`` x ``gpus_per_node`` devices."""
    tasks = tasks_per_node or gpus_per_node
    if tasks < 1:
        raise ValueError("--tasks-per-node must be at least 1 (a CPU job needs it: --gpus-per-node 0)")
    if gpus_per_node and tasks != gpus_per_node:
        raise ValueError(f"one task per GPU: --tasks-per-node {tasks} differs from --gpus-per-node {gpus_per_node}")
    lines = [
        "#!/bin/bash",
        f"# Written by `python -m lit_i2v submit` on {datetime.datetime.now():%Y-%m-%d %H:%M}; resubmit with sbatch.",
        f"#SBATCH --job-name={job_name}",
        f"#SBATCH --nodes={nodes}",
        f"#SBATCH --ntasks-per-node={tasks}",
    ]
    if gpus_per_node:
        lines.append(f"#SBATCH --gpus-per-node={gpus_per_node}")
    if cpus_per_task:
        lines.append(f"#SBATCH --cpus-per-task={cpus_per_task}")
    for flag, value in (("time", time), ("partition", partition), ("account", account)):
        if value:
            lines.append(f"#SBATCH --{flag}={value}")
    lines += [
        f"#SBATCH --output={log_dir}/%x-%j.out",
        "# SIGUSR1 90 s before the limit: checkpoint at the next step, requeue; the requeued job resumes (last.ckpt)",
        "#SBATCH --signal=SIGUSR1@90",
        "#SBATCH --requeue",
        "#SBATCH --open-mode=append",
        "set -euo pipefail",
        f"cd {shlex.quote(workdir or os.getcwd())}",
        "export PYTHONUNBUFFERED=1",
    ]
    command = [sys.executable, "-m", "lit_i2v", "fit"]
    for config in configs:
        command += ["--config", config]
    command.append("--ckpt_path=last")  # resume a requeued job; a first launch starts afresh
    command += [f"--trainer.num_nodes={nodes}", f"--trainer.devices={tasks}"]
    if gpus_per_node:
        command.append("--trainer.accelerator=gpu")
    else:
        command += ["--trainer.accelerator=cpu", "--trainer.strategy=ddp"]
    command += fit_args or []
    lines.append("srun " + " ".join(shlex.quote(c) for c in command))
    return "\n".join(lines) + "\n"
