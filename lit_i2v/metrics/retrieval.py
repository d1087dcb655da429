"""Text-video retrieval metrics on the full similarity matrix: R@K, median and mean rank, both directions.

``sim`` is ``(num_texts, num_videos)``; ``text_video[i]`` is the video that caption i describes (a video may have
several captions, as in MSR-VTT's training split, MSVD and the full test sets).

- text→video: the rank of caption i's video among all videos.
- video→text: for each video, the best rank among its own captions, over all captions (the usual convention when
  a video has several captions; with one caption each it is the plain rank).

Ties count against the model: a rank is 1 + the number of candidates scoring higher *or equal*, the true one aside,
so a constant similarity matrix scores the worst rank and never a lucky R@1. Similarities are computed in chunks of
texts (``chunked_similarity``), so 1k x 1k and much larger test sets fit in memory.
"""

from __future__ import annotations

import torch
from torch import Tensor


def chunked_similarity(texts: Tensor, videos: Tensor, chunk: int = 4096) -> Tensor:
    """``(N_t, E) x (N_v, E)`` → ``(N_t, N_v)`` float32, computed ``chunk`` texts at a time."""
    out = torch.empty(texts.shape[0], videos.shape[0], dtype=torch.float32, device=texts.device)
    v = videos.float()
    for start in range(0, texts.shape[0], chunk):
        out[start : start + chunk] = texts[start : start + chunk].float() @ v.t()
    return out


def dual_softmax(sim: Tensor, temperature: float = 100.0) -> Tensor:
    """Dual-softmax re-ranking at inference (Cheng et al. 2021, CAMoE): each text-video score is weighted by the
    softmax over texts of that video's column, suppressing videos that every text likes."""
    return sim * torch.softmax(sim * temperature, dim=0)


def _ranks(sim: Tensor, positives: Tensor) -> Tensor:
    """1-based pessimistic ranks of ``sim[i, positives[i]]`` in each row."""
    true = sim.gather(1, positives.view(-1, 1))
    return (sim >= true).sum(1)  # the true one counts itself: rank 1 when nothing else is as high


def _summary(ranks: Tensor, prefix: str) -> dict[str, float]:
    r = ranks.float()
    return {
        f"{prefix}/R@1": float((r <= 1).float().mean() * 100),
        f"{prefix}/R@5": float((r <= 5).float().mean() * 100),
        f"{prefix}/R@10": float((r <= 10).float().mean() * 100),
        f"{prefix}/MdR": float(r.median()),
        f"{prefix}/MnR": float(r.mean()),
    }


def retrieval_metrics(sim: Tensor, text_video: Tensor, chunk: int = 1024) -> dict[str, float]:
    """R@1/5/10 (percent), median and mean rank for ``t2v`` and ``v2t``."""
    num_texts, num_videos = sim.shape
    if text_video.shape != (num_texts,):
        raise ValueError(f"text_video has shape {tuple(text_video.shape)}, expected ({num_texts},)")
    covered = torch.zeros(num_videos, dtype=torch.bool, device=sim.device)
    covered[text_video] = True
    if not covered.all():
        raise ValueError(f"{int((~covered).sum())} of {num_videos} videos have no caption")
    t2v = _ranks(sim, text_video)
    # video→text: every caption of a video is a positive; take the best (smallest) of their ranks.
    scores = sim.t()  # (V, T)
    caption_ranks = torch.empty(num_texts, dtype=torch.long, device=sim.device)
    for start in range(0, num_texts, chunk):  # rank of caption j in its video's row, a chunk of captions at a time
        j = torch.arange(start, min(start + chunk, num_texts), device=sim.device)
        rows = scores[text_video[j]]  # (c, T)
        caption_ranks[j] = (rows >= rows.gather(1, j.view(-1, 1))).sum(1)
    v2t = torch.full((num_videos,), num_texts + 1, dtype=torch.long, device=sim.device)
    v2t = v2t.scatter_reduce(0, text_video, caption_ranks, reduce="amin")
    return {**_summary(t2v, "t2v"), **_summary(v2t, "v2t")}
