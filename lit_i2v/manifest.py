"""What a run is, written beside it: ``<log dir>/manifest.json`` and the loggers' config (W&B's run config).

Every fit, validate and test records, on rank 0 before it starts:

- the resolved config (every default filled in), as ``config.yaml`` already holds it;
- the model: class, backbone and weights, strategy, total and trainable parameters, GFLOPs per view (counted under
  ``FakeTensorMode``: shapes only, no compute and no memory, whatever the model's size);
- the data: per split, the videos listed, found and missing (the first missing paths named), or for shards their
  samples and the videos that failed when they were written; training then counts undecodable videos as
  ``train/skipped`` and evaluation as ``val/skipped``;
- the run: devices, nodes, precision, strategy, effective batch, software versions and the code's git commit.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.cli import SaveConfigCallback


def model_facts(model: L.LightningModule, frames: int | None) -> dict:
    params = list(model.parameters())
    facts: dict[str, Any] = {
        "class": type(model).__name__,
        "total_params": sum(p.numel() for p in params),
        "trainable_params": sum(p.numel() for p in params if p.requires_grad),
    }
    backbone = getattr(model, "backbone", None)
    if backbone is not None:
        facts.update(backbone=backbone.arch, weights=backbone.pretrained_cfg.get("source"))
        facts["strategy"] = type(model.transfer).__name__
        if frames:
            try:
                facts["gflops_per_view"] = round(fake_gflops(model, frames, backbone.visual.image_size), 3)
            except Exception as err:  # a model the fake-tensor count cannot trace: say so, do not stop the run
                facts["gflops_per_view"] = f"not counted: {type(err).__name__}: {err}"[:200]
    return facts


def fake_gflops(model: torch.nn.Module, frames: int, size: int) -> float:
    """``count_gflops`` without computing: the model's real weights stand in as fake tensors."""
    from torch._subclasses.fake_tensor import FakeTensorMode

    from lit_i2v.summary import count_gflops

    with FakeTensorMode(allow_non_fake_inputs=True):
        return count_gflops(model, frames, size)


def _exists(paths: list[str], workers: int = 16) -> list[bool]:
    with ThreadPoolExecutor(workers) as pool:  # stat calls on a network file system overlap well
        return list(pool.map(os.path.exists, paths))


def data_facts(datamodule: L.LightningDataModule | None) -> dict:
    """Per split: what the DataModule found on disk."""
    if datamodule is None:
        return {}
    facts: dict[str, Any] = {"class": type(datamodule).__name__}
    for split, dataset in getattr(datamodule, "datasets", {}).items():
        if hasattr(dataset, "records"):
            paths = [r.path for r in dataset.records]
            found = _exists(paths)
            missing = [p for p, ok in zip(paths, found, strict=True) if not ok]
            facts[split] = {"videos": len(paths), "found": len(paths) - len(missing), "missing": len(missing),
                            "first_missing": missing[:20]}  # fmt: skip
        elif hasattr(dataset, "index"):  # shards
            info = dataset.index["splits"][dataset.split]
            facts[split] = {"shards": len(info["shards"]), "samples": info["samples"], "videos": info["videos"],
                            "failed_when_sharded": info["failed"][:20]}  # fmt: skip
        elif hasattr(dataset, "moments"):  # grounding features
            facts[split] = {"queries": len(dataset.moments), "videos": len({m.video_id for m in dataset.moments})}
    return facts


def run_facts(trainer: L.Trainer) -> dict:
    import lightning

    datamodule = trainer.datamodule
    batch = getattr(datamodule, "batch_size", None)
    commit = None
    with contextlib.suppress(Exception):  # not a git checkout (an installed package): no commit to name
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent, capture_output=True,
                                text=True, timeout=5, check=True).stdout.strip()  # fmt: skip
    return {
        "devices": trainer.num_devices,
        "nodes": trainer.num_nodes,
        "world_size": trainer.world_size,
        "accelerator": type(trainer.accelerator).__name__,
        "strategy": type(trainer.strategy).__name__,
        "precision": trainer.precision,
        "effective_batch": batch * trainer.world_size * trainer.accumulate_grad_batches if batch else None,
        "versions": {"torch": torch.__version__, "lightning": lightning.__version__},
        "git_commit": commit,
    }


class LoggedConfig(SaveConfigCallback):
    """Lightning's config saving, plus the resolved config and the run manifest sent to every logger (W&B shows
    them as the run's config) and ``manifest.json`` written beside ``config.yaml``; ``manifest`` keeps it for the
    start-up summary (rank 0)."""

    manifest: dict | None = None

    def save_config(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        config = self.config.as_dict() if hasattr(self.config, "as_dict") else dict(self.config)
        config = json.loads(json.dumps(config, default=str))  # plain values (paths, enums) for every logger
        sampler = (((config.get("data") or {}).get("init_args") or {}).get("sampler") or {}).get("init_args") or {}
        manifest = {
            "stage": str(getattr(stage, "value", stage)),
            "model": model_facts(pl_module, sampler.get("num_frames", 8)),
            "data": data_facts(trainer.datamodule),
            "run": run_facts(trainer),
        }
        from lit_i2v.reports import log_dir

        path = log_dir(trainer) / "manifest.json"  # rank 0 alone runs this: no broadcasting trainer.log_dir
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(json.dumps(manifest, indent=1, default=str))
        tmp.replace(path)
        manifest = self.manifest = json.loads(json.dumps(manifest, default=str))
        for logger in trainer.loggers:
            logger.log_hyperparams({"config": config, "manifest": manifest})
