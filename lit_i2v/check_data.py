"""What ``python -m lit_i2v check-data`` does: open every video of a split and decode its evaluation frames.

A video is ``missing`` (no file or frame folder), ``undecodable`` (the decoders fail on it) or fine. Decoding runs in
worker processes; the report names every bad file so it can be fixed or removed from the annotation file.
"""

from __future__ import annotations

from multiprocessing import get_context
from pathlib import Path

from lit_i2v.data.annotations import VideoRecord
from lit_i2v.data.datamodule import VideoDataModule
from lit_i2v.data.decode import open_video
from lit_i2v.data.sampling import FrameSampler


def _check(args: tuple[VideoRecord, FrameSampler, str]) -> tuple[str, str, str]:
    record, sampler, backend = args
    exists = Path(record.path).is_dir() if record.num_frames is not None else Path(record.path).is_file()
    if not exists:
        return "missing", record.path, "not found"
    try:
        reader = open_video(record.path, backend, record.num_frames)
        clips = sampler(reader.num_frames, training=False)
        reader.get_frames([i for clip in clips for i in clip])
    except Exception as err:
        return "undecodable", record.path, str(err)
    return "ok", record.path, ""


def check_split(datamodule: VideoDataModule, split: str = "train", workers: int = 2) -> dict:
    records = datamodule.records(split)
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
        "ok": sum(status == "ok" for status, _, _ in results),
        "missing": [path for status, path, _ in results if status == "missing"],
        "undecodable": [{"path": path, "error": err} for status, path, err in results if status == "undecodable"],
    }


def format_report(report: dict) -> str:
    lines = [
        f"{report['split']} split ({report['annotation_file']}): {report['total']} videos, {report['ok']} fine, "
        f"{len(report['missing'])} missing, {len(report['undecodable'])} undecodable"
    ]
    lines += [f"  missing      {path}" for path in report["missing"]]
    lines += [f"  undecodable  {bad['path']}: {bad['error']}" for bad in report["undecodable"]]
    return "\n".join(lines)
