"""``python -m lit_i2v``: LightningCLI for ``fit|validate|test|predict``, plus subcommands that are not trainer methods.

Trainer subcommands take ``--config`` files (several compose, later ones win) in omegaconf mode, so YAML may use
``${...}`` interpolation; every component is chosen by ``class_path``/``init_args``. The other subcommands
(``summary``, ``check-data``, ``synth``, ``pretrain-synthetic``, ``submit``, ``preprocess``, ``shard``, ``extract``)
live in ``lit_i2v/commands/``, one module each. Mistakes end in one line (``lit_i2v/errors.py``).
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from typing import Any

import lightning as L
from jsonargparse import Namespace
from lightning.fabric.plugins.environments import SLURMEnvironment
from lightning.pytorch.callbacks import ProgressBar
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI

from lit_i2v.callbacks import Checkpoint, Preempted, Preemption, RunProgressBar, StartupSummary, Throughput
from lit_i2v.commands import COMMANDS
from lit_i2v.commands import run as run_command
from lit_i2v.errors import ConfigError, config_error, config_files, message_of, user_error, yaml_error
from lit_i2v.manifest import LoggedConfig
from lit_i2v.switches import drop_switched_arguments
from lit_i2v.tasks.checkpoint_io import AtomicCheckpointIO, CheckpointError, check_loadable, resume_path

log = logging.getLogger("lit_i2v")


class LitI2VCLI(LightningCLI):
    """LightningCLI with lit_i2v's defaults: omegaconf configs, best/last checkpoints, atomic checkpoint writes.

    Args:
        only: build only these config groups (``model`` and/or ``data``) and no trainer; for extra subcommands.
    """

    labels_from_model = True  # the data checks its labels against model.init_args.num_classes (check-data: not)

    def __init__(self, *args: Any, only: tuple[str, ...] | None = None, **kwargs: Any) -> None:
        self.only = only
        kwargs.setdefault("parser_kwargs", {})
        kwargs["parser_kwargs"].setdefault("parser_mode", "omegaconf")
        kwargs["parser_kwargs"].setdefault("exit_on_error", False)  # main() turns config errors into one line
        if kwargs.get("run", True):
            for command in ("fit", "validate", "test", "predict"):
                kwargs["parser_kwargs"].setdefault(command, {"parser_mode": "omegaconf", "exit_on_error": False})
        kwargs.setdefault("save_config_kwargs", {"overwrite": True})
        kwargs.setdefault("save_config_callback", LoggedConfig)  # config.yaml + manifest.json, both sent to loggers
        kwargs.setdefault("trainer_defaults", {})
        # Added to any configured callbacks:
        kwargs["trainer_defaults"].setdefault("callbacks", [StartupSummary(), Throughput(), Preemption()])
        kwargs["trainer_defaults"].setdefault("enable_model_summary", False)  # StartupSummary says it better
        super().__init__(
            L.LightningModule,
            L.LightningDataModule,
            *args,
            subclass_mode_model=True,
            subclass_mode_data=True,
            auto_configure_optimizers=False,
            **kwargs,
        )

    def add_core_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        # The data group comes before the model so that it is instantiated first: a missing dataset is reported at
        # once, before minutes of weight loading (or a failing download).
        parser.add_lightning_class_args(self.trainer_class, "trainer")
        parser.set_defaults({"trainer." + k: v for k, v in self.trainer_defaults.items() if k != "callbacks"})
        parser.add_lightning_class_args(self._datamodule_class, "data", subclass_mode=True, required=False)
        parser.add_lightning_class_args(self._model_class, "model", subclass_mode=True)

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.add_lightning_class_args(Checkpoint, "checkpoint")
        parser.set_defaults(
            {
                "checkpoint.monitor": "val/top1",
                "checkpoint.mode": "max",
                "checkpoint.save_last": True,
                "checkpoint.filename": "best-{epoch:03d}-{step:06d}",
                "checkpoint.auto_insert_metric_name": False,
                "checkpoint.enable_version_counter": False,  # a restart overwrites, never multiplies, checkpoints
            }
        )

    def parse_arguments(self, parser: LightningArgumentParser, args: Any) -> None:
        self._args = list(args) if isinstance(args, list | tuple) else sys.argv[1:]  # what switches are read from
        super().parse_arguments(parser, args)

    def before_instantiate_classes(self) -> None:
        config = self.config[self.subcommand] if self.subcommand else self.config
        drop_switched_arguments(config, getattr(self, "_args", []))
        if config.get("checkpoint") is not None and config.checkpoint.get("dirpath") is None:
            # A fixed place, <default_root_dir>/checkpoints, rather than inside each logger version folder.
            root = config.trainer.get("default_root_dir") or "."
            config.checkpoint.dirpath = os.path.join(root, "checkpoints")
        if self.labels_from_model:
            _labels_from_model(config)
        _read_class_names(config)
        if config.get("checkpoint") is not None and config.checkpoint.get("monitor") == "val/top1":
            # The default follows the task: each names the validation metric its best checkpoint is chosen by.
            path = str(config.model.get("class_path", "")) if config.get("model") is not None else ""
            module, _, name = path.rpartition(".")
            if module:
                task = getattr(importlib.import_module(module), name, None)
                config.checkpoint.monitor = getattr(task, "monitor", "val/top1")

    def _parse_ckpt_path(self) -> None:
        """Lightning's reading of a given checkpoint's hyperparameters into the config (they win over the config
        files), with three differences: a damaged file is one line naming it (not a page of miniz advice), the file
        is memory-mapped (Lightning read all its weights for the hyperparameters), and a checkpoint written before
        the optimisation and runtime arguments were grouped (``optim``, ``runtime``) has its keys moved there."""
        subcommand = self.config.get("subcommand")
        path = self.config[subcommand].get("ckpt_path") if subcommand else None
        if not path or not os.path.isfile(path):
            return
        hparams = dict(check_loadable(path).get("hyper_parameters", {}))
        hparams.pop("_instantiator", None)
        if not hparams:
            return
        hparams = grouped_hyperparameters(hparams)
        if "_class_path" in hparams:
            hparams = {"class_path": hparams.pop("_class_path"), "dict_kwargs": hparams}
        self.config = self.parser.parse_object({subcommand: {"model": hparams}}, self.config)

    def _resolve_last(self) -> None:
        """``--ckpt_path=last`` with a damaged ``last.ckpt`` resumes from the newest checkpoint that loads, with a
        warning naming both (``checkpoint_io.resume_path``); with none that loads, one line naming the file."""
        config = self.config_init[self.subcommand]
        folder = config.get("checkpoint").dirpath if config.get("checkpoint") is not None else None
        if config.get("ckpt_path") != "last" or not folder:
            return
        path = resume_path(folder)
        if path is None and self.subcommand != "fit":  # Lightning would evaluate the untrained model, with a warning
            raise CheckpointError(f"--ckpt_path=last: {folder} holds no last.ckpt to {self.subcommand}")
        config.ckpt_path = path or "last"  # fit without one starts afresh (a first launch of a requeued job)

    def _before_run(self) -> None:
        from lit_i2v.extract import prepare_features

        self._resolve_last()
        prepare_features(self.model, self.datamodule)  # a synthetic grounding set's features, on first use

    before_fit = before_validate = before_test = before_predict = _before_run

    def instantiate_classes(self) -> None:
        if self.only is None:
            return super().instantiate_classes()
        config = self.config.clone()
        for group in ("model", "data"):
            if group not in self.only:
                config[group] = None
        init = self.parser.instantiate_classes(config)
        self.config_init = init
        self.model = init.get("model")
        self.datamodule = init.get("data")
        self.trainer = None

    def instantiate_trainer(self, **kwargs: Any):
        trainer = self._get(self.config_init, "trainer", default={})
        configured = trainer.get("callbacks") or []
        configured = configured if isinstance(configured, list) else [configured]
        if trainer.get("enable_progress_bar", True) is not False and not any(
            isinstance(c, ProgressBar) for c in configured
        ):
            # Rich's bar by default (with clips/s and data wait from Throughput); a configured bar replaces it. In a
            # log file (Slurm's), Rich writes each epoch's final bar once, on lines wider than a terminal's default.
            wide = {} if sys.stdout.isatty() or "COLUMNS" in os.environ else {"width": 160}
            kwargs.setdefault("callbacks", [*configured, RunProgressBar(leave=True, console_kwargs=wide)])
        if trainer.get("plugins") is None:
            plugins: list = [AtomicCheckpointIO()]
            if SLURMEnvironment.detect():
                # The Preemption callback handles the requeue signal at a step boundary; Lightning's own handler
                # would save from inside the signal handler, wherever the ranks happen to be.
                plugins.append(SLURMEnvironment(auto_requeue=False))
            kwargs.setdefault("plugins", plugins)
        try:
            return super().instantiate_trainer(**kwargs)
        except ValueError as err:  # Lightning's checks of trainer values (MisconfigurationException is one)
            raise ConfigError(trainer_error(err)) from err


def trainer_error(err: ValueError) -> str:
    """One line for a trainer value Lightning rejects, with the closest registered name for a misspelt strategy."""
    import difflib
    import re

    text = " ".join(str(err).split())
    named = re.search(r"`(\w+)=['\"]?([\w.-]+)['\"]?`", text)
    if named and named.group(1) == "strategy":
        from lightning.pytorch.strategies import StrategyRegistry

        close = difflib.get_close_matches(named.group(2), ["auto", *StrategyRegistry.available_strategies()], n=1)
        hint = f" - did you mean {close[0]!r}?" if close else ""
        return f"trainer.strategy: {named.group(2)!r} is not a registered strategy name{hint}"
    key = f"trainer.{named.group(1)}" if named else "trainer"
    return f"{key}: {text}"


OPTIM_KEYS = ("optimizer", "layer_decay", "warmup_epochs", "min_lr_ratio", "new_lr_scale")
RUNTIME_KEYS = ("compile", "trainable_only_checkpoints")
SPAN_KEYS = ("hidden", "layers", "heads", "dropout", "max_segments")


def grouped_hyperparameters(hparams: dict) -> dict:
    """A checkpoint's hyperparameters with the keys of the task arguments grouped since (``optimizer``,
    ``layer_decay`` ... under ``optim``; ``compile``, ``trainable_only_checkpoints`` under ``runtime``; a grounding
    model's span head arguments under ``head``)."""
    for group, keys in (("optim", OPTIM_KEYS), ("runtime", RUNTIME_KEYS)):
        moved = {key: hparams.pop(key) for key in keys if key in hparams}
        if moved:
            hparams[group] = {**moved, **(hparams.get(group) or {})}
    if "strategy" in hparams and "transfer" not in hparams:  # the task's strategy until 2026-12
        hparams["transfer"] = hparams.pop("strategy")
    grounding = str(hparams.get("_class_path", "")).endswith(".TemporalGrounding")
    span = {key: hparams.pop(key) for key in SPAN_KEYS if key in hparams} if grounding else {}  # until 2026-12
    if span:
        hparams["head"] = {"class_path": "lit_i2v.heads.SpanHead", "init_args": span}
    return hparams


def _read_class_names(config: Namespace) -> None:
    """A ``model.init_args.class_names`` path that exists becomes the list of names it holds (the task reads no
    files); one that does not is left for the task, which fails naming it if its head needs the names."""
    from lit_i2v.data.formats.annotations import read_class_names

    model = config.get("model")
    init = model.get("init_args") if model is not None else None
    names = init.get("class_names") if isinstance(init, Namespace) else None
    if isinstance(names, str) and os.path.isfile(names):
        init.class_names = read_class_names(names)


def _labels_from_model(config: Namespace) -> None:
    """Give the data ``model.init_args.num_classes`` (where the data takes ``num_classes`` and is not given it), so
    that it checks its labels when it reads them, before the model is built."""
    data, model = config.get("data"), config.get("model")
    if data is None or model is None or "num_classes" not in (data.get("init_args") or {}):
        return
    if data.init_args.get("num_classes") is None and (model.get("init_args") or {}).get("num_classes"):
        data.init_args.num_classes = model.init_args.num_classes


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    args = sys.argv[1:] if argv is None else argv
    for path in config_files(args):  # jsonargparse names the line of a YAML error, not the file
        problem = yaml_error(path)
        if problem:
            print(f"lit_i2v: error: {problem}", file=sys.stderr)
            return 2
    try:
        if args and args[0] in COMMANDS:
            sys.argv = sys.argv[:1]  # these commands hand LightningCLI their own argument list
            return run_command(args[0], args[1:])
        LitI2VCLI(args=argv)
    except Preempted as stop:  # the checkpoint is written: Slurm has requeued the job, or the caller may rerun
        print(f"lit_i2v: {stop}; resume with --ckpt_path=last", file=sys.stderr)
        return 0 if stop.requeued else 75
    except argparse.ArgumentError as err:  # a config key or value jsonargparse rejects
        cause = user_error(err)  # lit_i2v's own check of a value, raised while jsonargparse built the component
        print(f"lit_i2v: error: {message_of(cause) if cause else config_error(str(err))}", file=sys.stderr)
        return 2
    except Exception as err:
        cause = user_error(err)
        if cause is None:
            raise
        print(f"lit_i2v: error: {message_of(cause)}", file=sys.stderr)
        return 2
    return 0
