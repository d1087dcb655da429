"""Metrics against hand-computed cases: ties, several captions per video, chunking."""

from __future__ import annotations

import pytest
import torch

from lit_i2v.metrics import chunked_similarity, dual_softmax, retrieval_metrics


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
    m = retrieval_metrics(sim, torch.tensor([0, 0, 1]))
    assert m["t2v/R@1"] == pytest.approx(100 * 2 / 3)  # caption 0 ranks video 0 second
    # video 0 column [0.2, 0.8, 0.3]: its best caption (1) ranks first; video 1 [0.9, 0.1, 0.7]: caption 2 second
    assert m["v2t/R@1"] == 50 and m["v2t/MnR"] == 1.5


def test_chunking_changes_nothing():
    torch.manual_seed(0)
    texts, videos = torch.randn(50, 8), torch.randn(20, 8)
    assert torch.allclose(chunked_similarity(texts, videos, chunk=7), texts @ videos.t(), atol=1e-6)
    sim, owner = texts @ videos.t(), torch.arange(50) % 20
    assert retrieval_metrics(sim, owner, chunk=3) == retrieval_metrics(sim, owner, chunk=1000)


def test_every_video_needs_a_caption_and_dual_softmax_keeps_shape():
    with pytest.raises(ValueError, match="1 of 3 videos have no caption"):
        retrieval_metrics(torch.zeros(2, 3), torch.tensor([0, 1]))
    sim = torch.tensor([[0.9, 0.85], [0.95, 0.1]])  # text 0 slightly prefers video 0, which text 1 likes more
    reranked = dual_softmax(sim, temperature=100)
    assert sim[0].argmax() == 0 and reranked[0].argmax() == 1  # re-ranked, text 0 takes the video nobody else wants
    assert reranked.shape == sim.shape and reranked[1].argmax() == 0
