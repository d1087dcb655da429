"""What ``python -m lit_i2v check-data`` does: open every video of a split and decode its evaluation frames and its
last declared frame.

A video is ``missing`` (no file or frame folder), ``undecodable`` (the decoders fail on it) or fine; with the model's
``num_classes``, a label outside ``[0, num_classes)`` is reported with its file and line (``bad_labels``), every one
of them, where ``fit`` would stop at the first. A damaged video
(a file cut short: its header declares frames that do not decode) counts as undecodable, its entry carrying how many
frames decode of how many are declared; decoding the last frame finds the cut wherever the sampled frames fall.
Decoding runs in worker processes; the report names every bad file so it can be fixed or removed from the annotation
file.
"""

from __future__ import annotations

from multiprocessing import get_context
from pathlib import Path

from lit_i2v.data.datamodule import VideoDataModule
from lit_i2v.data.formats.annotations import VideoRecord
from lit_i2v.data.video.decode import DamagedVideoError, open_video
from lit_i2v.data.video.sampling import FrameSampler


def _check(args: tuple[VideoRecord, FrameSampler, str]) -> tuple[str, dict]:
    record, sampler, backend = args
    exists = Path(record.path).is_dir() if record.num_frames is not None else Path(record.path).is_file()
    if not exists:
        return "missing", {"path": record.path}
    try:
        reader = open_video(record.path, backend, record.num_frames, first_frame=record.first_frame)
        clips = sampler(reader.num_frames, training=False)
        reader.get_frames([i for clip in clips for i in clip] + [reader.num_frames - 1])
    except Exception as err:
        bad = {"path": record.path, "error": str(err)}
        if isinstance(err, DamagedVideoError):
            bad.update(decoded=err.decoded, declared=err.declared)
        return "undecodable", bad
    return "ok", {"path": record.path}


def check_split(
    datamodule: VideoDataModule, split: str = "train", workers: int = 2, num_classes: int | None = None
) -> dict:
    records = datamodule.records(split)
    bad_labels = [
        {"source": r.source or r.path, "label": r.label}
        for r in records
        if num_classes is not None and not 0 <= r.label < num_classes
    ]
    jobs = [(r, datamodule.sampler, datamodule.backend) for r in records]
    if workers > 1:
        with get_context("spawn").Pool(workers) as pool:
            results = pool.map(_check, jobs, chunksize=8)
    else:
        results = [_check(job) for job in jobs]
    return {
        "split": split,
        "annotation_file": datamodule.files[split],
        "total": len(results),
        "ok": sum(status == "ok" for status, _ in results),
        "missing": [entry["path"] for status, entry in results if status == "missing"],
        "undecodable": [entry for status, entry in results if status == "undecodable"],
        "num_classes": num_classes,
        "bad_labels": bad_labels,
    }


def format_report(report: dict) -> str:
    damaged = sum("declared" in bad for bad in report["undecodable"])
    bad_labels = report.get("bad_labels", [])
    head = (
        f"{report['split']} split ({report['annotation_file']}): {report['total']} videos, {report['ok']} fine, "
        f"{len(report['missing'])} missing, {len(report['undecodable'])} undecodable"
    )
    head += f" ({damaged} of them damaged)" if damaged else ""
    head += f", {len(bad_labels)} labels outside the {report['num_classes']} classes" if bad_labels else ""
    lines = [head] + [f"  bad label    {bad['source']}: {bad['label']}" for bad in bad_labels]
    lines += [f"  missing      {path}" for path in report["missing"]]
    for bad in report["undecodable"]:
        if "declared" in bad:
            lines.append(f"  damaged      {bad['path']}: {bad['decoded']} of {bad['declared']} declared frames decode")
        else:  # (the decoders' errors start with the path)
            error = bad["error"] if bad["error"].startswith(bad["path"]) else f"{bad['path']}: {bad['error']}"
            lines.append(f"  undecodable  {error}")
    return "\n".join(lines)
