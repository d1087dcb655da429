"""Text-video retrieval metrics on the full similarity matrix: R@K, median and mean rank, both directions.

``sim`` is ``(num_texts, num_videos)``; ``text_video[i]`` is the video that caption i describes (a video may have
several captions, as in MSR-VTT's training split, MSVD and the full test sets).

- text→video: the rank of caption i's video among all videos (one rank per caption).
- video→text (one rank per video), where videos have several captions, by one of two conventions (``v2t``):

  ``"group"`` (CLIP4Clip's ``tensor_video_to_text_sim``, X-Pool; what the CLIP-based papers report on MSVD and
  MSR-VTT): each video's caption group is scored by its best caption, and a video's rank is that of its own group
  among all videos' groups. ``"caption"`` (collaborative experts, MMT, TeachText): a video's rank is that of its
  best caption among all captions, so the other videos' captions each count. With one caption per video (MSR-VTT
  1k-A, DiDeMo and ActivityNet paragraphs) both are the plain rank; R@1 always agrees, R@5/R@10/MdR/MnR do not.

Median rank is NumPy's median (the mean of the two middle ranks for an even count), as CLIP4Clip's
``compute_metrics``, X-Pool and collaborative experts take it. CLIP4Clip's multi-caption text→video path
(``tensor_text_to_video_metrics``) alone takes ``torch.median``, the lower of the two: on MSVD its t2v MdR can be
up to half the gap between the two middle ranks below this one.

Ties count against the model: a rank is 1 + the number of candidates scoring higher *or equal*, the true one aside,
so a constant similarity matrix scores the worst rank and never a lucky R@1 (the official codes' argsort breaks
ties by position; with real-valued similarities ties do not occur). Similarities are computed in chunks of texts
(``chunked_similarity``), so 1k x 1k and much larger test sets fit in memory.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor

V2T = Literal["group", "caption"]


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


def median(values: Tensor) -> float:
    """NumPy's median: the middle value, or the mean of the two middle values of an even count."""
    s = values.double().sort().values
    n = s.numel()
    return float((s[(n - 1) // 2] + s[n // 2]) / 2)


def _summary(ranks: Tensor, prefix: str) -> dict[str, float]:
    r = ranks.double()  # float64: a mean over a million captions keeps its last digits
    return {
        f"{prefix}/R@1": float((r <= 1).double().mean() * 100),
        f"{prefix}/R@5": float((r <= 5).double().mean() * 100),
        f"{prefix}/R@10": float((r <= 10).double().mean() * 100),
        f"{prefix}/MdR": median(r),
        f"{prefix}/MnR": float(r.mean()),
    }


def _v2t_by_caption(sim: Tensor, text_video: Tensor, num_videos: int, chunk: int) -> Tensor:
    """Each video's best rank among its own captions, over all captions."""
    num_texts = sim.shape[0]
    scores = sim.t()  # (V, T)
    caption_ranks = torch.empty(num_texts, dtype=torch.long, device=sim.device)
    for start in range(0, num_texts, chunk):  # rank of caption j in its video's row, a chunk of captions at a time
        j = torch.arange(start, min(start + chunk, num_texts), device=sim.device)
        rows = scores[text_video[j]]  # (c, T)
        caption_ranks[j] = (rows >= rows.gather(1, j.view(-1, 1))).sum(1)
    v2t = torch.full((num_videos,), num_texts + 1, dtype=torch.long, device=sim.device)
    return v2t.scatter_reduce(0, text_video, caption_ranks, reduce="amin")


def _v2t_by_group(sim: Tensor, text_video: Tensor, num_videos: int, chunk: int) -> Tensor:
    """Each video's rank of its own caption group among all groups, a group scored by its best caption."""
    ranks = torch.empty(num_videos, dtype=torch.long, device=sim.device)
    for start in range(0, num_videos, chunk):  # a chunk of videos (columns) at a time: (V, c) group scores
        cols = sim[:, start : start + chunk].float()  # (T, c)
        groups = torch.full((num_videos, cols.shape[1]), float("-inf"), device=sim.device)
        groups.scatter_reduce_(0, text_video.view(-1, 1).expand_as(cols), cols, reduce="amax")  # (V groups, c)
        own = torch.arange(start, start + cols.shape[1], device=sim.device)
        true = groups.gather(0, own.view(1, -1))  # (1, c): each video's own group
        ranks[own] = (groups >= true).sum(0)
    return ranks


def retrieval_metrics(sim: Tensor, text_video: Tensor, v2t: V2T = "group", chunk: int = 1024) -> dict[str, float]:
    """R@1/5/10 (percent), median and mean rank for ``t2v`` and ``v2t`` (``v2t``: the convention for videos with
    several captions, see the module's docstring)."""
    num_texts, num_videos = sim.shape
    if text_video.shape != (num_texts,):
        raise ValueError(f"text_video has shape {tuple(text_video.shape)}, expected ({num_texts},)")
    if v2t not in ("group", "caption"):
        raise ValueError(f"v2t={v2t!r}: expected 'group' (CLIP4Clip, X-Pool) or 'caption' (collaborative experts)")
    covered = torch.zeros(num_videos, dtype=torch.bool, device=sim.device)
    covered[text_video] = True
    if not covered.all():
        raise ValueError(f"{int((~covered).sum())} of {num_videos} videos have no caption")
    t2v = _ranks(sim, text_video)
    by = _v2t_by_group if v2t == "group" else _v2t_by_caption
    return {**_summary(t2v, "t2v"), **_summary(by(sim, text_video, num_videos, chunk), "v2t")}
