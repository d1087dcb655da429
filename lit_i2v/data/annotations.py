"""Annotation formats of the real datasets, read into one record type.

- ``list``: mmaction2 video list, ``relative/path.mp4 <label>`` per line;
- ``rawframes``: mmaction2 frame list, ``relative/dir <num_frames> <label>`` per line (frames ``img_00001.jpg``...);
- ``rawframes_offset``: mmaction2's frame list ``with_offset=True``, ``relative/dir <offset> <num_frames> <label>``:
  the video's frames are ``img_{offset + 1:05d}.jpg`` onwards (several videos cut from one folder of frames);
- ``ssv2``: Something-Something v2 JSON (a list of ``{"id", "label", "template", "placeholders"}``) with the labels
  JSON that maps each template (brackets removed) to its index as a string;
- ``kinetics``: Kinetics CSV ``label,youtube_id,time_start,time_end,split`` with class indices from a class list or
  the sorted label names, videos at ``path_template`` under the root.

Every parse error names the file and the line, and so does a label outside ``[0, num_classes)`` (``check_labels``).
``format: auto`` reads a ``.json`` as SSv2, a ``.csv`` as Kinetics, and a list by its first line: a path with a
video extension is a video list; otherwise three fields are rawframes. What ``auto`` cannot tell apart it refuses,
naming the formats to choose from. mmaction2's multi-label lists (``multi_class=True``: ``video.mp4 0 3``, several
labels a line) are refused by name: lit_i2v trains single-label recognition. A UTF-8 byte-order mark is ignored.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

Format = Literal["auto", "list", "rawframes", "rawframes_offset", "ssv2", "kinetics"]
VIDEO_EXTENSIONS = (".mp4", ".avi", ".webm", ".mkv", ".mov", ".m4v", ".flv", ".mpg", ".mpeg", ".wmv", ".3gp")


class AnnotationError(ValueError):
    """A malformed annotation or labels file; the message names the file and line."""


@dataclass(frozen=True)
class VideoRecord:
    path: str
    label: int
    video_id: str
    num_frames: int | None = None  # known for rawframes only
    first_frame: int = 1  # rawframes: the number in the first frame's file name (mmaction2's start_index + offset)
    source: str = field(default="", compare=False)  # where it was read: "file:line" (or "file: entry i")


def _multi_label(path: Path, number: int, line: str) -> AnnotationError:
    return AnnotationError(
        f"{path}:{number}: {line.strip()!r} has several labels: a multi-label list (mmaction2's multi_class=True), "
        "which lit_i2v does not train (single-label recognition only); keep one label a line"
    )


def read_text(path: Path) -> str:
    """The file as text; ``utf-8-sig``: a byte-order mark is not part of the first path or key."""
    try:
        return path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as err:
        line = path.read_bytes()[: err.start].count(b"\n") + 1
        raise AnnotationError(f"{path}:{line}: not UTF-8 text (byte {err.object[err.start]:#04x})") from None


def read_json(path: Path):
    try:
        return json.loads(read_text(path))
    except json.JSONDecodeError as err:
        raise AnnotationError(f"{path}:{err.lineno}: invalid JSON ({err.msg})") from None


def _lines(path: Path) -> list[str]:
    return read_text(path).splitlines()


def detect_format(path: str | Path) -> Format:
    """The format of an annotation file, by its extension or, for lists, its first line (see the module's doc)."""
    path = Path(path)
    if path.suffix == ".json":
        return "ssv2"
    if path.suffix == ".csv":
        return "kinetics"
    number, line = next(((n, line) for n, line in enumerate(_lines(path), start=1) if line.strip()), (1, ""))
    fields = line.split()
    if fields and fields[0].lower().endswith(VIDEO_EXTENSIONS):
        if len(fields) > 2:
            raise _multi_label(path, number, line)
        return "list"
    if len(fields) == 3:
        return "rawframes"
    if len(fields) > 3:
        raise AnnotationError(
            f"{path}:{number}: {line.strip()!r} has {len(fields)} fields: mmaction2's frame list with offsets "
            "(<dir> <offset> <num_frames> <label>: set data.format=rawframes_offset) or a multi-label list (not "
            "supported); format auto cannot tell which"
        )
    return "list"


def read_class_names(path: str | Path) -> list[str]:
    """Class names in index order from an SSv2 labels JSON (``{template: "idx"}``) or a text file (one a line)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"labels file not found: {path}")
    if path.suffix == ".json":
        mapping = read_json(path)
        if not isinstance(mapping, dict) or not mapping:
            raise AnnotationError(f'{path}: expected an object mapping class names to indices, e.g. {{"x": "0"}}')
        names = [""] * len(mapping)
        for name, index in mapping.items():
            if not str(index).isdigit() or int(index) >= len(names) or names[int(index)]:
                expected = f"each of 0 to {len(names) - 1} once"
                raise AnnotationError(f"{path}: {name!r} has index {index!r}; expected {expected}")
            names[int(index)] = name
        return names
    return [line.strip() for line in _lines(path) if line.strip()]


LIST_FIELDS = {
    "list": "<path> <label>",
    "rawframes": "<dir> <num_frames> <label>",
    "rawframes_offset": "<dir> <offset> <num_frames> <label>",
}


def _read_list(path: Path, root: Path, fmt: str) -> list[VideoRecord]:
    expected = LIST_FIELDS[fmt]
    width = len(expected.split())
    records = []
    for number, line in enumerate(_lines(path), start=1):
        if not line.strip():
            continue
        parts = line.split()
        if fmt == "list" and len(parts) > width and all(p.lstrip("-").isdigit() for p in parts[1:]):
            raise _multi_label(path, number, line)
        try:
            if len(parts) != width:
                raise ValueError(f"{len(parts)} fields")
            numbers = [int(p) for p in parts[1:]]  # int("1.0") fails: a label or count must be a whole number
        except ValueError as err:
            raise AnnotationError(f"{path}:{number}: expected '{expected}', got {line.strip()!r} ({err})") from None
        label, source = numbers[-1], f"{path}:{number}"
        if label < 0:
            raise AnnotationError(f"{source}: label {label} is negative")
        rel = parts[0]
        if fmt == "list":
            records.append(VideoRecord(str(root / rel), label, Path(rel).stem, source=source))
            continue
        offset, frames = (0, numbers[0]) if fmt == "rawframes" else (numbers[0], numbers[1])
        if frames < 1 or offset < 0:
            raise AnnotationError(f"{source}: {frames} frames from offset {offset} is no clip")
        video_id = rel if fmt == "rawframes" else f"{rel}@{offset}"  # clips cut from one folder stay apart
        records.append(VideoRecord(str(root / rel), label, video_id, frames, first_frame=1 + offset, source=source))
    if not records:
        raise AnnotationError(f"{path}: lists no videos")
    return records


def _read_ssv2(path: Path, root: Path, labels: Path | None, video_ext: str) -> list[VideoRecord]:
    if labels is None:
        raise AnnotationError(f"{path}: SSv2 annotations need the labels JSON (data `labels`)")
    index = {name: i for i, name in enumerate(read_class_names(labels))}
    items = read_json(path)
    if not isinstance(items, list):
        raise AnnotationError(f"{path}: expected a list of {{id, template, ...}} entries, found {type(items).__name__}")
    records = []
    for i, item in enumerate(items):
        if not isinstance(item, dict) or "id" not in item or "template" not in item:
            raise AnnotationError(f"{path}: entry {i} needs 'id' and 'template', has {item!r:.120}")
        template = item["template"].replace("[", "").replace("]", "")
        if template not in index:
            raise AnnotationError(
                f"{path}: entry {i} (id {item['id']!r}): template {template!r} is not a class of {labels}"
            )
        source = f"{path}: entry {i}"
        records.append(VideoRecord(str(root / f"{item['id']}{video_ext}"), index[template], str(item["id"]),
                                   source=source))  # fmt: skip
    if not records:
        raise AnnotationError(f"{path}: lists no videos")
    return records


def _read_kinetics(path: Path, root: Path, labels: Path | None, path_template: str) -> list[VideoRecord]:
    rows = list(csv.DictReader(io.StringIO(read_text(path), newline="")))
    required = {"label", "youtube_id", "time_start", "time_end"}
    if rows and not required <= rows[0].keys():
        raise AnnotationError(f"{path}:1: header must contain {sorted(required)}, has {sorted(rows[0])}")
    names = read_class_names(labels) if labels else sorted({r["label"] for r in rows})
    index = {name: i for i, name in enumerate(names)}
    records = []
    for number, row in enumerate(rows, start=2):
        try:
            fields = dict(row, time_start=int(float(row["time_start"])), time_end=int(float(row["time_end"])))
            records.append(
                VideoRecord(
                    str(root / path_template.format(**fields)),
                    index[row["label"]],
                    row["youtube_id"],
                    source=f"{path}:{number}",
                )  # fmt: skip
            )
        except KeyError as err:
            raise AnnotationError(f"{path}:{number}: unknown or missing {err} in {dict(row)}") from None
        except ValueError as err:
            raise AnnotationError(f"{path}:{number}: {err} in {dict(row)}") from None
    if not records:
        raise AnnotationError(f"{path}: lists no videos")
    return records


def read_annotations(
    path: str | Path,
    root: str | Path = "",
    fmt: Format = "auto",
    labels: str | Path | None = None,
    video_ext: str = ".mp4",
    path_template: str = "{label}/{youtube_id}_{time_start:06d}_{time_end:06d}.mp4",
) -> list[VideoRecord]:
    """Records of one split. ``root`` prefixes relative video paths; ``labels`` maps class names to indices."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"annotation file not found: {path}")
    fmt = detect_format(path) if fmt == "auto" else fmt
    root = Path(root)
    labels = Path(labels) if labels else None
    if fmt in LIST_FIELDS:
        return _read_list(path, root, fmt)
    if fmt == "ssv2":
        return _read_ssv2(path, root, labels, video_ext)
    if fmt == "kinetics":
        return _read_kinetics(path, root, labels, path_template)
    raise AnnotationError(f"unknown annotation format {fmt!r}")


def check_labels(records: list[VideoRecord], num_classes: int, what: str = "") -> None:
    """Raise ``AnnotationError`` naming the file and line of the first label outside ``[0, num_classes)``."""
    for record in records:
        if not 0 <= record.label < num_classes:
            where = record.source or what or record.path
            raise AnnotationError(
                f"{where}: label {record.label} is outside the {num_classes} classes (0 to {num_classes - 1}) "
                "of model.init_args.num_classes"
            )
