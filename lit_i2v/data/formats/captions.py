"""Videos with captions, for text-video retrieval and captioning: the annotation formats, read by ``Captions``.

Formats (``format``):

- ``captions``: lit_i2v's JSON, ``[{"video_id": "v1", "captions": ["...", "..."], "path": "v1.mp4"?}, ...]``
  (``path`` relative to ``root``, default ``<video_id><video_ext>``); the synthetic set is written in it.
- ``msrvtt``: MSR-VTT as CLIP4Clip reads it: the split file is a CSV of ``video_id`` (``MSRVTT_train.9k.csv``,
  ``MSRVTT_train.7k.csv``) and the captions come from ``MSRVTT_data.json`` (``captions``: its ``sentences`` list of
  ``{"video_id", "caption"}``); every caption of a video is kept (about 20 each).
- ``jsfusion``: the 1k-A test split, ``MSRVTT_JSFUSION_test.csv`` (``key,vid_key,video_id,sentence``): one caption
  per video.
- ``msvd``: MSVD as CLIP4Clip and X-Pool read it: the split file lists one video id a line (``train_list.txt``,
  ``test_list.txt``) and the captions (about 40 a video) come from ``data.annotations.captions``: CLIP4Clip's
  ``raw-captions.pkl`` (video id → token lists) or X-Pool's ``captions_msvd.json`` (video id → sentences).
- ``didemo``: DiDeMo's ``train_data.json``/``test_data.json`` (a list of ``{"video", "description", ...}``) for
  paragraph-to-video retrieval: a video's descriptions are joined in order into one caption (CLIP4Clip's setting).
- ``activitynet``: ActivityNet Captions' ``train.json``/``val_1.json`` (video id → ``{"sentences": [...], ...}``),
  paragraph-to-video: the sentences joined into one caption.
- ``msrvtt_split``: MSR-VTT's own captioning splits (6513 train, 497 validate, 2990 test videos), read from
  ``MSRVTT_data.json`` itself (its ``videos`` list names each video's split; the split file is that JSON for every
  split), every caption kept: the captioning papers' setting.
- ``vatex``: VATEX (Wang et al., ICCV 2019) JSON, ``[{"videoID", "enCap": [10 English captions], ...}]``; videos
  ``<videoID><video_ext>``.

Training samples one caption per video per step (a different one each epoch); evaluation scores every caption of
the split against every video (``TextVideoRetrieval``).
"""

from __future__ import annotations

import csv
import io
import random
from pathlib import Path
from typing import Literal

from lit_i2v.data.formats.annotations import (
    AnnotationError,
    Annotations,
    VideoRecord,
    read_json,
    read_text,
    synthetic_splits,
)
from lit_i2v.data.synthetic import write_captions

CaptionFormat = Literal["captions", "msrvtt", "jsfusion", "msvd", "didemo", "activitynet", "msrvtt_split", "vatex"]
MSRVTT_SPLITS = {"train": "train", "val": "validate", "test": "test"}


def _json(path: Path):
    return read_json(path)


def _msvd_captions(path: Path) -> dict[str, list[str]]:
    """MSVD captions by video id, from CLIP4Clip's pickle (token lists) or X-Pool's JSON (sentences)."""
    if path.suffix == ".pkl":
        import pickle

        with open(path, "rb") as f:
            raw = pickle.load(f)  # the dataset's own release format; only a file the user configured is read
        return {vid: [" ".join(t) if isinstance(t, list) else str(t) for t in caps] for vid, caps in raw.items()}
    return {vid: [str(c) for c in caps] for vid, caps in _json(path).items()}


def read_captions(
    path: str | Path,
    root: str | Path,
    format: CaptionFormat,
    captions: str | None = None,
    video_ext: str = ".mp4",
    split: str = "train",
) -> tuple[list[VideoRecord], list[list[str]]]:
    """Records (label -1) and, aligned with them, each video's captions (``split``: which of ``msrvtt_split``'s)."""
    path, root = Path(path), Path(root)
    by_video: dict[str, list[str]] = {}
    paths: dict[str, str] = {}
    if format == "captions":
        for i, item in enumerate(_json(path)):
            if not isinstance(item, dict) or "video_id" not in item or not item.get("captions"):
                raise AnnotationError(f"{path}: item {i} needs a video_id and a non-empty captions list")
            by_video[str(item["video_id"])] = [str(c) for c in item["captions"]]
            if "path" in item:
                paths[str(item["video_id"])] = item["path"]
    elif format == "msrvtt":
        if not captions:
            raise AnnotationError(f"{path}: format msrvtt needs data.annotations.captions (MSRVTT_data.json)")
        sentences: dict[str, list[str]] = {}
        for s in read_json(Path(captions))["sentences"]:
            sentences.setdefault(s["video_id"], []).append(s["caption"])
        with io.StringIO(read_text(path), newline="") as f:
            for line, row in enumerate(csv.DictReader(f), start=2):
                vid = row.get("video_id")
                if not vid or vid not in sentences:
                    raise AnnotationError(f"{path}:{line}: video {vid!r} has no caption in {captions}")
                by_video[vid] = sentences[vid]
    elif format == "jsfusion":
        with io.StringIO(read_text(path), newline="") as f:
            for line, row in enumerate(csv.DictReader(f), start=2):
                if not row.get("video_id") or not row.get("sentence"):
                    raise AnnotationError(f"{path}:{line}: needs video_id and sentence columns")
                by_video.setdefault(row["video_id"], []).append(row["sentence"])
    elif format == "msvd":
        if not captions:
            raise AnnotationError(
                f"{path}: format msvd needs data.annotations.captions (raw-captions.pkl or captions_msvd.json)"
            )
        sentences = _msvd_captions(Path(captions))
        for line, vid in enumerate(read_text(path).splitlines(), start=1):
            vid = vid.strip()
            if vid and not sentences.get(vid):
                raise AnnotationError(f"{path}:{line}: video {vid!r} has no caption in {captions}")
            if vid:
                by_video[vid] = sentences[vid]
    elif format == "didemo":
        for i, item in enumerate(_json(path)):
            if not isinstance(item, dict) or "video" not in item or "description" not in item:
                raise AnnotationError(f"{path}: item {i} needs video and description")
            by_video.setdefault(Path(item["video"]).stem, []).append(item["description"].strip())
        by_video = {vid: [" ".join(parts)] for vid, parts in by_video.items()}  # one paragraph a video
    elif format == "activitynet":
        for vid, item in _json(path).items():
            if not isinstance(item, dict) or not item.get("sentences"):
                raise AnnotationError(f"{path}: video {vid!r} needs a non-empty sentences list")
            by_video[vid] = [" ".join(s.strip() for s in item["sentences"])]
    elif format == "msrvtt_split":
        data = read_json(path)
        if not isinstance(data, dict) or "videos" not in data or "sentences" not in data:
            raise AnnotationError(f"{path}: format msrvtt_split reads MSRVTT_data.json (its videos and sentences)")
        wanted = MSRVTT_SPLITS.get(split, split)
        chosen = {v["video_id"] for v in data["videos"] if v.get("split") == wanted}
        for s in data["sentences"]:
            if s["video_id"] in chosen:
                by_video.setdefault(s["video_id"], []).append(s["caption"])
    elif format == "vatex":
        for i, item in enumerate(_json(path)):
            if not isinstance(item, dict) or "videoID" not in item or not item.get("enCap"):
                raise AnnotationError(f"{path}: item {i} needs videoID and a non-empty enCap list")
            by_video[str(item["videoID"])] = [str(c) for c in item["enCap"]]
    else:
        raise AnnotationError(f"{path}: unknown caption format {format!r} ({', '.join(CaptionFormat.__args__)})")
    if not by_video:
        raise AnnotationError(f"{path}: no videos")
    records = [
        VideoRecord(str(root / paths.get(vid, f"{vid}{video_ext}")), -1, vid) for vid in by_video
    ]  # fmt: skip
    return records, list(by_video.values())


class Captions(Annotations):
    """Captions, for text-video retrieval and captioning: training samples carry one of their video's captions
    (``caption``, a different one each epoch) and all of them (``captions``, a list per video), evaluation samples
    all of them, so the task scores every caption of the split without asking the DataModule.

    Args:
        format: ``captions``, ``msrvtt``, ``jsfusion``, ``msvd``, ``didemo``, ``activitynet``, ``msrvtt_split`` or
            ``vatex`` (see the module docstring).
        eval_format: the format of the val and test splits, when it differs (MSR-VTT: ``msrvtt`` for training,
            ``jsfusion`` for the 1k-A test).
        captions: the caption file of the ``msrvtt`` (``MSRVTT_data.json``) and ``msvd`` formats.
        video_ext: extension of a video id's file under ``root``.
    """

    def __init__(
        self,
        format: CaptionFormat = "captions",
        eval_format: CaptionFormat | None = None,
        captions: str | None = None,
        video_ext: str = ".mp4",
    ) -> None:
        self.format, self.eval_format = format, eval_format or format
        self.captions, self.video_ext = captions, video_ext

    @property
    def splits_share_a_file(self) -> bool:
        """MSR-VTT's captioning splits are all read from MSRVTT_data.json: the DataModule checks each split's videos."""
        return "msrvtt_split" in (self.format, self.eval_format)

    def read(self, path: str, root: str, split: str) -> tuple[list[VideoRecord], list[dict]]:
        fmt = self.format if split == "train" else self.eval_format
        records, captions = read_captions(path, root, fmt, self.captions, self.video_ext, split)
        return records, [{"captions": c} for c in captions]

    def sample(self, extra: dict, training: bool, rng: random.Random) -> dict:
        # training: one caption to learn, and all of them (self-critical training's reward reads them)
        return {"caption": rng.choice(extra["captions"]), "captions": extra["captions"]} if training else extra

    def files(self) -> dict[str, str | None]:
        return {"annotations.captions": self.captions}

    def synthetic(self, root: Path) -> tuple[Captions, dict[str, str]]:
        return Captions("captions", video_ext=self.video_ext), synthetic_splits(root, "captions_")

    def write_synthetic(self, synthetic, root: Path) -> None:
        write_captions(synthetic.write(root))
