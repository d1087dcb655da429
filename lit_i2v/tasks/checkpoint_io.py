"""Checkpoints written atomically, readable by colleagues, and named when they are damaged.

The checkpoint is written to a temporary file in the same folder, flushed and fsynced, then renamed over the target
with ``os.replace`` (atomic on POSIX file systems), so a reader sees the old file or the new one, never half of one.
The temporary file is made private by ``mkstemp``; before the rename it gets the mode a plain ``open`` would have
given it (0666 less the umask), so a run folder shared on a cluster stays readable to the group the umask allows.

A job killed mid-write leaves its temporary file behind (``.last.ckpt.<random>.tmp``, as large as a checkpoint):
``remove_orphans`` deletes them when the next run starts. A file that cannot be loaded raises ``CheckpointError``
naming it; ``resume_path`` chooses what ``--ckpt_path=last`` resumes from when ``last.ckpt`` is damaged.
"""

from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.plugins.io import TorchCheckpointIO

log = logging.getLogger("lit_i2v")

ORPHAN_PATTERN = ".*.ckpt.*.tmp"  # what ``mkstemp(prefix=".<name>.", suffix=".tmp")`` leaves of a killed write


class CheckpointError(RuntimeError):
    """A checkpoint file that cannot be loaded; the message starts with its path."""


def umask() -> int:
    """The process's umask, read without changing it (``os.umask`` can only be read by setting it, which races with
    other threads creating files)."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except OSError:
        pass
    current = os.umask(0o022)
    os.umask(current)
    return current


def check_loadable(path: str | Path) -> dict:
    """The checkpoint at ``path``, memory-mapped (only the pickled structure and the zip directory are read: a
    truncated file fails at its missing directory, and gigabytes of weights stay on disk); ``CheckpointError`` if it
    does not open as one."""
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception as err:
        raise CheckpointError(f"{path}: damaged or not a checkpoint ({_reason(err)})") from err
    if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint:
        raise CheckpointError(f"{path}: not a checkpoint of a run (a {type(checkpoint).__name__} without a state_dict)")
    return checkpoint


def _reason(err: BaseException) -> str:
    """The first sentence of a loader's error (torch's own goes on for a page, with advice that does not apply)."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    return lines[0].split(". ")[0].rstrip(".") if lines else type(err).__name__


class AtomicCheckpointIO(TorchCheckpointIO):
    def save_checkpoint(self, checkpoint: dict[str, Any], path: str | Path, storage_options: Any = None) -> None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        try:
            with os.fdopen(fd, "wb") as f:
                torch.save(checkpoint, f)
                f.flush()
                os.fsync(f.fileno())
            os.chmod(tmp, 0o666 & ~umask())  # mkstemp's 0600 would hide the checkpoint from the group
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def load_checkpoint(
        self, path: str | Path, map_location: Any = lambda storage, loc: storage, weights_only: bool | None = None
    ) -> dict:
        if not Path(path).exists():
            raise FileNotFoundError(f"checkpoint not found: {path}")
        try:
            return super().load_checkpoint(path, map_location=map_location, weights_only=weights_only)
        except Exception as err:  # truncated, empty, or not a checkpoint: name the file, in one line
            raise CheckpointError(f"{path}: damaged or not a checkpoint ({_reason(err)})") from err


def remove_orphans(folder: str | Path) -> list[Path]:
    """Delete the temporary files of checkpoint writes that were killed; returns them. Call it before this run writes
    (rank 0, at the start of ``fit``): the files are a dead process's, never a live write's."""
    removed = []
    for orphan in sorted(Path(folder).glob(ORPHAN_PATTERN)):
        size = orphan.stat().st_size
        orphan.unlink(missing_ok=True)
        log.warning("removed %s (%.1f MB), left by a checkpoint write that was killed", orphan, size / 1e6)
        removed.append(orphan)
    return removed


def resume_path(folder: str | Path) -> str | None:
    """What ``--ckpt_path=last`` resumes from: ``last.ckpt`` if it loads; if it is damaged, the newest checkpoint of
    ``folder`` that loads (with a warning naming both); None if there is no ``last.ckpt`` (Lightning then starts
    afresh). Raises ``CheckpointError`` when ``last.ckpt`` is damaged and nothing else loads: starting afresh would
    silently throw the run's progress away."""
    folder = Path(folder)
    last = folder / "last.ckpt"
    if not last.exists():
        return None
    try:
        check_loadable(last)
        return str(last)
    except CheckpointError as damaged:
        others = sorted((p for p in folder.glob("*.ckpt") if p != last), key=lambda p: p.stat().st_mtime, reverse=True)
        for candidate in others:
            try:
                check_loadable(candidate)
            except CheckpointError:
                continue
            log.warning("%s; resuming from %s, the newest checkpoint of the run that loads", damaged, candidate)
            return str(candidate)
        raise CheckpointError(
            f"{damaged}, and no other checkpoint in {folder} loads; move it away to start the run afresh"
        ) from damaged
