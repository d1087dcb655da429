"""The span head of temporal grounding: query-conditioned start/end/inside logits over a video's segment features,
with its training targets and its decoding into ranked spans.

A proposal-free head in the spirit of span-based localisers such as VSLNet (Zhang et al. 2020), on CLIP features
as Moment-DETR's: each segment's feature ``v_k`` and the query embedding ``q`` are fused as ``[v_k, q, v_k * q]``,
a transformer encoder relates the segments (learned position embeddings), and three linear outputs give per-segment
start, end and inside logits. Decoding: span ``(i, j)``, i <= j, scores ``p_start(i) * p_end(j)``; the top spans
after non-maximum suppression are the ranked predictions.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from lit_i2v.metrics.grounding import temporal_iou


class SpanHead(nn.Module):
    """Query-conditioned start/end/inside logits over a sequence of segment features; built by the task once the
    feature width is known (``build(feature_dim)``), as the other heads.

    Args:
        hidden: width of the encoder.
        layers: transformer encoder layers over the segments.
        heads: attention heads.
        dropout: dropout in the fusion and the encoder.
        max_segments: longest sequence the position embedding covers.
    """

    def __init__(
        self, hidden: int = 256, layers: int = 2, heads: int = 4, dropout: float = 0.1, max_segments: int = 512
    ) -> None:
        super().__init__()
        self.hidden, self.layers, self.heads, self.dropout = hidden, layers, heads, dropout
        self.max_segments = max_segments

    def build(self, feature_dim: int) -> SpanHead:
        """Create the parameters for features (video and text alike) of width ``feature_dim``."""
        hidden = self.hidden
        self.norm_v, self.norm_q = nn.LayerNorm(feature_dim), nn.LayerNorm(feature_dim)
        self.fuse = nn.Sequential(nn.Linear(3 * feature_dim, hidden), nn.GELU(), nn.Dropout(self.dropout))
        self.position = nn.Parameter(torch.zeros(self.max_segments, hidden))
        nn.init.trunc_normal_(self.position, std=0.02)
        layer = nn.TransformerEncoderLayer(hidden, self.heads, 4 * hidden, self.dropout, batch_first=True,
                                           norm_first=True)  # fmt: skip
        self.encoder = nn.TransformerEncoder(layer, self.layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(hidden)
        self.out = nn.Linear(hidden, 3)
        return self

    def forward(self, video: Tensor, mask: Tensor, query: Tensor) -> Tensor:
        """``video`` (B, N, E), ``mask`` (B, N) True for real segments, ``query`` (B, E) → logits (B, N, 3):
        start, end, inside; padded segments get ``-inf`` start/end logits."""
        n = video.shape[1]
        if n > len(self.position):
            raise ValueError(f"{n} segments exceed model.init_args.head.max_segments={len(self.position)}: raise it "
                             "or lower the extractor's rate")  # fmt: skip
        v = self.norm_v(video)
        q = self.norm_q(query)[:, None].expand_as(v)
        x = self.fuse(torch.cat([v, q, v * q], dim=-1)) + self.position[:n]
        x = self.out(self.norm(self.encoder(x, src_key_padding_mask=~mask)))
        neg = torch.finfo(x.dtype).min
        return torch.cat([x[..., :2].masked_fill(~mask[..., None], neg), x[..., 2:]], dim=-1)


def segment_targets(windows: list[tuple[float, float]], duration: float, n: int) -> tuple[Tensor, Tensor, Tensor]:
    """Start and end distributions over ``n`` segments (mass split evenly over the windows) and the inside mask."""
    start, end, inside = torch.zeros(n), torch.zeros(n), torch.zeros(n)
    centres = (torch.arange(n) + 0.5) * duration / n
    for s, e in windows:
        i = min(max(int(s / duration * n), 0), n - 1)
        j = min(max(int(e / duration * n - 1e-6), i), n - 1)
        start[i] += 1 / len(windows)
        end[j] += 1 / len(windows)
        inside[i : j + 1] = 1
        inside[(centres >= s) & (centres <= e)] = 1
    return start, end, inside


def decode_spans(
    start_logits: Tensor, end_logits: Tensor, duration: float, top_k: int = 10, nms_iou: float = 0.7, max_len=None
) -> tuple[Tensor, Tensor]:
    """Ranked spans in seconds ``(K, 2)`` and their scores from one query's start/end logits over its N segments."""
    n = start_logits.shape[0]
    scores = start_logits.float().softmax(0)[:, None] * end_logits.float().softmax(0)[None, :]  # (N, N)
    valid = torch.ones(n, n, dtype=torch.bool).triu()
    if max_len is not None:
        valid &= ~torch.ones(n, n, dtype=torch.bool).triu(max_len)
    scores = scores.masked_fill(~valid, -1).flatten()
    order = scores.argsort(descending=True)[: max(4 * top_k, 50)]
    order = order[scores[order] >= 0]
    spans = torch.stack([order // n, order % n + 1], dim=-1).double() * duration / n  # segment i..j -> seconds
    kept: list[int] = []
    for k in range(len(order)):  # greedy non-maximum suppression
        if len(kept) == top_k:
            break
        if not kept or temporal_iou(spans[k : k + 1], spans[kept]).max() < nms_iou:
            kept.append(k)
    return spans[kept], scores[order[kept]]
