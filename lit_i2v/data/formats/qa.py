"""Video question answering data: open-ended (an answer vocabulary) and multiple-choice, with question types.

Formats (``format``):

- ``qa``: MSRVTT-QA / MSVD-QA style JSON, ``[{"video_id", "question", "answer", "type"?}, ...]`` (a numeric
  ``category_id`` is read as the type too); videos at ``<root>/<video_prefix><video_id><video_ext>`` (MSRVTT-QA:
  prefix ``video``). Answers index into the answer vocabulary (``answers``: a text file, one answer a line, or a
  JSON list); a question whose answer is outside the vocabulary keeps label -1 (counted wrong in evaluation, left
  out of training, as in the papers' top-K answer setting).
- ``mc``: multiple choice (MSRVTT-MC: ``multiple_choice.csv`` with ``video_id, a1..a5, answer`` where ``answer``
  is the index of the right option), or JSON ``[{"video_id", "question"?, "candidates": [...], "answer": i}]``.
- ``open``: the ``qa`` layout without an answer vocabulary (generative QA writes its answers): every question is
  kept, label -1.
- ``activitynet``: ActivityNet-QA (Yu et al., AAAI 2019), a questions file ``<split>_q.json`` (``[{"video_name",
  "question_id", "question"}]``) and beside it the answers file ``<split>_a.json`` (``[{"question_id", "answer",
  "type"}]``, type 0-8: motion, spatial relation, temporal relation, yes/no, colour, object, location, number,
  other); ``path`` names the questions file; videos ``v_<video_name><video_ext>`` (set ``video_prefix: v_``).
- ``videochatgpt``: Video-ChatGPT's instruction data (VideoInstruct-100K, ``[{"video_id", "q", "a"}]``), for
  training generative models.

Samples add ``question`` (a string), ``qtype``, ``answer`` (the reference answer's text, which generative QA reads)
and, for ``mc``, ``candidates`` (a list per sample) to the batch.
"""

from __future__ import annotations

import csv
import io
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
from lit_i2v.data.synthetic import write_qa

QAFormat = Literal["qa", "mc", "open", "activitynet", "videochatgpt"]
GENERATIVE = ("open", "activitynet", "videochatgpt")  # formats with answers as text only (label -1)
ACTIVITYNET_TYPES = ["motion", "spatial", "temporal", "yes_no", "colour", "object", "location", "number", "other"]


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
    elif format == "activitynet":
        rows = _activitynet_rows(path)
    else:
        rows = read_json(path)
        if format == "videochatgpt":
            names = {"q": "question", "a": "answer"}  # a missing key stays missing: the check below names it
            rows = [{names.get(k, k): v for k, v in r.items()} | {"type": "instruction"} for r in rows]
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
        elif format in GENERATIVE:
            candidates, label = [], index.get(str(row["answer"]), -1)
        else:
            if not answers:
                raise AnnotationError(f"{path}: open-ended QA needs data.annotations.answers (the answer vocabulary)")
            candidates, label = [], index.get(str(row["answer"]), -1)
        qtype = str(row.get("type", row.get("category_id", "all")))
        records.append(VideoRecord(str(root / f"{video_prefix}{vid}{video_ext}"), label, vid))
        answer = candidates[label] if format == "mc" else str(row["answer"])  # the text, for generative QA
        extras.append({"question": str(row.get("question", "")), "qtype": qtype, "candidates": candidates,
                       "answer": answer})  # fmt: skip
    if not records:
        raise AnnotationError(f"{path}: no questions")
    return records, extras


def _activitynet_rows(path: Path) -> list[dict]:
    """ActivityNet-QA's questions file and, beside it, its answers file, joined by ``question_id``."""
    answers_path = path.with_name(path.name.replace("_q.json", "_a.json"))
    if answers_path == path or not answers_path.is_file():
        raise AnnotationError(f"{path}: ActivityNet-QA's answers file {answers_path.name} is not beside it")
    answers = {str(a["question_id"]): a for a in read_json(answers_path)}
    rows = []
    for i, q in enumerate(read_json(path)):
        a = answers.get(str(q.get("question_id")))
        if a is None or "video_name" not in q:
            raise AnnotationError(
                f"{path}: item {i} needs video_name and a question_id that {answers_path.name} answers"
            )
        kind = a.get("type", 8)
        qtype = ACTIVITYNET_TYPES[int(kind)] if str(kind).isdigit() and int(kind) < 9 else str(kind)
        rows.append({"video_id": q["video_name"], "question": q.get("question", ""), "answer": a["answer"],
                     "type": qtype})  # fmt: skip
    return rows


class Questions(Annotations):
    """Questions, for video QA: samples carry ``question``, ``qtype`` and (multiple choice) ``candidates``; the label
    is the answer's index in the vocabulary, or the right option.

    Args:
        format: ``qa`` (open-ended, over an answer vocabulary), ``mc`` (multiple choice), or for generative QA
            ``open``, ``activitynet``, ``videochatgpt`` (answers as text, no vocabulary).
        answers: the answer vocabulary file (open-ended).
        video_prefix: put before ``video_id`` in file names (MSRVTT-QA: ``video``).
        video_ext: extension of a video's file.
    """

    def __init__(
        self, format: QAFormat = "qa", answers: str | None = None, video_prefix: str = "", video_ext: str = ".mp4"
    ) -> None:
        self.format, self.answers, self.video_prefix, self.video_ext = format, answers, video_prefix, video_ext

    def read(self, path: str, root: str, split: str) -> tuple[list[VideoRecord], list[dict]]:
        answers = self.class_names() if self.format == "qa" else None
        records, extras = read_qa(path, root, self.format, answers, self.video_prefix, self.video_ext)
        if split == "train" and self.format == "qa":  # answers outside the vocabulary cannot be learnt
            kept = [i for i, r in enumerate(records) if r.label >= 0]
            if not kept:
                raise AnnotationError(
                    f"{path}: none of its {len(records)} answers is in data.annotations.answers ({self.answers})"
                )
            records, extras = [records[i] for i in kept], [extras[i] for i in kept]
        return records, extras

    def files(self) -> dict[str, str | None]:
        return {"annotations.answers": self.answers}

    def class_names(self) -> list[str] | None:
        return read_answers(self.answers) if self.answers else None

    def synthetic(self, root: Path) -> tuple[Questions, dict[str, str]]:
        answers = str(root / "answers.json") if self.format == "qa" else None  # the set's own vocabulary
        return Questions(self.format, answers, video_ext=self.video_ext), synthetic_splits(root, f"{self.format}_")

    def write_synthetic(self, synthetic, root: Path) -> None:
        write_qa(synthetic.write(root), seed=synthetic.seed)
