"""Switching a component's class drops the old class's arguments.

jsonargparse merges config sources (``--config`` files in order, then command-line overrides) key by key: when a
later source changes a component's ``class_path``, the earlier class's ``init_args`` that the new class also accepts
are kept. A recipe with ``AdamW(lr=2e-3, weight_decay=0.05)`` run with ``--model.init_args.optim.optimizer=
torch.optim.SGD`` would train ``SGD(lr=2e-3, weight_decay=0.05)``, values chosen for another optimizer, without a word;
switching a strategy keeps the arguments both classes share (``blocks``). Here a switch starts the new class from its
own defaults plus what the switching source (or a later one) gives it, and the log names what was dropped.
"""

from __future__ import annotations

import importlib
import inspect
import json
import logging
from pathlib import Path
from typing import Any

import yaml
from jsonargparse import Namespace

log = logging.getLogger("lit_i2v")


def _plain(path: str) -> str:
    """A config path without its ``init_args`` segments: ``model.optim.optimizer``."""
    return ".".join(part for part in path.split(".") if part and part != "init_args")


def class_nodes(config: Namespace, prefix: str = "") -> dict[str, Namespace]:
    """Every component chosen by ``class_path`` in a parsed config, by its plain path."""
    found = {}
    for key, value in vars(config).items():
        path = f"{prefix}.{key}" if prefix else key
        if isinstance(value, Namespace):
            if "class_path" in value and isinstance(value.get("init_args"), Namespace):
                found[_plain(path)] = value
                found.update(class_nodes(value.init_args, path))
            else:
                found.update(class_nodes(value, path))
    return found


def _events_from_dict(data: Any, prefix: str, index: int, events: dict) -> None:
    """Record, for each component a config dict sets, the class it names and the arguments it gives."""
    if not isinstance(data, dict):
        return
    if "class_path" in data:
        entry = events.setdefault(prefix, [])
        args = data.get("init_args") or {}
        given = set(args) | (set(data) - {"class_path", "init_args", "dict_kwargs"})
        entry.append((index, data["class_path"], given))
        for key, value in args.items():
            _events_from_dict(value, f"{prefix}.{key}", index, events)
        return
    for key, value in data.items():
        if key != "init_args":
            _events_from_dict(value, f"{prefix}.{key}" if prefix else key, index, events)
        else:
            _events_from_dict(value, prefix, index, events)


def _events(files: list[str], overrides: list[str], nodes: set[str]) -> dict[str, list]:
    """Per component path: ``(source index, class_path or None, argument names given)`` in source order."""
    events: dict[str, list] = {}
    for index, file in enumerate(files):
        try:
            _events_from_dict(yaml.safe_load(Path(file).read_text()) or {}, "", index, events)
        except (OSError, yaml.YAMLError):  # the parser has reported it already
            continue
    index = len(files)
    pending = list(overrides)
    while pending:
        arg = pending.pop(0)
        if not arg.startswith("--"):
            continue
        key, has_value, value = arg[2:].partition("=")
        if not has_value and pending and not pending[0].startswith("--"):
            value = pending.pop(0)
        path = _plain(key)
        for node in nodes:  # a value given inside a component gives that component the argument it sits under
            if path.startswith(node + "."):
                events.setdefault(node, []).append((index, None, {path[len(node) + 1 :].split(".")[0]}))
        if path in nodes:  # the component itself: a class path, or a dict with one
            try:
                parsed = json.loads(value)
            except ValueError:
                parsed = value
            if isinstance(parsed, dict):
                _events_from_dict(parsed, path, index, events)
            else:
                events.setdefault(path, []).append((index, str(parsed), set()))
        elif path.endswith(".class_path") and path[: -len(".class_path")] in nodes:
            events.setdefault(path[: -len(".class_path")], []).append((index, value, set()))
        index += 1
    return events


def drop_switched_arguments(config: Namespace, files: list[str], overrides: list[str]) -> dict[str, list[str]]:
    """Reset to their defaults the arguments a component kept from the class a later source switched away from;
    returns what was dropped, by component path."""
    nodes = class_nodes(config)
    dropped = {}
    for path, events in _events(files, overrides, set(nodes)).items():
        node = nodes.get(path)
        classes = [(i, c) for i, c, _ in events if c is not None]
        if node is None or len({c for _, c in classes}) < 2 or classes[-1][1] != node.class_path:
            continue  # never switched, or the parsed config disagrees with what was read here: leave it
        since = classes[-1][0]
        kept = set().union(*(given for i, _, given in events if i >= since))
        try:
            module, _, name = node.class_path.rpartition(".")
            defaults = inspect.signature(getattr(importlib.import_module(module), name)).parameters
        except Exception:  # not inspectable: leave it
            continue
        for key in list(vars(node.init_args)):
            default = defaults[key].default if key in defaults else inspect.Parameter.empty
            if key in kept or default is inspect.Parameter.empty or node.init_args[key] == default:
                continue
            node.init_args[key] = default
            dropped.setdefault(path, []).append(key)
    for path, keys in dropped.items():
        log.warning(
            "%s switched to %s: %s from the class it replaced dropped (give them again for the new class)",
            path, nodes[path].class_path, ", ".join(keys),
        )  # fmt: skip
    return dropped
