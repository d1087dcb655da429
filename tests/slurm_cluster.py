"""A real one-node Slurm for the tests: munged, slurmctld and slurmd from Debian's packages, started as root.

``LocalSlurm.start(scratch)`` writes a ``slurm.conf`` (``select/cons_tres``, ``proctrack/linuxproc``, one node with
this machine's CPUs) under ``scratch``, starts the daemons and waits until the node is idle; ``stop()`` ends them by
the process ids they wrote. ``unavailable()`` says why Slurm cannot run here (then the tests skip with that reason).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

DAEMONS = ("munged", "slurmctld", "slurmd", "sbatch", "squeue", "sinfo")


def unavailable() -> str | None:
    """Why a local Slurm cannot be started, or None."""
    missing = [d for d in DAEMONS if shutil.which(d) is None and not Path(f"/usr/sbin/{d}").exists()]
    if missing:
        return f"Slurm is not installed ({', '.join(missing)} missing): apt-get install slurm-wlm munge"
    if os.geteuid() != 0:
        return "a local Slurm needs root (slurmd runs jobs as their users)"
    return None


class LocalSlurm:
    def __init__(self, scratch: Path) -> None:
        self.scratch = scratch
        self.conf = scratch / "slurm.conf"
        self.host = socket.gethostname()
        self.munge_pid: int | None = None
        self.env = dict(os.environ, SLURM_CONF=str(self.conf))

    def _config(self) -> str:
        s = self.scratch
        cpus = os.cpu_count() or 2
        return "\n".join(
            [
                "ClusterName=local",
                f"SlurmctldHost={self.host}",
                "AuthType=auth/munge",
                "SlurmUser=root",
                "SlurmdUser=root",
                f"StateSaveLocation={s}/state",
                f"SlurmdSpoolDir={s}/spool",
                f"SlurmctldPidFile={s}/slurmctld.pid",
                f"SlurmdPidFile={s}/slurmd.pid",
                f"SlurmctldLogFile={s}/log/ctld.log",
                f"SlurmdLogFile={s}/log/d.log",
                "ProctrackType=proctrack/linuxproc",
                "TaskPlugin=task/none",
                "SelectType=select/cons_tres",
                "SelectTypeParameters=CR_Core",
                "ReturnToService=2",
                "MpiDefault=none",
                "JobRequeue=1",
                f"NodeName={self.host} CPUs={cpus} RealMemory=8000 State=UNKNOWN",
                f"PartitionName=debug Nodes={self.host} Default=YES MaxTime=INFINITE State=UP",
                "",
            ]
        )

    def _start_munge(self) -> None:
        key = Path("/etc/munge/munge.key")
        if not key.exists():
            key.parent.mkdir(parents=True, exist_ok=True)
            key.write_bytes(os.urandom(1024))
            key.chmod(0o400)
            shutil.chown(key, "munge", "munge")
        for d in ("/run/munge", "/var/log/munge", "/var/lib/munge"):
            Path(d).mkdir(parents=True, exist_ok=True)
            shutil.chown(d, "munge", "munge")
        if subprocess.run(["munge", "-n"], capture_output=True).returncode == 0:
            return  # a munged is already serving this machine
        subprocess.run(["su", "-s", "/bin/sh", "munge", "-c", "/usr/sbin/munged"], check=True)
        pid_file = Path("/run/munge/munged.pid")
        for _ in range(50):
            if pid_file.exists():
                self.munge_pid = int(pid_file.read_text())
                return
            time.sleep(0.1)

    def start(self) -> LocalSlurm:
        for d in ("state", "spool", "log"):
            (self.scratch / d).mkdir(parents=True, exist_ok=True)
        self.conf.write_text(self._config())
        self._start_munge()
        subprocess.run(["slurmctld", "-f", str(self.conf)], check=True, env=self.env)
        subprocess.run(["slurmd", "-f", str(self.conf)], check=True, env=self.env)
        deadline = time.time() + 60
        while time.time() < deadline:
            state = self.run("sinfo", "-h", "-o", "%t").stdout.strip()
            if state == "idle":
                return self
            time.sleep(0.5)
        raise RuntimeError(f"the local Slurm node never became idle (sinfo: {state!r}); see {self.scratch}/log")

    def run(self, *args: str, check: bool = False) -> subprocess.CompletedProcess:
        return subprocess.run(list(args), capture_output=True, text=True, env=self.env, check=check)

    def wait(self, job_id: str, timeout: float = 600) -> None:
        """Until the job has left the queue (finished, failed or cancelled)."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            if not self.run("squeue", "-h", "-j", job_id).stdout.strip():
                return
            time.sleep(1)
        self.run("scancel", job_id)
        raise TimeoutError(f"job {job_id} still queued or running after {timeout} s")

    def stop(self) -> None:
        for name in ("slurmd", "slurmctld"):
            pid_file = self.scratch / f"{name}.pid"
            if pid_file.exists():
                with contextlib.suppress(ProcessLookupError):  # already gone
                    os.kill(int(pid_file.read_text()), signal.SIGTERM)
        if self.munge_pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.munge_pid, signal.SIGTERM)
