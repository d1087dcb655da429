"""Metrics against hand-computed cases: ties, several captions per video, chunking."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lit_i2v.metrics import chunked_similarity, dual_softmax, mean_class_accuracy, retrieval_metrics


def test_ranks_by_hand_one_caption_per_video():
    sim = torch.tensor(
        [
            [0.9, 0.1, 0.2],  # text 0 -> video 0: rank 1
            [0.8, 0.5, 0.1],  # text 1 -> video 1: rank 2
            [0.7, 0.6, 0.1],  # text 2 -> video 2: rank 3
        ]
    )
    m = retrieval_metrics(sim, torch.tensor([0, 1, 2]))
    assert m["t2v/R@1"] == pytest.approx(100 / 3) and m["t2v/R@5"] == 100
    assert m["t2v/MdR"] == 2 and m["t2v/MnR"] == 2
    # video->text, columns: video 0 [0.9, 0.8, 0.7] -> text 0 rank 1; video 1 [0.1, 0.5, 0.6] -> text 1 rank 2;
    # video 2 [0.2, 0.1, 0.1] -> text 2 (0.1) ties text 1 and is below text 0: rank 3
    assert m["v2t/R@1"] == pytest.approx(100 / 3) and m["v2t/MnR"] == 2


def test_ties_count_against_the_model():
    m = retrieval_metrics(torch.zeros(4, 4), torch.arange(4))
    assert m["t2v/R@1"] == 0 and m["t2v/MdR"] == 4 and m["v2t/MnR"] == 4  # a constant model ranks last


def test_several_captions_per_video_take_the_best_for_video_to_text():
    # captions 0, 1 describe video 0; caption 2 video 1
    sim = torch.tensor([[0.2, 0.9], [0.8, 0.1], [0.3, 0.7]])
    m = retrieval_metrics(sim, torch.tensor([0, 0, 1]), v2t="caption")
    assert m["t2v/R@1"] == pytest.approx(100 * 2 / 3)  # caption 0 ranks video 0 second
    # video 0 column [0.2, 0.8, 0.3]: its best caption (1) ranks first; video 1 [0.9, 0.1, 0.7]: caption 2 second
    assert m["v2t/R@1"] == 50 and m["v2t/MnR"] == 1.5


def test_video_to_text_by_caption_group_and_by_caption_differ_beyond_r1():
    # Video 0 has captions 0-2, videos 1-3 one each (captions 3-5). For video 0, its best caption (0.6) ranks
    # behind captions 3, 4, 5 (0.9, 0.8, 0.7): 4th among captions. By groups, video 0's group (best 0.6) is behind
    # the groups of videos 1, 2 and 3: also 4th. Video 1's column: its caption 3 scores 0.5, behind video 0's
    # captions (0.55, 0.54, 0.53) and caption 4 (0.52): 5th among captions, but 3rd among groups (video 0's group
    # counts once, at 0.55, and video 2's at 0.52).
    sim = torch.tensor(
        [
            [0.6, 0.55, 0.1, 0.1],
            [0.5, 0.54, 0.1, 0.1],
            [0.4, 0.53, 0.1, 0.1],
            [0.9, 0.5, 0.1, 0.1],
            [0.8, 0.52, 0.9, 0.1],
            [0.7, 0.1, 0.1, 0.9],
        ]
    )
    owner = torch.tensor([0, 0, 0, 1, 2, 3])
    by_caption = retrieval_metrics(sim, owner, v2t="caption")
    by_group = retrieval_metrics(sim, owner, v2t="group")
    # ranks by caption: [4, 5, 1, 1]; by group: [4, 3, 1, 1]
    assert by_caption["v2t/R@1"] == by_group["v2t/R@1"] == 50
    assert by_caption["v2t/MnR"] == 2.75 and by_group["v2t/MnR"] == 2.25
    assert by_caption["v2t/MdR"] == 2.5 and by_group["v2t/MdR"] == 2.0  # NumPy's median of an even count
    assert by_caption["t2v/R@1"] == by_group["t2v/R@1"]  # text->video does not depend on the convention
    with pytest.raises(ValueError, match="v2t='best'"):
        retrieval_metrics(sim, owner, v2t="best")


def test_median_rank_of_an_even_count_is_numpys():
    # ranks 1, 2, 3, 4: torch.median would say 2, NumPy (and the papers' code) 2.5
    sim = torch.tensor([[0.9, 0.1, 0.1, 0.1], [0.9, 0.8, 0.1, 0.1], [0.9, 0.8, 0.7, 0.1], [0.9, 0.8, 0.7, 0.6]])
    m = retrieval_metrics(sim, torch.arange(4))
    assert m["t2v/MdR"] == 2.5 == float(np.median([1, 2, 3, 4]))


def _clip4clip_reference(sim: np.ndarray, owner: np.ndarray) -> dict[str, float]:
    """The papers' evaluation, restated in NumPy from CLIP4Clip's ``metrics.py`` and X-Pool's ``modules/metrics.py``
    (neither is a package): captions padded per video with -inf into (V, max captions, V); text->video ranks by a
    double argsort of each caption row, video->text on the (V, V) matrix of each group's best caption, both with
    ``np.median``."""
    num_videos = int(owner.max()) + 1
    groups = [np.flatnonzero(owner == v) for v in range(num_videos)]
    width = max(len(g) for g in groups)
    padded = np.full((num_videos, width, num_videos), -np.inf)
    for v, g in enumerate(groups):
        padded[v, : len(g)] = sim[g]
    stacked = padded.transpose(1, 0, 2)  # (max captions, V, V)
    second = np.argsort(np.argsort(-stacked, axis=-1, kind="stable"), axis=-1, kind="stable")
    ranks = np.diagonal(second, axis1=1, axis2=2).reshape(-1)
    valid = np.isfinite(np.diagonal(padded, axis1=0, axis2=2).reshape(-1))
    ranks = ranks[valid]
    out = {f"t2v/R@{k}": float(np.sum(ranks < k) * 100 / len(ranks)) for k in (1, 5, 10)}
    out |= {"t2v/MdR": float(np.median(ranks) + 1), "t2v/MnR": float(np.mean(ranks) + 1)}
    square = padded.max(axis=1).T  # (V, V): video i against video j's best caption
    order = np.sort(-square, axis=1)
    ind = np.where(order - np.diag(-square)[:, None] == 0)[1]
    out |= {f"v2t/R@{k}": float(np.sum(ind < k) * 100 / len(ind)) for k in (1, 5, 10)}
    return out | {"v2t/MdR": float(np.median(ind) + 1), "v2t/MnR": float(np.mean(ind) + 1)}


@pytest.mark.parametrize("captions_per_video", [1, 3])
def test_equal_to_the_papers_evaluation_code(captions_per_video):
    rng = np.random.default_rng(captions_per_video)
    num_videos = 40  # an even count: the median is a mean of two ranks
    owner = np.repeat(np.arange(num_videos), captions_per_video)
    owner[: num_videos // 2] = np.arange(num_videos // 2) % num_videos  # uneven groups: some videos have more
    owner = np.concatenate([owner, np.arange(num_videos)])  # ...and every video has at least one
    texts, videos = rng.normal(size=(len(owner), 8)), rng.normal(size=(num_videos, 8))
    texts[: len(owner) // 2] += 0.8 * videos[owner[: len(owner) // 2]]  # half the captions find their video
    sim = texts @ videos.T
    ours = retrieval_metrics(torch.from_numpy(sim), torch.from_numpy(owner), v2t="group")
    reference = _clip4clip_reference(sim, owner)
    assert ours == pytest.approx(reference, abs=1e-9)


def test_chunking_changes_nothing():
    torch.manual_seed(0)
    texts, videos = torch.randn(50, 8), torch.randn(20, 8)
    assert torch.allclose(chunked_similarity(texts, videos, chunk=7), texts @ videos.t(), atol=1e-6)
    sim, owner = texts @ videos.t(), torch.arange(50) % 20
    for v2t in ("group", "caption"):
        assert retrieval_metrics(sim, owner, v2t, chunk=3) == retrieval_metrics(sim, owner, v2t, chunk=1000)


def test_every_video_needs_a_caption_and_dual_softmax_keeps_shape():
    with pytest.raises(ValueError, match="1 of 3 videos have no caption"):
        retrieval_metrics(torch.zeros(2, 3), torch.tensor([0, 1]))
    sim = torch.tensor([[0.9, 0.85], [0.95, 0.1]])  # text 0 slightly prefers video 0, which text 1 likes more
    reranked = dual_softmax(sim, temperature=100)
    assert sim[0].argmax() == 0 and reranked[0].argmax() == 1  # re-ranked, text 0 takes the video nobody else wants
    assert reranked.shape == sim.shape and reranked[1].argmax() == 0


def _mmaction2_mean_class_accuracy(scores: np.ndarray, labels: np.ndarray) -> float:
    """mmaction2's ``mean_class_accuracy`` restated (``mmaction/evaluation/functional/accuracy.py``): a confusion
    matrix over the labels that occur in the predictions or the ground truth, per-class hits over counts (0 for a
    class with no video), averaged."""
    pred = scores.argmax(1)
    present = np.unique(np.concatenate([pred, labels]))
    where = {label: i for i, label in enumerate(present)}
    matrix = np.zeros((len(present), len(present)))
    for p, t in zip(pred, labels):
        matrix[where[t], where[p]] += 1
    counts, hits = matrix.sum(1), np.diag(matrix)
    return float(np.mean([h / c if c else 0.0 for c, h in zip(counts, hits)]))


@pytest.mark.parametrize("seed", range(4))
def test_mean_class_accuracy_equals_mmaction2(seed):
    from torchmetrics.classification import MulticlassConfusionMatrix

    rng = np.random.default_rng(seed)
    num_classes = 10
    labels = rng.integers(0, 7, size=50)  # classes 7-9 have no video; some of them get predicted
    scores = rng.normal(size=(50, num_classes))
    scores[np.arange(50), labels] += rng.uniform(0, 3, size=50)
    confusion = MulticlassConfusionMatrix(num_classes)(torch.from_numpy(scores).argmax(1), torch.from_numpy(labels))
    ours = mean_class_accuracy(confusion)
    assert ours == pytest.approx(_mmaction2_mean_class_accuracy(scores, labels), abs=1e-12)
    top1 = float((scores.argmax(1) == labels).mean())
    assert ours != pytest.approx(top1)  # unbalanced classes: not the micro accuracy


def test_mean_class_accuracy_by_hand():
    # class 0: 2 of 3 right; class 1: 1 of 1; class 2: predicted once, no video (counts as 0); class 3: absent
    confusion = torch.tensor([[2, 0, 1, 0], [0, 1, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0]])
    assert mean_class_accuracy(confusion) == pytest.approx((2 / 3 + 1 + 0) / 3)
