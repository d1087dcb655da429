"""The selective scan of Mamba (S6): exact in plain PyTorch on any device, fused on CUDA when ``mamba_ssm`` imports.

Gu & Dao, *Mamba: Linear-Time Sequence Modeling with Selective State Spaces*, 2023. Official code:
github.com/state-spaces/mamba, ``mamba_ssm/ops/selective_scan_interface.py``. :func:`selective_scan` takes the
arguments, shapes and defaults of its ``selective_scan_fn``, so code written for one runs on the other. For every
batch item b, channel d and state n, over positions t of a sequence of length L::

    Δ_t = softplus(delta_t + delta_bias)   (the bias and the softplus only when asked)
    h_t = exp(Δ_t A) h_{t-1} + Δ_t B_t u_t,   h_{-1} = 0
    y_t = <C_t, h_t> + D u_t,   out_t = y_t · silu(z_t)   (D and z when given)

The torch backend cuts the sequence into chunks and each chunk into about sqrt(chunk) pieces: every piece runs the
recurrence at once from a zero state, then the states entering the pieces are carried across and added, scaled by
cumulative products of the decays (see ``_scan``); the state crosses from one chunk to the next. Only the chunk-
boundary states are kept for backward (B·D·N numbers each), and the backward pass recomputes each chunk's states and
runs the same scan in reverse for the states' gradients, as the fused kernel does. So memory stays bounded by one
chunk: the full ``(B, D, L, N)`` state is never held, which at MoMa's sizes (8 clips of 16 frames, 4 scan directions,
hidden 384) would be 2.5 GB per tensor in fp32. ``selective_scan_sequential`` is the recurrence written step by step
(mamba_ssm's ``selective_scan_ref``), for tests and benchmarks.

Supported: real A ``(D, N)``; input-dependent B and C ``(B, N, L)`` (Mamba's and MoMa's layout). Complex A and
grouped or input-independent B/C, which ``selective_scan_fn`` also takes, are refused in one line. The torch scan
runs in float32 as the kernel does (in float64 for float64 inputs, which the kernel does not take: ``auto`` keeps
those on the torch scan); the output has u's dtype. For the kernel, A, D and delta_bias are passed as float32 and
delta, B, C and z in u's dtype, as it requires.
"""

from __future__ import annotations

import contextlib
import functools
import math
from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["counting_scan_flops", "selective_scan", "selective_scan_sequential"]

# Positions per chunk. On CPU, 32 was fastest of 16-128 (benchmarks/selective_scan.py): a chunk's tensors stay in
# cache. On CUDA, fewer and larger chunks mean fewer kernel launches; 256 is unmeasured until a GPU is lent.
CHUNK = {"cpu": 32, "cuda": 256}


# ---- FLOPs by formula -----------------------------------------------------------------------------------------------

_COUNTERS: list[list[int]] = []


@contextlib.contextmanager
def counting_scan_flops() -> Iterator[list[int]]:
    """Within the block, every scan adds its FLOPs (multiply-add = 1) to the one-item list yielded.

    PyTorch's FLOP counter sees matrix products only, and the scan has none: it is element-wise work. Our count, per
    batch item, position, channel and state: 5 (Δ·A, Δ·B·u: 2, a·h + b, C·h); per position and channel, 1 for D and
    1 for z. The exponential and the softplus are not counted, as fvcore counts no transcendental function.
    (VMamba's counter, which later Mamba vision models copy, registers 9 per state instead.)
    """
    acc = [0]
    _COUNTERS.append(acc)
    try:
        yield acc
    finally:
        _COUNTERS.remove(acc)


def scan_flops(batch: int, channels: int, length: int, states: int, with_d: bool, with_z: bool) -> int:
    return batch * length * channels * (5 * states + int(with_d) + int(with_z))


# ---- the public op ----------------------------------------------------------------------------------------------


def selective_scan(
    u: Tensor,
    delta: Tensor,
    A: Tensor,  # noqa: N803 (the paper's and mamba_ssm's names)
    B: Tensor,  # noqa: N803
    C: Tensor,  # noqa: N803
    D: Tensor | None = None,  # noqa: N803
    z: Tensor | None = None,
    delta_bias: Tensor | None = None,
    delta_softplus: bool = False,
    return_last_state: bool = False,
    *,
    backend: str = "auto",
    chunk_size: int | None = None,
) -> Tensor | tuple[Tensor, Tensor]:
    """``out = selective_scan(u, delta, A, B, C, D, z, delta_bias, delta_softplus)``: mamba_ssm's signature.

    Args:
        u, delta, z: ``(B, D, L)``. A: ``(D, N)``, real (Mamba's A = -exp(A_log)). B, C: ``(B, N, L)``.
        D, delta_bias: ``(D,)``.
        return_last_state: also return the last state ``(B, D, N)`` (float32).
        backend: ``auto`` (mamba_ssm's fused kernel for CUDA tensors when it imports, else ``torch``), ``torch``
            (the chunked scan), ``cuda`` (the fused kernel, or an error saying why not), ``sequential`` (the
            step-by-step reference: slow, for checks).
        chunk_size: positions per chunk of the torch backend (None: 32 on CPU, 256 on CUDA).
    """
    _check(u, delta, A, B, C, D, z, delta_bias)
    chosen = resolve_backend(backend, u.device.type)
    if chosen == "cuda" and u.dtype == torch.float64:
        if backend == "cuda":
            raise ValueError("selective_scan backend 'cuda': mamba_ssm's kernel takes no float64; use backend 'torch'")
        chosen = "torch"
    if _COUNTERS:
        bsz, d, length = u.shape
        for acc in _COUNTERS:
            acc[0] += scan_flops(bsz, d, length, A.shape[1], D is not None, z is not None)
    if chosen == "cuda":
        from mamba_ssm.ops.selective_scan_interface import selective_scan_fn

        same = lambda t: None if t is None else t.to(u.dtype)  # noqa: E731
        single = lambda t: None if t is None else t.float()  # noqa: E731
        return selective_scan_fn(
            u, same(delta), single(A), same(B), same(C), single(D), same(z), single(delta_bias), delta_softplus,
            return_last_state,
        )  # fmt: skip
    if chosen == "sequential":
        return selective_scan_sequential(u, delta, A, B, C, D, z, delta_bias, delta_softplus, return_last_state)
    delta, work = _prepare_delta(u, delta, delta_bias, delta_softplus)
    uw = u.to(work)
    chunk = int(chunk_size or CHUNK.get(u.device.type, CHUNK["cuda"]))
    if chunk < 1:
        raise ValueError(f"selective_scan: chunk_size must be at least 1, got {chunk_size}")
    y, last = _ChunkedScan.apply(uw, delta, A.to(work), B.to(work), C.to(work), chunk)
    out = _finish(y, uw, D, z).to(u.dtype)
    return (out, last) if return_last_state else out


def resolve_backend(backend: str, device_type: str) -> str:
    """The backend ``selective_scan`` runs for tensors on ``device_type``: ``auto`` takes mamba_ssm's kernel on CUDA
    when it imports, the torch scan otherwise."""
    if backend not in ("auto", "torch", "cuda", "sequential"):
        raise ValueError(f"selective_scan backend {backend!r}: choose auto, torch, cuda or sequential")
    if backend in ("torch", "sequential"):
        return backend
    fused = device_type == "cuda" and _mamba_import_error() is None
    if backend == "cuda" and not fused:
        why = (
            "the tensors are not on a CUDA device" if device_type != "cuda"
            else f"mamba_ssm does not import ({_mamba_import_error()})"
        )  # fmt: skip
        raise RuntimeError(
            f"selective_scan backend 'cuda': {why}; install the extra (pip install 'lit_i2v[mamba]', which builds "
            "against a CUDA torch) or use backend 'torch'"
        )
    return "cuda" if fused else "torch"


@functools.cache
def _mamba_import_error() -> str | None:
    """Why mamba_ssm's kernel cannot be used (None: it can). Tried once per process: the scan runs in every layer."""
    try:
        from mamba_ssm.ops.selective_scan_interface import selective_scan_fn  # noqa: F401
    except Exception as err:  # ImportError, or a build against another torch (or transformers) raising at import
        return f"{type(err).__name__}: {err}"
    return None


def mamba_available() -> bool:
    return _mamba_import_error() is None


def _check(u, delta, A, B, C, D, z, delta_bias) -> None:  # noqa: N803
    if u.dim() != 3:
        raise ValueError(f"selective_scan: u must be (batch, channels, length), got {tuple(u.shape)}")
    bsz, d, length = u.shape
    if A.is_complex():
        raise ValueError("selective_scan: complex A is not supported by the torch backend (Mamba's A is real)")
    if A.dim() != 2 or A.shape[0] != d:
        raise ValueError(f"selective_scan: A must be (channels={d}, states), got {tuple(A.shape)}")
    n = A.shape[1]
    shapes = {"delta": (delta, (bsz, d, length)), "B": (B, (bsz, n, length)), "C": (C, (bsz, n, length))}
    if z is not None:
        shapes["z"] = (z, (bsz, d, length))
    for name, vec in (("D", D), ("delta_bias", delta_bias)):
        if vec is not None:
            shapes[name] = (vec, (d,))
    for name, (tensor, want) in shapes.items():
        if tuple(tensor.shape) != want:
            extra = " (grouped or input-independent B/C are not supported)" if name in ("B", "C") else ""
            raise ValueError(f"selective_scan: {name} must be {want}, got {tuple(tensor.shape)}{extra}")


def _prepare_delta(u: Tensor, delta: Tensor, delta_bias: Tensor | None, softplus: bool) -> tuple[Tensor, torch.dtype]:
    work = torch.float64 if u.dtype == torch.float64 else torch.float32
    delta = delta.to(work)
    if delta_bias is not None:
        delta = delta + delta_bias.to(work)[:, None]
    if softplus:
        delta = F.softplus(delta)
    return delta, work


def _finish(y: Tensor, u: Tensor, D: Tensor | None, z: Tensor | None) -> Tensor:  # noqa: N803
    if D is not None:
        y = y + u * D.to(y.dtype)[:, None]
    if z is not None:
        y = y * F.silu(z.to(y.dtype))
    return y


# ---- the chunked scan, forward and backward ---------------------------------------------------------------------


def _discretise(u: Tensor, delta: Tensor, A: Tensor, B: Tensor) -> tuple[Tensor, Tensor]:  # noqa: N803
    """One chunk's ``u, delta (B, D, K)``, ``A (D, N)``, ``B (B, N, K)`` → a = exp(ΔA), b = ΔBu, each (B, D, K, N)."""
    a = torch.exp(delta[..., None] * A[:, None, :])  # (B, D, K, N)
    b = (delta * u)[..., None] * B.transpose(1, 2)[:, None]  # (B, D, K, N)
    return a, b


def _scan(a: Tensor, b: Tensor, h0: Tensor | None) -> Tensor:
    """States of ``h_k = a_k h_{k-1} + b_k`` along dim 2 of ``(B, D, M, N)``, from ``h0 (B, D, N)`` (None: zero).

    The M positions are cut into about sqrt(M) pieces of about sqrt(M) positions. (1) Every piece runs the recurrence
    from a zero state, all pieces at once: sqrt(M) vectorised steps. (2) The state entering each piece is carried
    across pieces: sqrt(M) small steps. (3) Each position adds its entering state times the product of its piece's
    decays up to it, a cumulative product of numbers in (0, 1]: no division, nothing to overflow. So the work is a
    few times the sequential loop's, in 2·sqrt(M) Python steps instead of M.
    """
    bsz, d, m, n = b.shape
    k = math.isqrt(m - 1) + 1 if m > 1 else 1  # piece length
    pieces = -(-m // k)
    if pieces * k != m:  # pad the end: a = 1, b = 0 leaves the state as it is
        a = F.pad(a, (0, 0, 0, pieces * k - m), value=1.0)
        b = F.pad(b, (0, 0, 0, pieces * k - m))
    a, b = a.view(bsz, d, pieces, k, n), b.view(bsz, d, pieces, k, n)
    local = torch.empty_like(b)  # (B, D, P, K, N): each piece from a zero state
    state = b[:, :, :, 0]
    local[:, :, :, 0] = state
    for j in range(1, k):
        state = a[:, :, :, j] * state + b[:, :, :, j]
        local[:, :, :, j] = state
    decay = torch.cumprod(a, dim=3)  # (B, D, P, K, N): the product of a over the piece up to each position
    entering = torch.empty_like(b[:, :, :, 0])  # (B, D, P, N)
    carry = h0 if h0 is not None else b.new_zeros(bsz, d, n)
    for p in range(pieces):
        entering[:, :, p] = carry
        carry = local[:, :, p, -1] + decay[:, :, p, -1] * carry
    states = local + decay * entering[:, :, :, None]
    return states.view(bsz, d, pieces * k, n)[:, :, :m]


def _contract(h: Tensor, C: Tensor) -> Tensor:  # noqa: N803
    """``h (B, D, K, N)``, ``C (B, N, K)`` → ``<C_k, h_k>`` ``(B, D, K)``, element-wise (no matrix product, so that
    PyTorch's FLOP counter does not count what ``counting_scan_flops`` counts)."""
    return (h * C.transpose(1, 2)[:, None]).sum(-1)


class _ChunkedScan(torch.autograd.Function):
    """``y_t = <C_t, h_t>`` of the recurrence, from processed Δ; memory bounded by one chunk in both passes."""

    @staticmethod
    def forward(ctx, u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor, chunk: int):  # noqa: N803
        bsz, d, length = u.shape
        h = u.new_zeros(bsz, d, A.shape[1])
        starts, ys = [], []
        for s in range(0, length, chunk):
            e = min(s + chunk, length)
            starts.append(h)
            a, b = _discretise(u[..., s:e], delta[..., s:e], A, B[..., s:e])
            states = _scan(a, b, h)  # (B, D, K, N)
            ys.append(_contract(states, C[..., s:e]))
            h = states[:, :, -1].clone()  # a copy: a view would keep the chunk's whole state alive in ``starts``
        ctx.save_for_backward(u, delta, A, B, C, torch.stack(starts))
        ctx.chunk = chunk
        return torch.cat(ys, -1), h

    @staticmethod
    def backward(ctx, grad_y: Tensor | None, grad_last: Tensor | None):
        u, delta, A, B, C, starts = ctx.saved_tensors  # noqa: N806
        chunk, length = ctx.chunk, u.shape[-1]
        grad_y = torch.zeros_like(u) if grad_y is None else grad_y
        g = torch.zeros_like(starts[0]) if grad_last is None else grad_last  # dL/dh at the chunk's end, from later
        du, ddelta, dB, dC = (torch.empty_like(t) for t in (u, delta, B, C))  # noqa: N806
        dA = torch.zeros_like(A)  # noqa: N806
        for i in reversed(range(len(starts))):
            s, e = i * chunk, min((i + 1) * chunk, length)
            uc, dc, Bc, Cc, h0 = u[..., s:e], delta[..., s:e], B[..., s:e], C[..., s:e], starts[i]  # noqa: N806
            a, b = _discretise(uc, dc, A, Bc)
            states = _scan(a, b, h0)  # recomputed (B, D, K, N)
            dy = grad_y[..., s:e]
            dC[..., s:e] = (states * dy[..., None]).sum(1).transpose(1, 2)  # (B, N, K)
            direct = dy[..., None] * Cc.transpose(1, 2)[:, None]  # dL/dh_k through y_k: (B, D, K, N)
            direct[:, :, -1] += g
            # dL/dh_k = direct_k + a_{k+1} dL/dh_{k+1}: the same scan, run backwards
            a_next = torch.cat([a[:, :, 1:], torch.zeros_like(a[:, :, :1])], 2)
            gh = _scan(a_next.flip(2), direct.flip(2), None).flip(2)  # (B, D, K, N)
            g = a[:, :, 0] * gh[:, :, 0]
            previous = torch.cat([h0[:, :, None], states[:, :, :-1]], 2)  # h_{k-1}
            g_exp = gh * previous * a  # dL/d(ΔA)
            gh_b = (gh * Bc.transpose(1, 2)[:, None]).sum(-1)  # Σ_n dL/db · B: (B, D, K)
            ddelta[..., s:e] = (g_exp * A[:, None, :]).sum(-1) + gh_b * uc
            du[..., s:e] = gh_b * dc
            dA += (g_exp * dc[..., None]).sum((0, 2))
            dB[..., s:e] = (gh * (dc * uc)[..., None]).sum(1).transpose(1, 2)
        return du, ddelta, dA, dB, dC, None


# ---- the reference --------------------------------------------------------------------------------------------------


def selective_scan_sequential(
    u: Tensor,
    delta: Tensor,
    A: Tensor,  # noqa: N803
    B: Tensor,  # noqa: N803
    C: Tensor,  # noqa: N803
    D: Tensor | None = None,  # noqa: N803
    z: Tensor | None = None,
    delta_bias: Tensor | None = None,
    delta_softplus: bool = False,
    return_last_state: bool = False,
) -> Tensor | tuple[Tensor, Tensor]:
    """The recurrence one position at a time, differentiated by autograd: the definition the other backends equal."""
    _check(u, delta, A, B, C, D, z, delta_bias)
    delta, work = _prepare_delta(u, delta, delta_bias, delta_softplus)
    uw, A, B, C = u.to(work), A.to(work), B.to(work), C.to(work)  # noqa: N806
    h = uw.new_zeros(u.shape[0], u.shape[1], A.shape[1])  # (B, D, N)
    ys = []
    for t in range(u.shape[-1]):
        h = torch.exp(delta[..., t, None] * A) * h + (delta[..., t] * uw[..., t])[..., None] * B[:, None, :, t]
        ys.append((h * C[:, None, :, t]).sum(-1))  # (B, D)
    out = _finish(torch.stack(ys, -1), uw, D, z).to(u.dtype)
    return (out, h) if return_last_state else out
