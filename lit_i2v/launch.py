"""``python -m lit_i2v submit``: write an sbatch file for a run and submit it to Slurm.

    python -m lit_i2v submit --config configs/X.yaml --nodes 2 --gpus-per-node 8 [--partition P] [--dry-run]
                             [-- --trainer.max_epochs=5 ...]

One Slurm task per device (``--ntasks-per-node`` = GPUs per node), each started by ``srun`` running
``python -m lit_i2v fit``; Lightning reads the ranks from Slurm (``SLURMEnvironment``). The job asks for
``SIGUSR1`` 90 s before its time limit and is requeueable: lit_i2v's ``Preemption`` callback then saves a
checkpoint at the next step boundary and requeues it, and the requeued job resumes from it (``--ckpt_path=last``,
which starts afresh on the first launch). ``--gpus-per-node 0`` makes a CPU job (``--tasks-per-node``
processes on gloo), which is how the tests run it on a local Slurm. The file is written to
``<log-dir>/<job-name>.sbatch`` (printed instead of submitted with ``--dry-run``) and can be resubmitted as is.
"""

from __future__ import annotations

import argparse
import datetime
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path


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


def submit_main(argv: list[str]) -> int:
    fit_args: list[str] = []
    if "--" in argv:
        cut = argv.index("--")
        argv, fit_args = argv[:cut], argv[cut + 1 :]
    p = argparse.ArgumentParser(
        prog="python -m lit_i2v submit",
        description="Write an sbatch file for `fit` and submit it (arguments after `--` go to fit).",
    )
    p.add_argument("--config", action="append", required=True, help="config file(s), as for fit")
    p.add_argument("--nodes", type=int, default=1)
    p.add_argument("--gpus-per-node", type=int, default=8, help="0 for a CPU job (then give --tasks-per-node)")
    p.add_argument("--tasks-per-node", type=int, default=None, help="default: --gpus-per-node")
    p.add_argument("--cpus-per-task", type=int, default=None, help="CPU cores per task (data-loading workers + 1)")
    p.add_argument("--time", default=None, help="time limit, e.g. 72:00:00")
    p.add_argument("--partition", default=None)
    p.add_argument("--account", default=None)
    p.add_argument("--job-name", default=None, help="default: the last config's file name")
    p.add_argument("--log-dir", default="runs/slurm", help="where the sbatch file and the job's log go")
    p.add_argument("--dry-run", action="store_true", help="print the sbatch file instead of submitting it")
    args = p.parse_args(argv)
    missing = [c for c in args.config if not os.path.isfile(c)]
    if missing:
        print(f"error: --config {missing[0]} does not exist", file=sys.stderr)
        return 2
    name = args.job_name or re.sub(r"[^A-Za-z0-9_.+-]", "_", Path(args.config[-1]).stem)
    try:
        script = sbatch_script(
            [str(Path(c).resolve()) for c in args.config], args.nodes, args.gpus_per_node, args.tasks_per_node,
            args.cpus_per_task, args.time, args.partition, args.account, name, str(Path(args.log_dir).resolve()),
            os.getcwd(), fit_args,
        )  # fmt: skip
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if args.dry_run:
        print(script, end="")
        return 0
    if shutil.which("sbatch") is None:
        print("error: sbatch is not on PATH (is this a Slurm login node?); --dry-run prints the file", file=sys.stderr)
        return 2
    log_dir = Path(args.log_dir)
    log_dir.mkdir(parents=True, exist_ok=True)  # Slurm does not create the log's folder
    path = log_dir / f"{name}.sbatch"
    path.write_text(script)
    done = subprocess.run(["sbatch", "--parsable", str(path)], capture_output=True, text=True)
    if done.returncode:
        print(f"error: sbatch {path} failed: {done.stderr.strip()}", file=sys.stderr)
        return 1
    job = done.stdout.strip().split(";")[0]
    print(f"submitted job {job}: {path}; log {log_dir.resolve()}/{name}-{job}.out")
    return 0
