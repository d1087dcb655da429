"""Generated answers against reference answers, as open-ended video QA was scored before LLM judges.

MSVD-QA and MSRVTT-QA (Xu et al., ACM MM 2017) score an answer right when it equals the one-word reference: exact
match. Generated answers are sentences, so both sides are normalised first, as SQuAD's official evaluation script
(``normalize_answer``: lower case, punctuation and the articles a/an/the removed, whitespace collapsed) does; and
``contains`` reports, beside it, whether the normalised reference appears as whole words in the normalised answer
(a lenient reading for chatty models, not comparable with the exact-match figures of papers).

The LLM papers since Video-ChatGPT score with a GPT judge (yes/no and a 0-5 score); it needs a network and changes
with GPT's versions, so lit_i2v does not run it: :class:`AnswerJudge` is the hook where a local judge model goes.
"""

from __future__ import annotations

import re
import string

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCTUATION = str.maketrans("", "", string.punctuation)


def normalize_answer(text: str) -> str:
    """Lower case, no punctuation, no articles, single spaces."""
    text = text.lower().translate(_PUNCTUATION)
    return " ".join(_ARTICLES.sub(" ", text).split())


def exact_match(prediction: str, reference: str) -> bool:
    return normalize_answer(prediction) == normalize_answer(reference)


def contains_match(prediction: str, reference: str) -> bool:
    """Whether the normalised reference occurs as whole words in the normalised prediction."""
    ref = normalize_answer(reference)
    return bool(ref) and f" {ref} " in f" {normalize_answer(prediction)} "


class AnswerJudge:
    """A judge of a generated answer (GPT in the LLM papers): ``(question, reference, prediction) → (correct, score)``.
    Subclass it with a local model; lit_i2v ships none and reports exact and contains matches instead."""

    def __call__(self, question: str, reference: str, prediction: str) -> tuple[bool, float]:
        raise NotImplementedError("no judge model is configured: the GPT-judged protocol needs a network")
