"""Weights & Biases through Lightning's ``WandbLogger``: offline without an API key, one run across restarts.

``WandbLogger`` here is Lightning's with two defaults a cluster run needs:

- **offline when no key is set**: with neither ``WANDB_API_KEY`` nor a ``wandb login`` (nor ``WANDB_MODE``), runs
  are written offline under ``save_dir`` and can be uploaded later with ``wandb sync``; with a key they go online.
- **checkpoints as artifacts when asked** (``log_model: true`` at the end, ``all`` as they are written), offline
  too (Lightning forbids it; W&B keeps offline artifacts for ``wandb sync``).
- **one run across restarts**: the run id is stored in ``<save_dir>/wandb_run_id`` the first time and read back
  on every later start in that folder (a Slurm requeue, a resumed fit), with ``resume="allow"``, so the curves
  continue instead of forking into a new run.

Use it in a config as ``trainer.logger: {class_path: lit_i2v.tracking.WandbLogger, init_args: {project: ...}}``.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from lightning.pytorch.loggers import WandbLogger as _LightningWandbLogger


def _has_credentials() -> bool:
    if os.environ.get("WANDB_API_KEY"):
        return True
    netrc = Path(os.environ.get("NETRC", Path.home() / ".netrc"))
    return netrc.is_file() and "api.wandb.ai" in netrc.read_text(errors="ignore")


def persistent_run_id(save_dir: str | Path) -> str:
    """The run id kept in ``<save_dir>/wandb_run_id``, created (atomically) on first use."""
    path = Path(save_dir) / "wandb_run_id"
    if path.is_file():
        return path.read_text().strip()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    tmp.write_text(secrets.token_hex(4))  # W&B ids are short lowercase alphanumerics
    tmp.replace(path)  # if two processes race, both then read the one that landed
    return path.read_text().strip()


class WandbLogger(_LightningWandbLogger):
    """Args: as Lightning's ``WandbLogger`` (``project``, ``name``, ``save_dir``, ``log_model``, ...); ``offline``
    None means "offline unless credentials are set"; ``id`` None means the id stored in ``save_dir``."""

    def __init__(
        self,
        name: str | None = None,
        save_dir: str = "runs",
        project: str = "lit_i2v",
        offline: bool | None = None,
        id: str | None = None,
        log_model: bool | str = False,
        **kwargs,
    ) -> None:
        name = name or None  # an empty name (left over from another logger's config) lets W&B choose one
        if offline is None:
            offline = os.environ.get("WANDB_MODE", "") == "offline" or (
                "WANDB_MODE" not in os.environ and not _has_credentials()
            )
        run_id = id or persistent_run_id(save_dir)
        kwargs.setdefault("resume", "allow")
        # Lightning refuses log_model offline; W&B stores offline artifacts with the run and `wandb sync` uploads
        # them, so checkpoints are logged either way (set after construction, past Lightning's check).
        super().__init__(name=name, save_dir=save_dir, project=project, offline=offline, id=run_id, **kwargs)
        self._log_model = log_model
