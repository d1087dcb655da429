"""The subcommands of ``python -m lit_i2v`` that are not trainer methods, one module each.

Each module has a docstring (its first line is the ``--help`` description), ``add_arguments(parser)`` and
``run(args, overrides) -> int`` (the exit status). Commands that read a config (``OVERRIDES = True``) take, after
their own options, any ``--key=value`` override ``fit`` would take, and parse the same config files through the same
parser (``lit_i2v.cli.LitI2VCLI``), building only what they need: the model for ``summary``, the data for
``check-data``, so a recipe can be inspected where its dataset or weights are absent.
"""

from __future__ import annotations

import argparse
import importlib

COMMANDS = {
    "summary": "summary",  # parameters, GFLOPs per view, frames and views of the configured model
    "check-data": "check_data",  # decode every video of a split, report the bad ones and bad labels
    "synth": "synth",  # write the synthetic datasets
    "pretrain-synthetic": "pretrain_synthetic",  # train the tiny CLIP of the built-in default
    "submit": "submit",  # write and submit a Slurm job
    "preprocess": "preprocess",  # re-encode videos for fast seeking (resumable, parallel)
    "shard": "shard",  # pack splits into tar shards of decoded frames for streaming
    "extract": "extract",  # embed a grounding dataset's videos and queries with a frozen CLIP (resumable)
}


def run(name: str, argv: list[str]) -> int:
    """Parse ``argv`` for command ``name`` and run it (arguments after a bare ``--`` go to the command as they are)."""
    module = importlib.import_module(f"lit_i2v.commands.{COMMANDS[name]}")
    parser = argparse.ArgumentParser(prog=f"python -m lit_i2v {name}", description=module.__doc__.splitlines()[0])
    module.add_arguments(parser)
    passed: list[str] = []
    if "--" in argv:
        cut = argv.index("--")
        argv, passed = argv[:cut], argv[cut + 1 :]
    if getattr(module, "OVERRIDES", False):
        args, overrides = parser.parse_known_args(argv)
    else:
        args, overrides = parser.parse_args(argv), []
    return module.run(args, overrides + passed)


def config_args(args: argparse.Namespace, overrides: list[str]) -> list[str]:
    """The ``--config`` files of ``args`` and the overrides, as LitI2VCLI's argument list."""
    out = []
    for path in args.config:
        out += ["--config", path]
    return out + overrides


def add_config_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", "-c", action="append", required=True, help="config file(s); later ones win")
