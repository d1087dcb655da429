"""``python -m lit_i2v``: LightningCLI for ``fit|validate|test|predict``, plus subcommands that are not trainer methods.

Trainer subcommands take ``--config`` files (several compose, later ones win) in omegaconf mode, so YAML may use
``${...}`` interpolation; every component is chosen by ``class_path``/``init_args``. The extra subcommands:

- ``summary --config X.yaml [--json]``: parameters, GFLOPs per view, frames and views of the configured model;
- ``check-data --config X.yaml [--split S] [--json]``: decodes every video of a split, reports the bad ones;
- ``synth [--root DIR] ...``: writes the synthetic motion dataset;
- ``pretrain-synthetic``: trains the tiny CLIP of the built-in default;
- ``submit --config X.yaml --nodes M --gpus-per-node N [--dry-run]``: writes and submits a Slurm job;
- ``preprocess --config X.yaml --out DIR``: re-encodes the videos for fast seeking (resumable, parallel);
- ``shard --config X.yaml --out DIR``: packs the splits into tar shards of pre-decoded frames for streaming;
- ``extract --config X.yaml``: embeds a grounding dataset's videos and queries with a frozen CLIP (resumable).

Extra subcommands parse the same config files through the same parser, then build only what they need (the model
for ``summary``, the data for ``check-data``), so a recipe can be inspected where its dataset or weights are absent.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
import warnings
from typing import Any

import lightning as L
import torch
from jsonargparse import Namespace
from lightning.fabric.plugins.environments import SLURMEnvironment
from lightning.pytorch.callbacks import ProgressBar
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI

from lit_i2v.callbacks import Checkpoint, Preempted, Preemption, RunProgressBar, StartupSummary, Throughput
from lit_i2v.errors import ConfigError, config_error, config_files, message_of, user_error, yaml_error
from lit_i2v.manifest import LoggedConfig
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

    def before_instantiate_classes(self) -> None:
        config = self.config[self.subcommand] if self.subcommand else self.config
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
        # Lightning reads a given checkpoint's hyperparameters before anything else, with a bare torch.load whose
        # error on a damaged file is a page of miniz advice: check the file first, so the error names it in a line.
        subcommand = self.config.get("subcommand")
        path = self.config[subcommand].get("ckpt_path") if subcommand else None
        if path and os.path.isfile(path):
            check_loadable(path)
        super()._parse_ckpt_path()

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

    def before_fit(self) -> None:
        self._resolve_last()

    def before_validate(self) -> None:
        self._resolve_last()

    def before_test(self) -> None:
        self._resolve_last()

    def before_predict(self) -> None:
        self._resolve_last()

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


def _read_class_names(config: Namespace) -> None:
    """A ``model.init_args.class_names`` path that exists becomes the list of names it holds (the task reads no
    files); one that does not is left for the task, which fails naming it if its head needs the names."""
    from lit_i2v.data.annotations import read_class_names

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


def _config_args(args: argparse.Namespace) -> list[str]:
    out = []
    for path in args.config:
        out += ["--config", path]
    return out


def _make_weights_optional(node: Any) -> None:
    """For ``summary``: a backbone whose weights are not on this machine is built randomly, with a warning."""
    from lit_i2v.backbones.weights import is_available

    if not isinstance(node, Namespace):
        return
    init = node.get("init_args")
    configured = isinstance(init, Namespace) and "arch" in init and init.get("pretrained")
    if configured and not is_available(init.arch, init.pretrained):
        warnings.warn(
            f"weights {init.pretrained!r} are not on this machine: summarising a randomly initialised {init.arch}",
            stacklevel=2,
        )
        init.pretrained = None
    checkpoint = init.get("checkpoint") if isinstance(init, Namespace) else None
    if isinstance(checkpoint, str) and not os.path.exists(checkpoint):  # an extra model's weights file
        warnings.warn(
            f"weights {checkpoint!r} are not on this machine: summarising a randomly initialised model", stacklevel=2
        )
        init.checkpoint = None
        if "pretrained" in init:
            init.pretrained = False
    for value in vars(init if isinstance(init, Namespace) else node).values():
        _make_weights_optional(value)


class _SummaryCLI(LitI2VCLI):
    def before_instantiate_classes(self) -> None:
        super().before_instantiate_classes()
        _make_weights_optional(self.config.model)
        init = self.config.model.init_args
        names = init.get("class_names")
        if isinstance(names, str) and not os.path.exists(names) and init.get("num_classes"):
            # Counts do not depend on the names: summarise with placeholders rather than fail.
            warnings.warn(f"class names file {names} is absent: summarising with placeholder names", stacklevel=2)
            init.class_names = [f"class {i}" for i in range(init.num_classes)]


def summary_main(argv: list[str]) -> int:
    from lit_i2v.summary import format_summary, summarize

    p = argparse.ArgumentParser(prog="python -m lit_i2v summary", description="Parameters, FLOPs, frames and views.")
    p.add_argument("--config", "-c", action="append", required=True, help="config file(s); later ones win")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--merged", action="store_true", help="merge a mergeable strategy into the weights first")
    p.add_argument(
        "--device", default="meta", help="where to build the model: meta (shapes only: no memory, no time) or cpu"
    )
    args, rest = p.parse_known_args(argv)  # the rest are --key=value overrides, as for fit
    # Counting parameters and FLOPs needs shapes, not values: on the meta device a ViT-L recipe is summarised in a
    # second, and attention inside nn.MultiheadAttention is counted as its matrix products (the CPU's fused kernel
    # is invisible to the FLOP counter).
    with torch.device(args.device):
        cli = _SummaryCLI(args=_config_args(args) + rest, run=False, only=("model",))
        if args.merged:
            if not cli.model.strategy.mergeable:
                raise ValueError(f"--merged: {type(cli.model.strategy).__name__} cannot be merged into the weights")
            cli.model.strategy.merge(cli.model.backbone)
        data_cfg = cli.config.get("data")
        result = summarize(cli.model, data_cfg)
    if args.json:
        import json

        print(json.dumps(result))
    else:
        print(format_summary(result))
    return 0


class _DataCheckCLI(LitI2VCLI):
    labels_from_model = False  # check-data reports every bad label itself, rather than the data failing at the first


def check_data_main(argv: list[str]) -> int:
    from lit_i2v.check_data import check_split, format_report

    p = argparse.ArgumentParser(prog="python -m lit_i2v check-data", description="Decode every video of a split.")
    p.add_argument("--config", "-c", action="append", required=True)
    p.add_argument("--split", choices=["train", "val", "test"], default="train")
    p.add_argument("--workers", type=int, default=2, help="decoding processes")
    p.add_argument("--json", action="store_true")
    args, rest = p.parse_known_args(argv)
    cli = _DataCheckCLI(args=_config_args(args) + rest, run=False, only=("data",))
    model = cli.config.get("model")
    num_classes = (model.get("init_args") or {}).get("num_classes") if model is not None else None
    report = check_split(cli.datamodule, args.split, args.workers, num_classes)
    if args.json:
        import json

        print(json.dumps(report))
    else:
        print(format_report(report))
    return 1 if report["missing"] or report["undecodable"] or report["bad_labels"] else 0


def synth_main(argv: list[str]) -> int:
    from lit_i2v.data.synthetic import EventSpec, SynthSpec, synthesize, write_captions, write_grounding, write_qa

    p = argparse.ArgumentParser(prog="python -m lit_i2v synth", description="Write the synthetic datasets.")
    p.add_argument("--root", default="data/synthetic-motion")
    p.add_argument("--num-train", type=int, default=480)
    p.add_argument("--num-val", type=int, default=160)
    p.add_argument("--num-test", type=int, default=160)
    p.add_argument("--size", type=int, default=64, help="frame side in pixels")
    p.add_argument("--frames", type=int, default=24)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--captions", action="store_true", help="also captions for retrieval (captions_<split>.json)")
    p.add_argument("--questions", action="store_true", help="also questions for video QA (qa_/mc_<split>.json)")
    p.add_argument(
        "--grounding", action="store_true", help="instead: the grounding set (two timed events a video; Charades-STA)"
    )
    args = p.parse_args(argv)
    if args.grounding:
        root = "data/synthetic-grounding" if args.root == p.get_default("root") else args.root
        frames = 64 if args.frames == p.get_default("frames") else args.frames
        write_grounding(root, (args.num_train, args.num_val, args.num_test), EventSpec(size=args.size, frames=frames),
                        seed=args.seed)  # fmt: skip
        print(f"synthetic grounding dataset at {root} (Charades-STA format: charades_sta_<split>.txt, videos/)")
        return 0
    root = synthesize(
        args.root,
        args.num_train,
        args.num_val,
        args.num_test,
        SynthSpec(size=args.size, frames=args.frames),
        seed=args.seed,
    )
    written = "SSv2 format: train.json, validation.json, test.json, labels.json"
    if args.captions:
        write_captions(root)
        written += "; captions_<split>.json"
    if args.questions:
        write_qa(root, seed=args.seed)
        written += "; qa_<split>.json, mc_<split>.json, answers.json"
    print(f"synthetic motion dataset at {root} ({written})")
    return 0


def pretrain_main(argv: list[str]) -> int:
    from lit_i2v.pretrain import pretrain

    p = argparse.ArgumentParser(
        prog="python -m lit_i2v pretrain-synthetic",
        description="Train a tiny CLIP on synthetic image-caption pairs; saved as the `synthetic` weights tag.",
    )
    p.add_argument("--arch", default="ViT-S-8-tiny")
    p.add_argument("--steps", type=int, default=500)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=None, help="file to write (default: the cache, as <arch>.synthetic.pt)")
    args = p.parse_args(argv)
    path, figures = pretrain(args.arch, args.steps, args.batch_size, args.lr, args.seed, args.out)
    print(f"wrote {path} (open_clip format): {figures}")
    return 0


def preprocess_main(argv: list[str]) -> int:
    from lit_i2v.preprocess import preprocess_paths

    p = argparse.ArgumentParser(
        prog="python -m lit_i2v preprocess",
        description="Re-encode a split's videos (short side, short keyframe interval, no B-frames) under --out.",
    )
    p.add_argument("--config", "-c", action="append", required=True)
    p.add_argument("--split", choices=["train", "val", "test"], action="append", help="default: every split set")
    p.add_argument("--out", required=True, help="output folder: the videos keep their paths relative to data.root")
    p.add_argument("--short-side", type=int, default=320)
    p.add_argument("--gop", type=int, default=8, help="frames between keyframes")
    p.add_argument("--workers", type=int, default=2)
    args, rest = p.parse_known_args(argv)
    cli = LitI2VCLI(args=_config_args(args) + rest, run=False, only=("data",))
    dm = cli.datamodule
    splits = args.split or [s for s in ("train", "val", "test") if dm.files.get(s)]
    paths = sorted({r.path for s in splits for r in dm.records(s) if r.num_frames is None})
    report = preprocess_paths(paths, dm.root, args.out, args.short_side, args.gop, args.workers)
    print(
        f"{report['written']} written, {report['skipped']} already there, {len(report['failed'])} failed; "
        f"point data.root at {args.out}"
    )
    for failure in report["failed"]:
        print(f"  failed: {failure}")
    return 1 if report["failed"] else 0


def shard_main(argv: list[str]) -> int:
    from lit_i2v.data.shards import ShardSpec, write_shards

    p = argparse.ArgumentParser(
        prog="python -m lit_i2v shard",
        description="Pack a config's splits into tar shards (pre-decoded JPEG frames or video files); "
        "train from them with data.shards=DIR.",
    )
    p.add_argument("--config", "-c", action="append", required=True)
    p.add_argument("--split", choices=["train", "val", "test"], action="append", help="default: every split set")
    p.add_argument("--out", required=True, help="shard folder")
    p.add_argument("--mode", choices=["frames", "video"], default="frames")
    p.add_argument("--short-side", type=int, default=256, help="frames mode: resize the short side to this (px)")
    p.add_argument("--frames", type=int, default=0, help="frames mode: frames kept per video, uniform (0: all)")
    p.add_argument("--quality", type=int, default=90, help="frames mode: JPEG quality")
    p.add_argument("--samples-per-shard", type=int, default=256)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--seed", type=int, default=0, help="order of the training videos across shards")
    args, rest = p.parse_known_args(argv)
    cli = LitI2VCLI(args=_config_args(args) + rest, run=False, only=("data",))
    dm = cli.datamodule
    if hasattr(dm, "prepare_data"):
        dm.prepare_data()  # a synthetic set is written on first use
    splits = args.split or [s for s in ("train", "val", "test") if dm.files.get(s)]
    if "test" in splits and dm.files["test"] == dm.files["val"] and "val" in splits:
        splits.remove("test")  # the test split is the validation split: readers fall back to it
    spec = ShardSpec(args.mode, args.short_side, args.frames, args.quality, args.samples_per_shard)
    index = write_shards({s: dm.records(s) for s in splits}, args.out, spec, dm.class_names(), args.workers,
                         args.seed, dm.backend)  # fmt: skip
    failed = 0
    for split in splits:
        info = index["splits"][split]
        failed += len(info["failed"])
        print(f"{split}: {info['samples']} of {info['videos']} videos in {len(info['shards'])} shards")
        for failure in info["failed"]:
            print(f"  failed: {failure}")
    print(f"train from them with --data.init_args.shards={args.out}")
    return 1 if failed else 0


def extract_main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(
        prog="python -m lit_i2v extract",
        description="Embed every video (frozen CLIP, data.extractor.rate frames a second) and query of a grounding "
        "config's splits into data.features (resumable).",
    )
    p.add_argument("--config", "-c", action="append", required=True)
    p.add_argument("--split", choices=["train", "val", "test"], action="append", help="default: every split set")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args, rest = p.parse_known_args(argv)
    cli = LitI2VCLI(args=_config_args(args) + rest, run=False, only=("data",))
    dm = cli.datamodule
    if not hasattr(dm, "extract"):
        raise ValueError(f"extract: {type(dm).__name__} has no features to extract (use a GroundingDataModule)")
    index = dm.extract(args.split, args.device)
    print(f"{index['videos']} videos and their queries embedded into {dm.features} ({index['arch']}, "
          f"{index['rate']} frames/s, {index['dim']}-d); {len(index['failed'])} failed")  # fmt: skip
    for failure in index["failed"]:
        print(f"  failed: {failure}")
    return 1 if index["failed"] else 0


def submit_main(argv: list[str]) -> int:
    from lit_i2v.launch import submit_main as submit

    return submit(argv)


EXTRA = {
    "summary": summary_main,
    "submit": submit_main,
    "preprocess": preprocess_main,
    "shard": shard_main,
    "extract": extract_main,
    "check-data": check_data_main,
    "synth": synth_main,
    "pretrain-synthetic": pretrain_main,
}


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    args = sys.argv[1:] if argv is None else argv
    for path in config_files(args):  # jsonargparse names the line of a YAML error, not the file
        problem = yaml_error(path)
        if problem:
            print(f"lit_i2v: error: {problem}", file=sys.stderr)
            return 2
    try:
        if args and args[0] in EXTRA:
            sys.argv = sys.argv[:1]  # these commands hand LightningCLI their own argument list
            return EXTRA[args[0]](args[1:])
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
