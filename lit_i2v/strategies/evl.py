"""EVL: a side network decodes a video from the frozen image model's last layers.

Lin et al., *Frozen CLIP Models are Efficient Video Learners*, ECCV 2022.
Official code: github.com/OpenGVLab/efficient-video-recognition (``model.py``: ``EVLDecoder``,
``TemporalCrossAttention``).

The image tower runs frame by frame without autograd (no gradient reaches it and none of its activations are kept
for backward). The outputs of its last ``num_layers`` blocks, with those blocks' attention queries and keys, feed a
transformer decoder with one learnable video query: decoder layer i cross-attends to all T x L tokens of block
``depth - num_layers + i`` after three temporal enhancements of those tokens:

1. a depthwise 1-D convolution over time (kernel 3), added to the tokens;
2. a zero-initialised temporal position embedding (one per frame);
3. a zero-initialised cross-frame attention cue: the frozen attention maps between the patches of frame t and
   those of frame t-1 (and t+1), averaged over heads, weighted by learnable vectors indexed by the relative
   position of the two patches, added to frame t's patch tokens.

The decoder layer is ``x + attn(LN x, LN y)`` then ``x + MLP(LN x)`` (MLP dropout 0.5). The strategy returns the
decoded query after a LayerNorm as a one-step sequence ``(B, 1, D)``; with the task's ``LinearHead(dropout: 0.5)``
this is the paper's head (LN, dropout, linear).

Differences: the official decoder's query initialisation is written but never called (it stays zero); here it is
drawn from N(0, 0.02), as the paper intends. Queries and keys are read from the frozen ``qkv`` projections through
read-only forward hooks, so nothing of the backbone is computed twice.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from lit_i2v.backbones import CLIP
from lit_i2v.backbones.vit import LayerNormFp32, QuickGELU
from lit_i2v.strategies.base import TransferStrategy, VideoFeatures


class CrossFrameCue(nn.Module):
    """Attention maps between adjacent frames' patches, turned into features by relative-position weights."""

    def __init__(self, grid: int, width: int) -> None:
        super().__init__()
        self.grid = grid
        self.w_prev = nn.Parameter(torch.zeros((2 * grid - 1) ** 2, width))
        self.w_next = nn.Parameter(torch.zeros((2 * grid - 1) ** 2, width))
        ij = torch.stack(torch.meshgrid(torch.arange(grid), torch.arange(grid), indexing="ij"), -1).reshape(-1, 2)
        rel = ij[:, None, :] - ij[None, :, :] + grid - 1  # (L, L, 2), offsets shifted to be >= 0
        self.register_buffer("index", rel[..., 0] * (2 * grid - 1) + rel[..., 1], persistent=False)  # (L, L)

    def _half(self, q: Tensor, k: Tensor, w: Tensor) -> Tensor:
        """q, k ``(B, T', H, L, Dh)`` of patch tokens → ``(B, T', L, C)``."""
        attn = torch.einsum("bthqd,bthkd->btqkh", q * q.shape[-1] ** -0.5, k).softmax(dim=-2).mean(-1)  # (B,T',L,L)
        return torch.einsum("btqk,qkc->btqc", attn, w[self.index])

    def forward(self, q: Tensor, k: Tensor) -> Tensor:
        """q, k ``(B, T, H, 1 + L, Dh)`` → cue ``(B, T, 1 + L, C)`` (zero on the class token)."""
        q, k = q[..., 1:, :].float(), k[..., 1:, :].float()
        b, t, _, length, _ = q.shape
        cue = q.new_zeros(b, t, length, self.w_prev.shape[1])
        cue[:, 1:] += self._half(q[:, 1:], k[:, :-1], self.w_prev)
        cue[:, :-1] += self._half(q[:, :-1], k[:, 1:], self.w_next)
        return nn.functional.pad(cue, (0, 0, 1, 0))


class DecoderLayer(nn.Module):
    """One query attends to the tokens ``y``: ``x + attn(LN x, LN y, LN y)``, then ``x + MLP(LN x)``."""

    def __init__(self, width: int, heads: int, mlp_ratio: float = 4.0, dropout: float = 0.5) -> None:
        super().__init__()
        self.norm1, self.norm2, self.norm3 = LayerNormFp32(width), LayerNormFp32(width), LayerNormFp32(width)
        self.attn = nn.MultiheadAttention(width, heads, batch_first=True)
        hidden = round(width * mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(width, hidden), QuickGELU(), nn.Dropout(dropout), nn.Linear(hidden, width))
        for linear in (self.mlp[0], self.mlp[3]):
            nn.init.xavier_uniform_(linear.weight)
            nn.init.normal_(linear.bias, std=1e-6)

    def forward(self, x: Tensor, y: Tensor) -> Tensor:
        y = self.norm3(y)
        x = x + self.attn(self.norm1(x), y, y, need_weights=False)[0]
        return x + self.mlp(self.norm2(x))


class EVL(TransferStrategy):
    """Args:
    num_layers: decoder layers = backbone blocks read, the last ones (4).
    heads: decoder attention heads (12 for B/16).
    max_frames: frames the temporal position embeddings cover.
    temporal_conv, temporal_pos_embed, cross_frame_cue: the three temporal enhancements (ablations of the paper).
    mlp_dropout: dropout inside the decoder MLPs (0.5).
    """

    prefix = "evl"
    needs_class_token = True

    identity_at_init = False  # a side network decoding a learnt query: no pretrained output to start from

    @classmethod
    def tiny(cls) -> EVL:
        return cls(num_layers=2, heads=2, max_frames=32)

    def __init__(
        self,
        num_layers: int = 4,
        heads: int = 12,
        max_frames: int = 32,
        temporal_conv: bool = True,
        temporal_pos_embed: bool = True,
        cross_frame_cue: bool = True,
        mlp_dropout: float = 0.5,
    ) -> None:
        super().__init__()
        self.num_layers, self.heads, self.max_frames, self.mlp_dropout = num_layers, heads, max_frames, mlp_dropout
        self.use_conv, self.use_pos, self.use_cue = temporal_conv, temporal_pos_embed, cross_frame_cue
        self.decoder = nn.ModuleList()

    def apply(self, backbone: CLIP) -> None:
        visual = backbone.visual
        width, depth = visual.width, len(visual.blocks)
        if self.num_layers > depth:
            raise ValueError(f"transfer.num_layers is {self.num_layers} but the image tower has {depth} blocks")
        n = self.num_layers
        self.query = nn.Parameter(torch.empty(1, 1, width).normal_(std=0.02))
        self.decoder = nn.ModuleList(DecoderLayer(width, self.heads, dropout=self.mlp_dropout) for _ in range(n))
        self.temporal_conv = nn.ModuleList(
            nn.Conv1d(width, width, 3, padding=1, groups=width) for _ in range(n if self.use_conv else 0)
        )
        self.temporal_pos = nn.Parameter(torch.zeros(n, self.max_frames, 1, width)) if self.use_pos else None
        self.cue = nn.ModuleList(CrossFrameCue(visual.grid_size, width) for _ in range(n if self.use_cue else 0))
        self.norm = LayerNormFp32(width)

    def trainable(self, name: str) -> bool:
        return False  # the backbone is frozen; the decoder is the strategy's own and always trains

    @torch.no_grad()
    def frozen_features(self, backbone: CLIP, video: Tensor) -> tuple[list[Tensor], list[Tensor], list[Tensor]]:
        """Outputs, queries and keys of the last blocks, each ``(B, T, ...)``, computed without autograd."""
        visual = backbone.visual.eval()
        b, t = video.shape[:2]
        depth = len(visual.blocks)
        chosen = range(depth - self.num_layers, depth)
        taps: dict[int, Tensor] = {}
        hooks = [
            visual.blocks[i].attn.qkv.register_forward_hook(lambda m, a, out, i=i: taps.__setitem__(i, out))
            for i in chosen
        ]  # read-only taps on the frozen projections
        try:
            _, outs = visual.forward_intermediates(video.flatten(0, 1), indices=list(chosen), num_frames=t)
        finally:
            for hook in hooks:
                hook.remove()
        heads = visual.blocks[0].attn.num_heads
        qs, ks = [], []
        for i in chosen:
            qkv = taps[i].unflatten(-1, (3, heads, -1))  # (B*T, L, 3, H, Dh)
            q, k = qkv[:, :, 0].transpose(1, 2), qkv[:, :, 1].transpose(1, 2)  # (B*T, H, L, Dh)
            qs.append(q.unflatten(0, (b, t)))
            ks.append(k.unflatten(0, (b, t)))
        return [o.unflatten(0, (b, t)) for o in outs], qs, ks

    def forward(self, backbone: CLIP, video: Tensor, project: bool = False) -> Tensor:
        """Normalised clips ``(B, T, 3, H, W)`` → the decoded video feature as ``(B, 1, D)``."""
        return self.encode(backbone, video, project).frames

    def encode(self, backbone: CLIP, video: Tensor, project: bool = False, tokens: bool = False) -> VideoFeatures:
        """The decoded feature ``(B, 1, D)`` and, with ``tokens``, the frozen tower's last patch tokens it read."""
        if project:
            raise ValueError("EVL decodes tower features; use a head on tower features (LinearHead)")
        outs, qs, ks = self.frozen_features(backbone, video)
        last = outs[-1][:, :, backbone.visual.num_prefix_tokens :] if tokens else None  # (B, T, N, D)
        b, t, length, width = outs[0].shape
        if t > self.max_frames:
            raise ValueError(f"{t} frames but transfer.max_frames is {self.max_frames}")
        # repeat, not expand: under no_grad an expanded parameter is a view that claims requires_grad with no graph,
        # which autograd hooks (the FLOP counter's module tracker) reject
        x = self.query.repeat(b, 1, 1)  # (B, 1, D)
        for i, layer in enumerate(self.decoder):
            seen = outs[i].float()  # (B, T, L, D), no graph behind it
            if self.use_conv:
                seq = seen.permute(0, 2, 3, 1).flatten(0, 1)  # (B*L, D, T)
                seen = seen + self.temporal_conv[i](seq).unflatten(0, (b, length)).permute(0, 3, 1, 2)
            if self.use_pos:
                seen = seen + self.temporal_pos[i, :t]
            if self.use_cue:
                seen = seen + self.cue[i](qs[i], ks[i])
            x = layer(x, seen.flatten(1, 2))  # the query attends to all T*L tokens
        return VideoFeatures(self.norm(x), last)  # (B, 1, D)

    def extra_repr(self) -> str:
        return f"num_layers={self.num_layers}, heads={self.heads}, max_frames={self.max_frames}"
