"""Video question answering data: open-ended (an answer vocabulary) and multiple-choice, with question types.

Formats (``format``):

- ``qa``: MSRVTT-QA / MSVD-QA style JSON, ``[{"video_id", "question", "answer", "type"?}, ...]`` (a numeric
  ``category_id`` is read as the type too); videos at ``<root>/<video_prefix><video_id><video_ext>`` (MSRVTT-QA:
  prefix ``video``). Answers index into the answer vocabulary (``answers``: a text file, one answer a line, or a
  JSON list); a question whose answer is outside the vocabulary keeps label -1 (counted wrong in evaluation, left
  out of training, as in the papers' top-K answer setting).
- ``mc``: multiple choice (MSRVTT-MC: ``multiple_choice.csv`` with ``video_id, a1..a5, answer`` where ``answer``
  is the index of the right option), or JSON ``[{"video_id", "question"?, "candidates": [...], "answer": i}]``.

Samples add ``question`` (a string), ``qtype`` and, for ``mc``, ``candidates`` (a list per sample) to the batch.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Literal

from lit_i2v.data.annotations import AnnotationError, VideoRecord, read_json, read_text
from lit_i2v.data.datamodule import VideoDataModule
from lit_i2v.data.dataset import VideoClipDataset, collate_clips
from lit_i2v.data.synthetic import SYNTHETIC_ROOT, write_qa
from lit_i2v.errors import ConfigError

QAFormat = Literal["qa", "mc"]


def read_answers(path: str | Path) -> list[str]:
    """The answer vocabulary: a JSON list or a text file, one answer a line."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"answers file not found: {path}")
    if path.suffix == ".json":
        return [str(a) for a in read_json(path)]
    return [line.strip() for line in read_text(path).splitlines() if line.strip()]


def read_qa(
    path: str | Path,
    root: str | Path,
    format: QAFormat,
    answers: list[str] | None = None,
    video_prefix: str = "",
    video_ext: str = ".mp4",
) -> tuple[list[VideoRecord], list[dict]]:
    """Records (label: answer index, or the right option for ``mc``) and per-record ``question``, ``qtype`` and
    ``candidates``."""
    path, root = Path(path), Path(root)
    rows: list[dict] = []
    if format == "mc" and path.suffix == ".csv":
        with io.StringIO(read_text(path), newline="") as f:
            for line, row in enumerate(csv.DictReader(f), start=2):
                options = [row[k] for k in sorted(row) if k.startswith("a") and k[1:].isdigit()]
                if not options or "answer" not in row:
                    raise AnnotationError(f"{path}:{line}: needs video_id, a1..aN and answer columns")
                rows.append({"video_id": row["video_id"], "question": "", "candidates": options,
                             "answer": int(row["answer"]), "type": "mc"})  # fmt: skip
    else:
        rows = read_json(path)
    index = {a: i for i, a in enumerate(answers or [])}
    records, extras = [], []
    for i, row in enumerate(rows):
        if "video_id" not in row or "answer" not in row:
            raise AnnotationError(f"{path}: item {i} needs video_id and answer")
        vid = str(row["video_id"])
        if format == "mc":
            candidates = [str(c) for c in row["candidates"]]
            label = int(row["answer"])
            if not 0 <= label < len(candidates):
                raise AnnotationError(f"{path}: item {i}: answer {label} is not one of {len(candidates)} options")
        else:
            if not answers:
                raise AnnotationError(f"{path}: open-ended QA needs data.answers (the answer vocabulary)")
            candidates, label = [], index.get(str(row["answer"]), -1)
        qtype = str(row.get("type", row.get("category_id", "all")))
        records.append(VideoRecord(str(root / f"{video_prefix}{vid}{video_ext}"), label, vid))
        extras.append({"question": str(row.get("question", "")), "qtype": qtype, "candidates": candidates})
    if not records:
        raise AnnotationError(f"{path}: no questions")
    return records, extras


class QAClipDataset(VideoClipDataset):
    """``VideoClipDataset`` whose samples carry their question, type and (multiple choice) candidates."""

    def __init__(self, records: list[VideoRecord], extras: list[dict], *args, **kwargs) -> None:
        super().__init__(records, *args, **kwargs)
        self.extras = extras

    def __getitem__(self, index: int) -> dict:
        sample = super().__getitem__(index)
        sample.update(self.extras[sample["index"]])  # the (possibly replaced) video's own question
        sample["label"] = self.records[sample["index"]].label
        return sample


def collate_qa(samples: list[dict]) -> dict:
    """Clip collation (``collate_clips``), with questions, types and candidate lists kept as Python lists."""
    keep = ("question", "qtype", "candidates")
    batch = collate_clips([{k: v for k, v in s.items() if k not in keep} for s in samples])
    for key in keep:
        batch[key] = [s[key] for s in samples]
    return batch


class QADataModule(VideoDataModule):
    """Videos with questions.

    Args:
        train, val, test, root: split files and the video folder.
        format: ``qa`` (open-ended) or ``mc`` (multiple choice).
        answers: the answer vocabulary file (open-ended).
        video_prefix: put before ``video_id`` in file names (MSRVTT-QA: ``video``).
        Others: as ``VideoDataModule``.
    """

    def __init__(
        self,
        train: str | None = None,
        val: str | None = None,
        test: str | None = None,
        root: str = "",
        format: QAFormat = "qa",
        answers: str | None = None,
        video_prefix: str = "",
        video_ext: str = ".mp4",
        **kwargs,
    ) -> None:
        synthetic = kwargs.get("synthetic") is not None
        if synthetic and answers:
            raise ConfigError("data.answers: the synthetic set has its own; drop it or set data.synthetic: null")
        self.qa_format, self.video_prefix = format, video_prefix
        # the synthetic set's vocabulary is its own answers.json (its layout hands it to the base as labels)
        self.answers_file = (
            str(Path(root or SYNTHETIC_ROOT) / "answers.json") if synthetic and format == "qa" else answers
        )
        self.extras: dict[str, list[dict]] = {}  # questions of each split, filled as the splits are read
        super().__init__(train=train, val=val, test=test, root=root, video_ext=video_ext, labels=answers, **kwargs)

    def synthetic_layout(self, root: Path) -> dict:
        splits = {"train": "train", "val": "validation", "test": "test"}
        files = {s: str(root / f"{self.qa_format}_{name}.json") for s, name in splits.items()}
        return files | {"labels": str(root / "answers.json") if self.qa_format == "qa" else None}

    def write_synthetic(self) -> None:
        write_qa(self.synthetic.write(self.dataset_root), seed=self.synthetic.seed)

    def class_names(self) -> list[str] | None:
        return read_answers(self.answers_file) if self.answers_file else None

    def collate_fn(self):
        return collate_qa

    def read_records(self, split: str) -> list[VideoRecord]:
        answers = self.class_names() if self.qa_format == "qa" else None
        records, extras = read_qa(
            self.files[split], self.root, self.qa_format, answers, self.video_prefix, self.video_ext
        )
        if split == "train" and self.qa_format == "qa":  # answers outside the vocabulary cannot be learnt
            kept = [i for i, r in enumerate(records) if r.label >= 0]
            if not kept:
                raise AnnotationError(
                    f"{self.files[split]}: none of its {len(records)} answers is in data.answers ({self.answers_file})"
                )
            records, extras = [records[i] for i in kept], [extras[i] for i in kept]
        self.extras[split] = extras
        return records

    def build_dataset(self, split: str) -> QAClipDataset:
        records = self.records(split)
        return QAClipDataset(records, self.extras[split], **self.clip_args(split))
