"""Annotation formats of the real datasets, read into one record type.

- ``list``: mmaction2 video list, ``relative/path.mp4 <label>`` per line;
- ``rawframes``: mmaction2 frame list, ``relative/dir <num_frames> <label>`` per line;
- ``ssv2``: Something-Something v2 JSON (a list of ``{"id", "label", "template", "placeholders"}``) with the labels
  JSON that maps each template (brackets removed) to its index as a string;
- ``kinetics``: Kinetics CSV ``label,youtube_id,time_start,time_end,split`` with class indices from a class list or
  the sorted label names, videos at ``path_template`` under the root.

Every parse error names the file and the line.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

Format = Literal["auto", "list", "rawframes", "ssv2", "kinetics"]


class AnnotationError(ValueError):
    """A malformed annotation or labels file; the message names the file and line."""


@dataclass(frozen=True)
class VideoRecord:
    path: str
    label: int
    video_id: str
    num_frames: int | None = None  # known for rawframes only


def detect_format(path: str | Path) -> Format:
    path = Path(path)
    if path.suffix == ".json":
        return "ssv2"
    if path.suffix == ".csv":
        return "kinetics"
    with open(path) as f:
        first = next((line.split() for line in f if line.strip()), [])
    return "rawframes" if len(first) == 3 else "list"


def read_class_names(path: str | Path) -> list[str]:
    """Class names in index order from an SSv2 labels JSON (``{template: "idx"}``) or a text file (one a line)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"labels file not found: {path}")
    if path.suffix == ".json":
        mapping = json.loads(path.read_text())
        names = [""] * len(mapping)
        for name, index in mapping.items():
            names[int(index)] = name
        return names
    return [line.strip() for line in path.read_text().splitlines() if line.strip()]


def _read_list(path: Path, root: Path, rawframes: bool) -> list[VideoRecord]:
    records = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        parts = line.split()
        try:
            if rawframes:
                rel, frames, label = parts[0], int(parts[1]), int(parts[2])
            else:
                rel, label, frames = parts[0], int(parts[1]), None
        except (IndexError, ValueError) as err:
            expected = "<dir> <num_frames> <label>" if rawframes else "<path> <label>"
            raise AnnotationError(f"{path}:{number}: expected '{expected}', got {line!r}") from err
        records.append(VideoRecord(str(root / rel), label, Path(rel).stem if not rawframes else rel, frames))
    return records


def _read_ssv2(path: Path, root: Path, labels: Path | None, video_ext: str) -> list[VideoRecord]:
    if labels is None:
        raise AnnotationError(f"{path}: SSv2 annotations need the labels JSON (data `labels`)")
    index = {name: i for i, name in enumerate(read_class_names(labels))}
    try:
        items = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise AnnotationError(f"{path}:{err.lineno}: invalid JSON ({err.msg})") from err
    records = []
    for i, item in enumerate(items):
        try:
            template = item["template"].replace("[", "").replace("]", "")
            records.append(VideoRecord(str(root / f"{item['id']}{video_ext}"), index[template], str(item["id"])))
        except KeyError as err:
            raise AnnotationError(f"{path}: entry {i} (id {item.get('id')!r}): unknown or missing {err}") from err
    return records


def _read_kinetics(path: Path, root: Path, labels: Path | None, path_template: str) -> list[VideoRecord]:
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
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
                VideoRecord(str(root / path_template.format(**fields)), index[row["label"]], row["youtube_id"])
            )
        except (KeyError, ValueError) as err:
            raise AnnotationError(f"{path}:{number}: {err!r} in {row}") from err
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
    if fmt in ("list", "rawframes"):
        return _read_list(path, root, rawframes=fmt == "rawframes")
    if fmt == "ssv2":
        return _read_ssv2(path, root, labels, video_ext)
    if fmt == "kinetics":
        return _read_kinetics(path, root, labels, path_template)
    raise AnnotationError(f"unknown annotation format {fmt!r}")
