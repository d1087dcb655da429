"""One clear line for every mistake a user can make in their files or config, instead of a traceback.

``python -m lit_i2v`` (``cli.main``) prints what these functions return as ``lit_i2v: error: ...`` and exits with 2:

- ``yaml_error``: a config file that is not valid YAML, named with its line and column (jsonargparse says
  ``"<unicode string>", line 2`` without the file);
- ``config_error``: what jsonargparse rejects, from its nested validation message: an unknown option with the closest
  accepted name, an unknown ``class_path`` with the closest class of its module, or the innermost reason;
- ``user_error``: the outermost error in a chain that lit_i2v raised about the user's files or config (an annotation
  file and line, a weights file, a config key). The outermost, because lit_i2v wraps a low-level cause (``KeyError:
  'Jumping over something'``) in the error that names the file and line.
"""

from __future__ import annotations

import difflib
import importlib
import inspect
import os
import pkgutil
import re
import traceback
from pathlib import Path


class ConfigError(ValueError):
    """A config value lit_i2v cannot run with; the message starts with its key (``data.batch_size: ...``)."""


def _error_types() -> tuple[type[BaseException], ...]:
    """lit_i2v's error types about files (imported late: this module must import nothing heavy)."""
    from lit_i2v.backbones.torchscript import UnreadableArchive
    from lit_i2v.backbones.weights import WeightsError
    from lit_i2v.data.formats.annotations import AnnotationError
    from lit_i2v.data.shards import ShardError
    from lit_i2v.tasks.checkpoint_io import CheckpointError

    return FileNotFoundError, WeightsError, AnnotationError, UnreadableArchive, ShardError, CheckpointError, ConfigError


def user_error(err: BaseException | None) -> BaseException | None:
    """The outermost error in ``err``'s chain that lit_i2v raised about the user's files or config, if any.

    jsonargparse wraps errors raised while building components in long union-validation messages (not ours, so
    skipped); lit_i2v's own errors wrap their low-level causes (a ``KeyError`` of a label lookup inside an
    ``AnnotationError`` naming the file and line), so the first of ours from the outside is the one to show."""
    types = _error_types()
    package = str(Path(__file__).resolve().parent) + os.sep  # not "lit_i2v" in a path: a clone may be named so
    seen: set[int] = set()
    while err is not None and id(err) not in seen:
        seen.add(id(err))
        frames = traceback.extract_tb(err.__traceback__)
        ours = bool(frames) and str(Path(frames[-1].filename).resolve()).startswith(package)
        if isinstance(err, types) or (ours and isinstance(err, ValueError | KeyError)):
            return err
        err = err.__cause__ or err.__context__
    return None


def message_of(err: BaseException) -> str:
    """The one line to print for ``err`` (a ``KeyError``'s argument without the quotes ``str`` adds)."""
    text = err.args[0] if isinstance(err, KeyError) and err.args else str(err)
    return " ".join(str(text).split())


def config_files(args: list[str]) -> list[str]:
    """The ``--config``/``-c`` files of a command line."""
    files = []
    for i, arg in enumerate(args):
        if arg in ("--config", "-c") and i + 1 < len(args):
            files.append(args[i + 1])
        elif arg.startswith("--config="):
            files.append(arg.split("=", 1)[1])
    return files


def yaml_error(path: str) -> str | None:
    """``file:line:column: problem`` for a config file that is not valid YAML (None if it is, or is absent)."""
    import yaml

    if not Path(path).is_file():
        return None
    try:
        yaml.safe_load(Path(path).read_text())
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else path
        what = "; ".join(str(part) for part in (err.problem, err.context) if part)
        return f"{where}: not valid YAML ({what})"
    except yaml.YAMLError as err:
        return f"{path}: not valid YAML ({err})"
    return None


def _accepted_options(class_path: str) -> list[str]:
    module, _, name = class_path.rpartition(".")
    try:
        parameters = inspect.signature(getattr(importlib.import_module(module), name)).parameters
    except Exception:  # the class could not be inspected: say what is known
        return []
    return [p for p in parameters if p not in ("self", "args", "kwargs")]


# options moved since a release: old name -> (an option the new home's class has, the new key). 2026-12: the task's
# strategy beside trainer.strategy; the grounding extractor, a model, out of the data
_KINDS = {"labels": "Labels", "path_template": "Labels", "captions": "Captions", "eval_format": "Captions",
          "answers": "Questions", "video_prefix": "Questions", "format": "Labels, Captions or Questions",
          "video_ext": "Labels, Captions or Questions"}  # fmt: skip
MOVED = {
    "strategy": ("transfer", "model.init_args.transfer"),
    "extractor": ("features", "model.init_args.extractor"),
    **{key: ("annotations", f"data.annotations.init_args.{key} (annotations: {kind})") for key, kind in _KINDS.items()},
    **{key: ("extractor", f"model.init_args.head.init_args.{key} (head: lit_i2v.heads.SpanHead)")
       for key in ("hidden", "layers", "heads", "dropout", "max_segments")},
}  # fmt: skip


def _unknown_option(message: str) -> str | None:
    unknown = list(
        re.finditer(r"class_path '([\w.]+)':\s*\n\s*(?:Option|Key) '([\w.]+)' is not (?:accepted|expected)", message)
    )
    if not unknown:
        return None
    class_path, option = unknown[-1].groups()
    accepted = _accepted_options(class_path)
    first = option.split(".")[0]
    if first in MOVED and MOVED[first][0] in accepted:
        return f"{class_path.rpartition('.')[2]}: option {first!r} is now {MOVED[first][1]}"
    close = difflib.get_close_matches(option, accepted, n=1)
    where = re.findall(r"NestedArg\(key='([\w.]+)'", message)
    parser_key = re.match(r'\s*Parser key "([\w.]+)"', message)
    path = f"{parser_key.group(1)}.init_args.{where[-1]}" if where and parser_key else None
    text = f"{class_path.rpartition('.')[2]} ({class_path}) has no option {option!r}"
    if close:
        text += f" - did you mean {close[0]!r}?"
    if accepted:
        text += f"{'' if close else '.'} Its options: {', '.join(accepted)}."
    if path:
        text += f" (given as --{path})"
    return text


def _key_path(message: str) -> str:
    """``model.init_args.transfer`` from the nested ``Parser key "..."`` lines of a jsonargparse message."""
    keys = re.findall(r'Parser key "([\w.]+)"', message)
    return ".init_args.".join(keys)


# classes replaced since a release: old class path -> what to write instead (2026-12: one DataModule for every task
# that reads videos, what the files hold being its ``annotations``)
MOVED_CLASSES = {
    "lit_i2v.data.CaptionDataModule": "lit_i2v.data.VideoDataModule with annotations: {class_path: "
    "lit_i2v.data.Captions, init_args: {format, eval_format, captions, video_ext}}",
    "lit_i2v.data.QADataModule": "lit_i2v.data.VideoDataModule with annotations: {class_path: "
    "lit_i2v.data.Questions, init_args: {format, answers, video_prefix, video_ext}}",
    "lit_i2v.data.SyntheticGrounding": "lit_i2v.data.GroundingDataModule with synthetic: {} (and the extractor under "
    "model.init_args.extractor)",
}


def _unknown_class(message: str) -> str | None:
    found = re.search(
        r"class_path '([\w.]+)':\s*\n\s*(?:module '([\w.]+)' has no attribute '(\w+)'|No module named '([\w.]+)')",
        message,
    )
    if found is None:
        return None
    class_path, module, name, missing = found.groups()
    key = _key_path(message)
    prefix = f"{key}: " if key else ""
    if missing:
        return f"{prefix}class_path {class_path!r}: there is no module {missing!r}"
    try:
        parent = importlib.import_module(module)
    except Exception:
        return f"{prefix}class_path {class_path!r}: there is no module {module!r}"
    if f"{module}.{name}" in MOVED_CLASSES:
        return f"{prefix}class_path {class_path!r} is now {MOVED_CLASSES[f'{module}.{name}']}"
    classes = sorted(n for n, v in vars(parent).items() if inspect.isclass(v) and not n.startswith("_"))
    modules = sorted(m.name for m in pkgutil.iter_modules(getattr(parent, "__path__", [])))
    what, names = ("module", modules) if name[:1].islower() and modules else ("class", classes)
    close = difflib.get_close_matches(name, names, n=1)
    hint = f" - did you mean {module}.{close[0]}?" if close else f"; it has: {', '.join(names)}" if names else ""
    return f"{prefix}class_path {class_path!r}: {module} has no {what} {name!r}{hint}"


def config_error(message: str) -> str:
    """One line from jsonargparse's nested validation message: which class got which unknown option (and the
    closest names it does accept), which class_path does not exist (and the closest that does), or the innermost
    reason given."""
    for explain in (_unknown_option, _unknown_class):
        line = explain(message)
        if line:
            return line
    # The innermost "- reason" of the nested message, with the keys that lead to it.
    reasons = [line.strip(" -") for line in message.splitlines() if line.strip().startswith("- ")]
    reasons = [r for r in reasons if not r.startswith(("Expected a <class 'NoneType'>", "Does not validate against"))]
    if reasons:
        key = _key_path(message)
        return f"{key}: {reasons[-1]}" if key else reasons[-1]
    return " ".join(line.strip() for line in message.strip().splitlines() if line.strip())
