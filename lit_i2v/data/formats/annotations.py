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
import random
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
            "(<dir> <offset> <num_frames> <label>: set data.annotations.format=rawframes_offset) or a multi-label "
            "list (not supported); format auto cannot tell which"
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


# ---------------------------------------------------------------------------------------------------- kinds


class Annotations:
    """What a split's annotation file holds, for ``VideoDataModule(annotations=...)``: one class per kind of task
    data (``Labels`` for recognition, ``Captions`` for retrieval, ``Questions`` for QA), each with its own options,
    so that the DataModule has one signature whatever the task. Subclasses define:

    - ``read(path, root, split)``: the split's records, and per record a dict of what its samples carry besides
      the clip and label (None when nothing);
    - ``sample(extra, training, rng)``: the entries a sample adds to the batch from that dict (a caption drawn at
      random in training; every caption in evaluation), Python lists staying lists in the batch;
    - ``files()``: the files it reads besides the splits', by config key, checked when the module is built;
    - ``class_names()``; ``synthetic(root)``: itself set up for the synthetic set under ``root`` and that set's
      split files; ``write_synthetic(synthetic, root)``.
    """

    def read(self, path: str, root: str, split: str) -> tuple[list[VideoRecord], list[dict] | None]:
        raise NotImplementedError

    def sample(self, extra: dict, training: bool, rng: random.Random) -> dict:
        return extra

    def files(self) -> dict[str, str | None]:
        return {}

    def class_names(self) -> list[str] | None:
        return None

    def synthetic(self, root: Path) -> tuple[Annotations, dict[str, str]]:
        raise NotImplementedError(f"{type(self).__name__} has no synthetic set")

    def write_synthetic(self, synthetic, root: Path) -> None:
        synthetic.write(root)


def synthetic_splits(root: Path, stem: str, suffix: str = ".json") -> dict[str, str]:
    """The synthetic set's three split files, ``<stem><split name><suffix>`` under ``root``."""
    return {s: str(root / f"{stem}{name}{suffix}") for s, name in (("train", "train"), ("val", "validation"),
                                                                   ("test", "test"))}  # fmt: skip


class Labels(Annotations):
    """Class labels, for recognition.

    Args:
        labels: class names file: SSv2 labels JSON, or a text file with one class name per line.
        format: annotation format, ``auto`` to detect it from the file (see this module's docstring).
        video_ext: extension of SSv2-style ids on disk (``.webm`` for the original SSv2).
        path_template: where a Kinetics CSV row's video lies under ``root``.
    """

    def __init__(
        self,
        labels: str | None = None,
        format: Format = "auto",
        video_ext: str = ".mp4",
        path_template: str = "{label}/{youtube_id}_{time_start:06d}_{time_end:06d}.mp4",
    ) -> None:
        self.labels, self.format, self.video_ext, self.path_template = labels, format, video_ext, path_template

    def read(self, path: str, root: str, split: str) -> tuple[list[VideoRecord], None]:
        return read_annotations(path, root, self.format, self.labels, self.video_ext, self.path_template), None

    def files(self) -> dict[str, str | None]:
        return {"annotations.labels": self.labels}

    def class_names(self) -> list[str] | None:
        return read_class_names(self.labels) if self.labels else None

    def synthetic(self, root: Path) -> tuple[Labels, dict[str, str]]:
        return Labels(str(root / "labels.json"), "ssv2"), synthetic_splits(root, "")
