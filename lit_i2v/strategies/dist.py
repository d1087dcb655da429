"""DiST: a frozen image model on sparse frames, a light temporal network on dense frames, an integration branch.

Qing et al., *Disentangling Spatial and Temporal Learning for Efficient Image-to-Video Transfer Learning*, ICCV 2023.
Official code: github.com/alibaba-mmai-research/DiST (``models/module_zoo/branches/dist.py``: ``DiSTNetwork``;
configs ``configs/projects/dist/{ssv2,k400}/vit-b16-8+16f.yaml``).

The clip has T dense frames; the frozen image tower runs on every ``alpha``-th (T/alpha sparse frames), without
autograd, and every block's output (the raw residual stream) is read. Beside it:

- **temporal encoder** (width ``temporal_dim`` = 96) on all T frames: a Conv3d stem (kernel ``(5, p, p)``, stride
  ``(1, p, p)`` for patch size p), then per layer ``GELU(x + Conv(1,3,3)(GELU(Conv(3,1,1)(LN x))))``;
- **integration branch** (width ``integration_dim`` = 384), per block i: ``m = Linear(block_i) + r`` (r: the
  previous layer's output), exchanged both ways with the temporal encoder (integration → temporal: a linear map of the
  patch tokens, repeated ``alpha`` times in time; temporal → integration: a Conv3d of kernel and stride ``(alpha,1,1)``
  with a learnable class token per frame), then ``r = FFN(LN m') + TemporalFFN(LN m')`` where the temporal FFN is
  1x1x1 → kernel-3-in-time → GELU → 1x1x1 convolutions at a quarter width;
- **pooling**: ``pool_layers`` (2) rounds of a per-frame query attending to its frame's tokens and a video query
  attending to the per-frame queries (with a temporal position embedding), each followed by an MLP;
- **output**: ``LN(video query + Linear(mean over frames of the tower's last class token)) @ proj`` in CLIP's joint
  space, classified by cosine similarity with frozen text embeddings of the class names (``TextClassifierHead
  (trainable: false)``).

Linear and convolution weights start from truncated N(0, 0.02) with zero biases, as the official ``_init_weights``;
``proj`` from N(0, 1/integration_dim). No gradient reaches the image tower, none of its activations are kept.
Difference: the official code also builds an integration → temporal map after the last block, whose output nothing
reads (a parameter without gradient, which DDP rejects); it is left out.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from lit_i2v.backbones import CLIP
from lit_i2v.backbones.vit import LayerNormFp32, QuickGELU
from lit_i2v.strategies.base import TransferStrategy, VideoFeatures


def _mlp(width: int, hidden: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(width, hidden), QuickGELU(), nn.Linear(hidden, width))


class TemporalLayer(nn.Module):
    """``GELU(x + Conv(1,3,3)(GELU(Conv(k,1,1)(LN x))))`` on ``(B, C, T, H, W)``."""

    def __init__(self, width: int, kernel: int) -> None:
        super().__init__()
        self.norm = LayerNormFp32(width)
        self.conv_t = nn.Conv3d(width, width, (kernel, 1, 1), padding=(kernel // 2, 0, 0))
        self.conv_s = nn.Conv3d(width, width, (1, 3, 3), padding=(0, 1, 1))
        self.act = QuickGELU()

    def forward(self, x: Tensor) -> Tensor:
        h = self.norm(x.permute(0, 2, 3, 4, 1)).permute(0, 4, 1, 2, 3)
        return self.act(x + self.conv_s(self.act(self.conv_t(h))))


class IntegrationLayer(nn.Module):
    """``FFN(LN x) + TemporalFFN(LN' x)`` on integration tokens ``(B, T', L, C)``."""

    def __init__(self, width: int, kernel: int, temporal_ratio: float, mlp_ratio: float) -> None:
        super().__init__()
        hidden = int(width * temporal_ratio)
        self.norm, self.norm_t = LayerNormFp32(width), LayerNormFp32(width)
        self.ffn = _mlp(width, int(width * mlp_ratio))
        self.temporal_ffn = nn.Sequential(
            nn.Conv3d(width, hidden, 1),
            nn.Conv3d(hidden, hidden, (kernel, 1, 1), padding=(kernel // 2, 0, 0)),
            QuickGELU(),
            nn.Conv3d(hidden, width, 1),
        )

    def forward(self, x: Tensor) -> Tensor:
        t = self.norm_t(x).permute(0, 3, 1, 2).unsqueeze(-1)  # (B, C, T', L, 1): tokens as a spatial axis
        return self.ffn(self.norm(x)) + self.temporal_ffn(t).squeeze(-1).permute(0, 2, 3, 1)


class Attend(nn.Module):
    """``q + MHA(LN q, LN kv, LN kv)`` then ``+ MLP(LN .)``: one pooling step (a query reads a set of tokens)."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.norm, self.norm_out = LayerNormFp32(width), LayerNormFp32(width)
        self.attn = nn.MultiheadAttention(width, max(width // 64, 1), batch_first=True)
        self.mlp = _mlp(width, 4 * width)

    def forward(self, query: Tensor, tokens: Tensor) -> Tensor:
        kv = self.norm(tokens)
        query = query + self.attn(self.norm(query), kv, kv, need_weights=False)[0]
        return query + self.mlp(self.norm_out(query))


class PoolingLayer(nn.Module):
    """Per-frame queries read their frame's tokens; the video query reads the per-frame queries over time."""

    def __init__(self, width: int, max_frames: int) -> None:
        super().__init__()
        self.spatial, self.temporal = Attend(width), Attend(width)
        self.frame_pos = nn.Parameter(torch.empty(1, max_frames, width))
        nn.init.trunc_normal_(self.frame_pos, std=0.02)

    def forward(self, video_q: Tensor, frame_q: Tensor, tokens: Tensor) -> tuple[Tensor, Tensor]:
        """video_q ``(B, 1, C)``, frame_q ``(B*T', 1, C)``, tokens ``(B*T', L, C)``."""
        frame_q = self.spatial(frame_q, tokens)
        frames = frame_q.view(video_q.shape[0], -1, frame_q.shape[-1])  # (B, T', C)
        video_q = self.temporal(video_q, frames + self.frame_pos[:, : frames.shape[1]].to(frames.dtype))
        return video_q, frame_q


class DiST(TransferStrategy):
    """Args:
    alpha: the image tower sees every ``alpha``-th frame (8+16f: 16 input frames, alpha 2).
    temporal_dim: width of the dense temporal encoder (96).
    integration_dim: width of the integration branch (384).
    temporal_kernel: kernel in time of the temporal convolutions (3).
    stem_kernel: kernel in time of the temporal stem (5).
    integration_temporal_ratio: width ratio of the integration's temporal FFN (0.25).
    integration_mlp_ratio: hidden ratio of the integration FFN (1).
    pool_layers: pooling rounds (2).
    max_frames: the most sparse frames the pooling's position embedding covers.
    """

    prefix = "dist"
    needs_class_token = True

    identity_at_init = False  # a side network: no pretrained output to start from
    needs_projection = True  # pools into CLIP's joint space, where it is scored against text

    @classmethod
    def tiny(cls) -> DiST:
        return cls(temporal_dim=8, integration_dim=16, max_frames=16)

    def __init__(
        self,
        alpha: int = 2,
        temporal_dim: int = 96,
        integration_dim: int = 384,
        temporal_kernel: int = 3,
        stem_kernel: int = 5,
        integration_temporal_ratio: float = 0.25,
        integration_mlp_ratio: float = 1.0,
        pool_layers: int = 2,
        max_frames: int = 32,
    ) -> None:
        super().__init__()
        self.alpha, self.temporal_dim, self.integration_dim = alpha, temporal_dim, integration_dim
        self.temporal_kernel, self.stem_kernel = temporal_kernel, stem_kernel
        self.integration_temporal_ratio, self.integration_mlp_ratio = integration_temporal_ratio, integration_mlp_ratio
        self.pool_layers, self.max_frames = pool_layers, max_frames

    def apply(self, backbone: CLIP) -> None:
        visual = backbone.visual
        width, depth, p = visual.width, len(visual.blocks), visual.patch_size
        ct, ci, k = self.temporal_dim, self.integration_dim, self.temporal_kernel
        self.stem = nn.Conv3d(3, ct, (self.stem_kernel, p, p), stride=(1, p, p), padding=(self.stem_kernel // 2, 0, 0))
        self.temporal = nn.ModuleList(TemporalLayer(ct, k) for _ in range(depth))
        self.inputs = nn.ModuleList(nn.Linear(width, ci) for _ in range(depth))
        self.to_temporal = nn.ModuleList(nn.Linear(ci, ct) for _ in range(depth - 1))  # the last would feed nothing
        self.to_integration = nn.ModuleList(
            nn.Conv3d(ct, ci, (self.alpha, 1, 1), stride=(self.alpha, 1, 1)) for _ in range(depth)
        )
        self.frame_cls = nn.Parameter(torch.empty(depth, 1, self.max_frames, 1, ci))
        self.integration = nn.ModuleList(
            IntegrationLayer(ci, k, self.integration_temporal_ratio, self.integration_mlp_ratio) for _ in range(depth)
        )
        self.pool = nn.ModuleList(PoolingLayer(ci, self.max_frames) for _ in range(self.pool_layers))
        self.video_query = nn.Parameter(torch.empty(1, 1, ci))
        self.frame_query = nn.Parameter(torch.empty(1, 1, ci))
        self.cls_proj = nn.Linear(width, ci)
        self.norm = LayerNormFp32(ci)
        self.proj = nn.Parameter(torch.randn(ci, backbone.embed_dim) * ci**-0.5)
        for module in self.modules():
            if isinstance(module, (nn.Linear, nn.Conv3d)):
                nn.init.trunc_normal_(module.weight, std=0.02)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
        for param in (self.frame_cls, self.video_query, self.frame_query):
            nn.init.trunc_normal_(param, std=0.02)

    def trainable(self, name: str) -> bool:
        return False  # the image tower is frozen; the side network is the strategy's own and always trains

    @torch.no_grad()
    def frozen_features(self, backbone: CLIP, sparse: Tensor) -> list[Tensor]:
        """Every block's output on the sparse frames ``(B, T', 3, H, W)``, each ``(B, T', L, D)``, without autograd."""
        visual = backbone.visual.eval()
        b, t = sparse.shape[:2]
        _, outs = visual.forward_intermediates(sparse.flatten(0, 1), indices=len(visual.blocks), num_frames=t)
        return [o.unflatten(0, (b, t)) for o in outs]

    def forward(self, backbone: CLIP, video: Tensor, project: bool = False) -> Tensor:
        """Normalised clips ``(B, T, 3, H, W)`` (T dense frames) → the video embedding ``(B, 1, E)``."""
        return self.encode(backbone, video, project).frames

    def encode(self, backbone: CLIP, video: Tensor, project: bool = False, tokens: bool = False) -> VideoFeatures:
        """The video embedding ``(B, 1, E)`` and, with ``tokens``, the frozen tower's last patch tokens on the sparse
        frames ``(B, T / alpha, N, D)``."""
        if not project:
            raise ValueError(
                "DiST outputs CLIP's joint space: use a head on projected features (model.head: "
                "TextClassifierHead, or LinearHead with project: true)"
            )
        b, t = video.shape[:2]
        if t % self.alpha:
            raise ValueError(f"{t} frames are not a multiple of transfer.alpha={self.alpha}")
        ts = t // self.alpha
        if ts > self.max_frames:
            raise ValueError(f"{ts} sparse frames but transfer.max_frames is {self.max_frames}")
        outs = self.frozen_features(backbone, video[:, :: self.alpha])  # each (B, T', L, D)
        x_t = self.stem(video.transpose(1, 2))  # (B, Ct, T, h, w)
        grid = x_t.shape[-2:]
        residual = 0.0
        for i, block_out in enumerate(outs):
            x_t = self.temporal[i](x_t)
            mid = self.inputs[i](block_out.float()) + residual  # (B, T', L, Ci)
            from_t = self.to_integration[i](x_t).flatten(3).permute(0, 2, 3, 1)  # (B, T', h*w, Ci)
            if i < len(self.to_temporal):  # integration → temporal, for the next layer
                to_t = self.to_temporal[i](mid[:, :, 1:]).permute(0, 3, 1, 2).unflatten(-1, grid)  # (B, Ct, T', h, w)
                x_t = x_t + to_t.repeat_interleave(self.alpha, dim=2)
            cls = self.frame_cls[i, :, :ts].expand(b, -1, -1, -1).to(from_t.dtype)  # (B, T', 1, Ci)
            mid = mid + torch.cat([cls, from_t], dim=2)
            residual = self.integration[i](mid)
        fused = (residual + mid).flatten(0, 1)  # (B*T', L, Ci)
        video_q = self.video_query.repeat(b, 1, 1)  # repeat, not expand (see EVL: FLOP counting under no_grad)
        frame_q = self.frame_query.repeat(b * ts, 1, 1)
        for layer in self.pool:
            video_q, frame_q = layer(video_q, frame_q, fused)
        cls = self.cls_proj(outs[-1][:, :, 0].float().mean(1, keepdim=True))  # (B, 1, Ci)
        last = outs[-1][:, :, backbone.visual.num_prefix_tokens :] if tokens else None  # (B, T', N, D)
        return VideoFeatures(self.norm(video_q + cls) @ self.proj, last)  # (B, 1, E)

    def extra_repr(self) -> str:
        return f"alpha={self.alpha}, temporal_dim={self.temporal_dim}, integration_dim={self.integration_dim}"
