"""Caption metrics: pycocoevalcap's BLEU, METEOR, ROUGE-L and CIDEr-D, on cases worked out by hand."""

from __future__ import annotations

import math

import pytest

pytest.importorskip("pycocoevalcap")

from lit_i2v.metrics.captions import caption_metrics, java_available, simple_tokenize  # noqa: E402

REFS = {"v1": ["the cat sat on the mat"], "v2": ["a dog runs in a park"]}


@pytest.mark.parametrize("java", [True, False], ids=["ptb-java", "simple"])
def test_perfect_captions_score_the_maximum(java):
    if java and not java_available():
        pytest.skip("no java: .ci/run installs default-jre-headless")
    scores = caption_metrics(REFS, {k: v[0] for k, v in REFS.items()}, java=java)
    assert scores["bleu4"] == pytest.approx(1.0, abs=1e-6) and scores["rouge_l"] == pytest.approx(1.0)
    assert scores["cider"] == pytest.approx(10.0)  # CIDEr-D: cosine 1 at every n, x10; no word shared across videos
    assert scores["videos"] == 2
    if java:
        assert scores["tokenizer"] == "ptb" and scores["meteor"] > 0.99
    else:
        assert "not comparable with papers" in scores["tokenizer"] and "meteor" not in scores


def test_bleu_and_rouge_by_hand():
    """ "the cat" against "the cat sat on the mat": BLEU-1 = precision 2/2 times the brevity penalty e^(1 - 6/2);
    ROUGE-L: LCS 2, precision 1, recall 2/6, F with beta 1.2."""
    scores = caption_metrics({"v1": REFS["v1"]}, {"v1": "the cat"}, java=False)
    assert scores["bleu1"] == pytest.approx(math.exp(1 - 6 / 2), rel=1e-6)
    p, r, beta = 1.0, 2 / 6, 1.2
    assert scores["rouge_l"] == pytest.approx((1 + beta**2) * p * r / (r + beta**2 * p), rel=1e-6)


def test_ptb_tokenizer_splits_as_the_papers_do():
    if not java_available():
        pytest.skip("no java")
    with_ptb = caption_metrics({"v1": ["A man isn't singing."]}, {"v1": "a man is n't singing"}, java=True)
    assert with_ptb["bleu4"] == pytest.approx(1.0, abs=1e-6)  # PTB: "isn't" -> "is n't", punctuation dropped
    assert simple_tokenize("A man isn't singing.") == "a man isn t singing"


def test_bad_inputs_are_named():
    with pytest.raises(ValueError, match=r"without references: \['v9'\]"):
        caption_metrics(REFS, {"v9": "a cat"}, java=False)
    with pytest.raises(ValueError, match="no predictions"):
        caption_metrics(REFS, {}, java=False)
