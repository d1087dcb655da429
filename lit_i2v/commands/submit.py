"""Write an sbatch file for `fit` and submit it to Slurm (arguments after `--` go to fit).

    python -m lit_i2v submit --config configs/X.yaml --nodes 2 --gpus-per-node 8 [--partition P] [--dry-run]
                             [-- --trainer.max_epochs=5 ...]

The file (``lit_i2v.launch.sbatch_script``: one task per device, requeue on SIGUSR1, resume from ``last.ckpt``) is
written to ``<log-dir>/<job-name>.sbatch``, printed instead with ``--dry-run``, and can be resubmitted as is.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", action="append", required=True, help="config file(s), as for fit")
    parser.add_argument("--nodes", type=int, default=1)
    parser.add_argument("--gpus-per-node", type=int, default=8, help="0 for a CPU job (then give --tasks-per-node)")
    parser.add_argument("--tasks-per-node", type=int, default=None, help="default: --gpus-per-node")
    parser.add_argument("--cpus-per-task", type=int, default=None, help="CPU cores per task (data-loading workers + 1)")
    parser.add_argument("--time", default=None, help="time limit, e.g. 72:00:00")
    parser.add_argument("--partition", default=None)
    parser.add_argument("--account", default=None)
    parser.add_argument("--job-name", default=None, help="default: the last config's file name")
    parser.add_argument("--log-dir", default="runs/slurm", help="where the sbatch file and the job's log go")
    parser.add_argument("--dry-run", action="store_true", help="print the sbatch file instead of submitting it")


def run(args: argparse.Namespace, fit_args: list[str]) -> int:
    from lit_i2v.launch import sbatch_script

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
