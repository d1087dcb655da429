"""Switching a component's class drops the old class's arguments.

jsonargparse merges config sources (``--config`` files and command-line overrides, in the order given) key by key:
when a later source changes a component's ``class_path``, the earlier class's ``init_args`` that the new class also
accepts are kept. A recipe with ``AdamW(lr=2e-3, weight_decay=0.05)`` run with ``--model.init_args.optim.optimizer=
SGD`` would train ``SGD(lr=2e-3, weight_decay=0.05)``, values chosen for another optimizer, without a word; switching
a strategy keeps the arguments both classes share (``blocks``). Here a switch starts the new class from its own
defaults plus what the switching source, or a later one, gives it; the log names what was dropped.

Classes are compared by name (``SGD`` and ``torch.optim.SGD`` are the same switch, as jsonargparse resolves them),
values of overrides are read as YAML (as jsonargparse reads them), and components inside lists (``Compose``'s parts)
are followed by their index.
"""

from __future__ import annotations

import contextlib
import importlib
import inspect
import logging
from pathlib import Path
from typing import Any

import yaml
from jsonargparse import Namespace

log = logging.getLogger("lit_i2v")


def _plain(path: str) -> str:
    """A config path without its ``init_args`` segments: ``model.optim.optimizer``."""
    return ".".join(part for part in path.split(".") if part and part != "init_args")


def _name(class_path: Any) -> str:
    return str(class_path).rsplit(".", 1)[-1]


def class_nodes(config: Any, prefix: str = "") -> dict[str, Namespace]:
    """Every component chosen by ``class_path`` in a parsed config, by its plain path (list items by index)."""
    found: dict[str, Namespace] = {}
    items = vars(config).items() if isinstance(config, Namespace) else enumerate(config)
    for key, value in items:
        path = f"{prefix}.{key}" if prefix else str(key)
        if isinstance(value, Namespace) and "class_path" in value and isinstance(value.get("init_args"), Namespace):
            found[_plain(path)] = value
            found.update(class_nodes(value.init_args, _plain(path)))
        elif isinstance(value, Namespace | list):
            found.update(class_nodes(value, path))
    return found


class _Events:
    """What each source did to each component, in order: ``(position, class name or None, argument names)``."""

    def __init__(self, nodes: set[str]) -> None:
        self.nodes, self.by_node, self.position = nodes, {}, 0

    def add(self, node: str, class_name: str | None, keys: set[str]) -> None:
        self.by_node.setdefault(node, []).append((self.position, class_name, keys))
        self.position += 1

    def value(self, path: str, value: Any) -> None:
        """A source gave ``value`` at ``path``: every component above it gets the argument it sits under."""
        for node in self.nodes:
            if path.startswith(node + "."):
                self.add(node, None, {path[len(node) + 1 :].split(".")[0]})
        if isinstance(value, dict):
            if path in self.nodes:
                args = value.get("init_args") if isinstance(value.get("init_args"), dict) else {}
                keys = set(args) | (set(value) - {"class_path", "init_args", "dict_kwargs"})
                self.add(path, _name(value["class_path"]) if "class_path" in value else None, keys)
            for key, item in value.items():
                if key == "init_args" and isinstance(item, dict):
                    for inner, deeper in item.items():
                        self.value(f"{path}.{inner}" if path else inner, deeper)
                elif key not in ("class_path", "dict_kwargs"):
                    self.value(f"{path}.{key}" if path else key, item)
        elif isinstance(value, list):
            for index, item in enumerate(value):
                self.value(f"{path}.{index}", item)
        elif path in self.nodes and isinstance(value, str):  # a class named on its own
            self.add(path, _name(value), set())
        elif path.endswith(".class_path") and path[: -len(".class_path")] in self.nodes:
            self.add(path[: -len(".class_path")], _name(value), set())


def _read_events(args: list[str], nodes: set[str]) -> dict[str, list]:
    """Walk the command line in order: ``--config`` files where they stand, overrides as YAML values."""
    events = _Events(nodes)
    pending = list(args)
    while pending:
        arg = pending.pop(0)
        if not arg.startswith("-"):
            continue
        key, has_value, value = arg.lstrip("-").partition("=")
        if not has_value and pending and not pending[0].startswith("--"):
            value = pending.pop(0)
        if key in ("config", "c"):
            with contextlib.suppress(OSError, yaml.YAMLError):  # reported by the parser already
                events.value("", yaml.safe_load(Path(value).read_text()) or {})
            continue
        try:
            parsed = yaml.safe_load(value)
        except yaml.YAMLError:
            parsed = value
        events.value(_plain(key), parsed)
    return events.by_node


def drop_switched_arguments(config: Namespace, args: list[str]) -> dict[str, list[str]]:
    """Reset to their defaults the arguments a component kept from a class that a later source switched away from;
    returns what was dropped, by component path. ``args``: the command line (subcommand, ``--config`` files and
    overrides) in the order given."""
    nodes = class_nodes(config)
    dropped: dict[str, list[str]] = {}
    for path, events in _read_events(args, set(nodes)).items():
        node = nodes.get(path)
        if node is None:
            continue
        final = _name(node.class_path)
        named = [(position, name) for position, name, _ in events if name is not None]
        others = [position for position, name in named if name != final]
        if not others:
            continue  # never switched
        switched = min((p for p, name in named if name == final and p > max(others)), default=None)
        if switched is None:  # the parsed config names a class the sources do not end with: leave it
            continue
        kept = set().union(*(keys for position, _, keys in events if position >= switched))
        try:
            module, _, name = node.class_path.rpartition(".")
            parameters = inspect.signature(getattr(importlib.import_module(module), name)).parameters
        except Exception:  # not inspectable: leave it
            continue
        for key in list(vars(node.init_args)):
            default = parameters[key].default if key in parameters else inspect.Parameter.empty
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
