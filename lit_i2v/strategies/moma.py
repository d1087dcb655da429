"""MoMa: a Mamba layer modulating the frozen image tower, over windowed attention, for video recognition.

Yang et al., *MoMa: Modulating Mamba for Adapting Image Foundation Models to Video Recognition*, ICML 2025
(arXiv 2506.23283). **No official code has been released** (the paper's page says "upon publication"): this is a
reconstruction from the paper's text. Every choice the text leaves open is an argument below, named here:

In every block, after the frozen attention step, ``x = Divide(V)``, ``(y1, y2) = SSM(x)``, and the frozen MLP step
reads ``SeqMod(x, y1, y2) = y1 ⊙ x + y2 + x``:

- **Divide** (``window``): each frame's patch grid is cut into non-overlapping ``window x window`` windows and the
  block's own, frozen attention runs within each window (the paper found 8x8 better than full-frame attention).
  A grid that does not divide (14x14 at 224/16) is padded at the bottom and right, and the pad keys are masked.
  *Open*: where the class token goes (``class_token``): ``global`` (default) lets it attend over the whole frame and
  every window see it as a key, so it stays the frame's summary; ``own`` keeps windows closed and the class token
  attends to itself. ``window: null`` keeps full-frame attention (the paper's ablation).
- **Modulate**: a Mamba-style selective state-space layer (Gu & Dao 2023) over the clip's patch tokens, T·H·W long:
  LayerNorm, input projection to ``hidden``, a causal depthwise convolution (``conv``), GELU, the input-dependent
  Δ, B, C (Δ through a rank-``dt_rank`` projection), :func:`lit_i2v.ops.selective_scan` with D, and an output
  projection to 2·width split into ``y1`` and ``y2``, zero-initialised so that SeqMod is the identity at step 0.
  The scan runs in several ``orders`` (``spatial``: frame by frame; ``temporal``: each position through time),
  each forward and, with ``bidirectional``, backward, as VideoMamba's bidirectional scans. *Open*: the directions
  share one set of parameters and their outputs are averaged; the class token is not scanned (it has no place in
  the T·H·W grid) and is not modulated; an optional ``gate`` (Mamba's ``silu(z)`` branch, GELU here) is off.
- **Layout**: ``hidden`` = half the tower width and ``dt_rank`` = ceil(hidden / 16), state 16, convolution 4, no
  gate, one layer after every block: 11.1M trainable parameters for ViT-B/16 and 39.3M for ViT-L/14, the paper's
  "11M" and "39M" (Table 1). Hidden 384 for both (the text's figure) gives 29.3M for L/14; a gate gives 38.7M on
  L/14 but 14.6M on B/16; so the one rule that fits both counts is hidden = width/2, and that is the default.
  Mamba's own rank rule, ceil(input width / 16), would give 11.3M and 40.0M (``dt_rank: 48`` or ``64``).
- **Pooling** (``pool``): the mean of the last block's patch tokens after the final norm (the paper), projected into
  CLIP's joint space when a head asks; ``tower`` uses the tower's own pooling (class token or MAP).

What trains: the SSM layers only (heads train as configured). The recipes add the paper's CLIP distillation term
through the task's ``distillation`` (a frozen copy of the same CLIP as teacher, KL on zero-shot class scores) and
classify against ActionCLIP's prompt templates.

Identity at init is with respect to the windowed tower: at step 0 MoMa computes what the frozen tower with the
Divide step and the same pooling computes (``reference_at_init``), not what the unmodified tower computes.

Memory: the torch scan keeps one chunk's ``(B, hidden, chunk, N)`` state at a time and recomputes it in backward
(see :mod:`lit_i2v.ops.selective_scan`), so no activation checkpointing is needed for the scan's state; with
``mamba_ssm`` on CUDA the fused kernel does the same.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lit_i2v.backbones import CLIP
from lit_i2v.backbones.vit import Attention
from lit_i2v.ops import selective_scan
from lit_i2v.strategies.base import TransferStrategy, VideoFeatures, patch_tokens, select_blocks


class WindowAttention(Attention):
    """The block's attention (same ``qkv`` and ``proj``) run within ``window x window`` windows of each frame."""

    def __init__(self, attn: Attention, grid: int, prefix: int, window: int, class_token: str) -> None:
        nn.Module.__init__(self)
        self.num_heads, self.head_dim = attn.num_heads, attn.head_dim
        self.qkv, self.proj = attn.qkv, attn.proj
        self.grid, self.prefix, self.window, self.class_token = grid, prefix, window, class_token
        side = math.ceil(grid / window) * window
        valid = F.pad(torch.ones(grid, grid, dtype=torch.bool), (0, side - grid, 0, side - grid))
        keys = self.to_windows(valid[None, None, :, :, None]).view(-1, window * window)  # (nW, w*w)
        if prefix and class_token == "global":
            keys = torch.cat([keys.new_ones(keys.shape[0], prefix), keys], 1)  # (nW, p + w*w)
        # None when every key is real: SDPA's fast path
        self.register_buffer("key_mask", None if side == grid else keys, persistent=False)

    def to_windows(self, x: Tensor) -> Tensor:
        """``(N, H, g, g, Dh)`` → ``(N*nW, H, w*w, Dh)``, zero-padded to a multiple of the window."""
        n, h, g, _, dh = x.shape
        w = self.window
        side = math.ceil(g / w) * w
        x = F.pad(x, (0, 0, 0, side - g, 0, side - g))  # (N, H, G, G, Dh)
        x = x.view(n, h, side // w, w, side // w, w, dh).permute(0, 2, 4, 1, 3, 5, 6)  # (N, G/w, G/w, H, w, w, Dh)
        return x.reshape(-1, h, w * w, dh)

    def from_windows(self, x: Tensor, n: int) -> Tensor:
        """``(N*nW, H, w*w, Dh)`` → ``(N, H, g*g, Dh)``, the padding dropped."""
        w, g = self.window, self.grid
        per = math.ceil(g / w)
        h, dh = x.shape[1], x.shape[-1]
        x = x.view(n, per, per, h, w, w, dh).permute(0, 3, 1, 4, 2, 5, 6)  # (N, H, G/w, w, G/w, w, Dh)
        return x.reshape(n, h, per * w, per * w, dh)[:, :, :g, :g].reshape(n, h, g * g, dh)

    def forward(self, x: Tensor, num_frames: int) -> Tensor:
        n, length, _ = x.shape
        p, g = self.prefix, self.grid
        if length != p + g * g:
            raise ValueError(
                f"MoMa's window attention expects {p} prefix tokens and a {g}x{g} grid ({p + g * g} tokens), got "
                f"{length}: it cannot follow a strategy that adds tokens (prompts)"
            )
        q, k, v = self.split_heads(x)  # each (N, H, L, Dh)
        qw, kw, vw = (self.to_windows(t[:, :, p:].unflatten(2, (g, g))) for t in (q, k, v))  # (N*nW, H, w*w, Dh)
        windows = qw.shape[0] // n
        if p and self.class_token == "global":
            prefix_keys = (t[:, :, :p].repeat_interleave(windows, 0) for t in (k, v))  # (N*nW, H, p, Dh)
            kw, vw = (torch.cat([pk, t], 2) for pk, t in zip(prefix_keys, (kw, vw), strict=True))
        mask = None if self.key_mask is None else self.key_mask.repeat(n, 1)[:, None, None, :]  # (N*nW, 1, 1, keys)
        patches = self.from_windows(F.scaled_dot_product_attention(qw, kw, vw, attn_mask=mask), n)  # (N, H, g*g, Dh)
        if p:
            keys = slice(None) if self.class_token == "global" else slice(0, p)
            prefix = F.scaled_dot_product_attention(q[:, :, :p], k[:, :, keys], v[:, :, keys])  # (N, H, p, Dh)
            patches = torch.cat([prefix, patches], 2)
        return self.merge_heads(patches)

    def extra_repr(self) -> str:
        return f"window={self.window}, grid={self.grid}, class_token={self.class_token!r}"


class SSMModulator(nn.Module):
    """MoMa's SSM: the clip's patch tokens → (y1, y2), and ``SeqMod``: ``y1 ⊙ x + y2 + x`` on the patch tokens.

    Mamba's layer (Gu & Dao 2023, ``mamba_ssm.modules.mamba_simple.Mamba``) with its initialisation of A (S4D-real:
    A = -[1..N]), D (ones) and Δ's bias (softplus⁻¹ of log-uniform [1e-3, 0.1]), scanning in several orders.
    """

    def __init__(
        self, width: int, prefix: int, hidden: int, state: int, dt_rank: int, conv: int, gate: bool,
        orders: tuple[str, ...], bidirectional: bool,
    ) -> None:  # fmt: skip
        super().__init__()
        self.prefix, self.hidden, self.state, self.dt_rank = prefix, hidden, state, dt_rank
        self.orders, self.bidirectional, self.gate = orders, bidirectional, gate
        self.norm = nn.LayerNorm(width)
        self.in_proj = nn.Linear(width, hidden * (2 if gate else 1), bias=False)
        self.conv1d = nn.Conv1d(hidden, hidden, conv, groups=hidden, padding=conv - 1)
        self.act = nn.GELU()
        self.x_proj = nn.Linear(hidden, dt_rank + 2 * state, bias=False)
        self.dt_proj = nn.Linear(dt_rank, hidden)
        self.A_log = nn.Parameter(torch.log(torch.arange(1, state + 1, dtype=torch.float32)).repeat(hidden, 1))
        self.D = nn.Parameter(torch.ones(hidden))
        self.A_log._no_weight_decay = self.D._no_weight_decay = True  # as Mamba: weight decay leaves them alone
        self.out_proj = nn.Linear(hidden, 2 * width, bias=False)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.uniform_(self.dt_proj.weight, -(self.dt_rank**-0.5), self.dt_rank**-0.5)
        dt = torch.exp(torch.rand(self.hidden) * (math.log(0.1) - math.log(1e-3)) + math.log(1e-3)).clamp(min=1e-4)
        with torch.no_grad():
            self.dt_proj.bias.copy_(dt + torch.log(-torch.expm1(-dt)))  # softplus(bias) = dt
        nn.init.zeros_(self.out_proj.weight)  # y1 = y2 = 0: SeqMod is the identity at step 0

    def sequences(self, x: Tensor, t: int) -> list[Tensor]:
        """``(B, T*n, h)`` in frame order → one sequence per scan direction, each ``(B, T*n, h)``."""
        n = x.shape[1] // t
        ordered = [x if o == "spatial" else x.unflatten(1, (t, n)).transpose(1, 2).flatten(1, 2) for o in self.orders]
        return ordered + [s.flip(1) for s in ordered] if self.bidirectional else ordered

    def back_to_frames(self, ys: list[Tensor], t: int) -> Tensor:
        """The inverse of ``sequences``, averaged over directions: ``(B, T*n, h)``."""
        k = len(self.orders)
        if self.bidirectional:
            ys = [a + b.flip(1) for a, b in zip(ys[:k], ys[k:], strict=True)]
        n = ys[0].shape[1] // t
        out = [y if o == "spatial" else y.unflatten(1, (n, t)).transpose(1, 2).flatten(1, 2)
               for y, o in zip(ys, self.orders, strict=True)]  # fmt: skip
        return torch.stack(out).sum(0) / (k * (2 if self.bidirectional else 1))

    def forward(self, x: Tensor, num_frames: int) -> Tensor:
        bt, length, d = x.shape
        t, p = num_frames, self.prefix
        b, n = bt // t, length - p
        patches = x[:, p:]  # (B*T, n, D)
        xz = self.in_proj(self.norm(patches).reshape(b, t * n, d))  # (B, T*n, h or 2h), frames in order
        xs, z = xz.chunk(2, -1) if self.gate else (xz, None)
        seqs = self.sequences(xs, t)
        k = len(seqs)
        u = torch.cat(seqs, 0).transpose(1, 2)  # (K*B, h, L): the directions share the parameters, side by side
        u = self.act(self.conv1d(u)[..., : t * n])  # causal depthwise convolution
        dt, bm, cm = self.x_proj(u.transpose(1, 2)).split([self.dt_rank, self.state, self.state], -1)
        delta = (dt @ self.dt_proj.weight.t()).transpose(1, 2)  # (K*B, h, L); its bias goes in as delta_bias
        y = selective_scan(
            u, delta, -torch.exp(self.A_log.float()), bm.transpose(1, 2), cm.transpose(1, 2), self.D.float(),
            delta_bias=self.dt_proj.bias.float(), delta_softplus=True,
        )  # fmt: skip
        y = self.back_to_frames(list(y.transpose(1, 2).chunk(k, 0)), t)  # (B, T*n, h)
        if z is not None:
            y = y * self.act(z)
        y1, y2 = self.out_proj(y).reshape(bt, n, 2 * d).chunk(2, -1)  # each (B*T, n, D)
        return torch.cat([x[:, :p], patches + y1 * patches + y2], 1)

    def extra_repr(self) -> str:
        return f"orders={self.orders}, bidirectional={self.bidirectional}, state={self.state}, gate={self.gate}"


class MoMa(TransferStrategy):
    """Args:
    window: side of the attention windows in patches (8); None: full-frame attention.
    class_token: ``global`` (attends over the frame, seen by every window) or ``own`` (closed windows).
    hidden: the SSM's inner width (None: half the tower width).
    state: SSM state size N.
    dt_rank: rank of Δ's projection (None: ceil(hidden / 16)).
    conv: kernel of the causal depthwise convolution.
    gate: Mamba's gate branch.
    orders: scan orders over the clip, ``spatial`` (frame by frame) and ``temporal`` (each position through time).
    bidirectional: each order also scanned backwards.
    pool: ``mean`` of the last block's patch tokens (the paper) or ``tower`` (the tower's own pooling).
    blocks: blocks to adapt (None: all), windows and SSM together.
    modulate: False keeps only the Divide step (windowed frozen attention, nothing trains): the model MoMa equals at
        step 0.
    """

    prefix = "moma"

    @classmethod
    def tiny(cls) -> MoMa:
        return cls(window=2, state=4)

    def __init__(
        self,
        window: int | None = 8,
        class_token: str = "global",
        hidden: int | None = None,
        state: int = 16,
        dt_rank: int | None = None,
        conv: int = 4,
        gate: bool = False,
        orders: list[str] | None = None,
        bidirectional: bool = True,
        pool: str = "mean",
        blocks: list[int] | None = None,
        modulate: bool = True,
    ) -> None:
        super().__init__()
        orders = ["spatial", "temporal"] if orders is None else list(orders)
        for key, value, allowed in (("class_token", class_token, ("global", "own")), ("pool", pool, ("mean", "tower"))):
            if value not in allowed:
                raise ValueError(f"transfer.{key}: {value!r}; choose one of {', '.join(allowed)}")
        if not orders or any(o not in ("spatial", "temporal") for o in orders) or len(set(orders)) != len(orders):
            raise ValueError(f"transfer.orders: {orders}; a non-empty list of distinct 'spatial', 'temporal'")
        if window is not None and window < 1:
            raise ValueError(f"transfer.window: {window}; a window of at least one patch, or null for full frames")
        self._closed_class_token = window is not None and class_token == "own" and pool == "tower"
        self.window, self.class_token, self.hidden = window, class_token, hidden
        self.state, self.dt_rank = state, dt_rank
        self.conv, self.gate, self.orders, self.bidirectional = conv, gate, tuple(orders), bidirectional
        self.pool, self.blocks, self.modulate = pool, blocks, modulate

    def reference_at_init(self) -> MoMa:
        return MoMa(self.window, self.class_token, pool=self.pool, blocks=self.blocks, modulate=False)

    def apply(self, backbone: CLIP) -> None:
        visual = backbone.visual
        if self._closed_class_token and visual.pool == "token" and self.blocks is None:
            raise ValueError(
                "transfer: class_token 'own' with pool 'tower' would pool a class token that never sees the patches "
                "(it attends to itself in every windowed block): use pool 'mean' or class_token 'global'"
            )
        width, prefix = visual.width, visual.num_prefix_tokens
        hidden = self.hidden or width // 2
        dt_rank = self.dt_rank or math.ceil(hidden / 16)
        for block in select_blocks(visual, self.blocks):
            if self.window is not None:
                block.attn = WindowAttention(block.attn, visual.grid_size, prefix, self.window, self.class_token)
            if self.modulate:
                block.pre_mlp["moma"] = SSMModulator(
                    width, prefix, hidden, self.state, dt_rank, self.conv, self.gate, self.orders, self.bidirectional
                )

    def forward(self, backbone: CLIP, video: Tensor, project: bool = False) -> Tensor:
        if self.pool == "tower":
            return super().forward(backbone, video, project=project)
        return self.encode(backbone, video, project=project).frames

    def encode(self, backbone: CLIP, video: Tensor, project: bool = False, tokens: bool = False) -> VideoFeatures:
        if self.pool == "tower":
            return super().encode(backbone, video, project=project, tokens=tokens)
        visual = backbone.visual
        b, t = video.shape[:2]
        with self._tower_context(backbone):
            if tokens:
                final, (last,) = visual.forward_intermediates(video.flatten(0, 1), indices=1, num_frames=t)
            else:
                final, last = visual.forward_features(video.flatten(0, 1), num_frames=t), None
            pooled = final[:, visual.num_prefix_tokens :].mean(1)  # (B*T, D): the mean of the patch tokens
            frames = (visual.head(pooled) if project else pooled).unflatten(0, (b, t))  # (B, T, D|E)
        return VideoFeatures(frames, None if last is None else patch_tokens(last, visual, b, t))

    def extra_repr(self) -> str:
        return f"window={self.window}, class_token={self.class_token!r}, pool={self.pool!r}, modulate={self.modulate}"
