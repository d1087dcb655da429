"""The selective scan: the chunked torch backend equals the step-by-step recurrence, forward and backward."""

from __future__ import annotations

import sys
import types

import pytest
import torch

from lit_i2v.ops import counting_scan_flops, selective_scan, selective_scan_sequential
from lit_i2v.ops.selective_scan import _mamba_import_error, resolve_backend


def inputs(b=2, d=5, length=37, n=4, dtype=torch.float64, seed=0) -> dict[str, torch.Tensor]:
    """mamba_ssm's shapes: u, delta, z (B, D, L); A (D, N), negative as Mamba's -exp(A_log); B, C (B, N, L)."""
    g = torch.Generator().manual_seed(seed)
    r = lambda *s: torch.randn(*s, generator=g, dtype=dtype)  # noqa: E731
    return {
        "u": r(b, d, length), "delta": r(b, d, length), "A": -torch.rand(d, n, generator=g, dtype=dtype) * 3,
        "B": r(b, n, length), "C": r(b, n, length), "D": r(d), "z": r(b, d, length), "delta_bias": r(d),
    }  # fmt: skip


def grads(fn, x: dict, **kwargs) -> tuple[torch.Tensor, torch.Tensor, tuple[torch.Tensor, ...]]:
    leaves = {k: v.clone().requires_grad_() for k, v in x.items()}
    out, last = fn(**leaves, delta_softplus=True, return_last_state=True, **kwargs)
    weights = torch.linspace(-1, 1, out.shape[-1], dtype=out.dtype)  # every position's gradient differs
    (out * weights).sum().add(last.pow(2).sum()).backward()
    return out, last, tuple(v.grad for v in leaves.values())


@pytest.mark.parametrize("chunk", [1, 2, 5, 8, 37, 64])
def test_chunked_scan_equals_the_recurrence_forward_and_backward(chunk):
    """Every chunk size, including ones that do not divide L (37) and one longer than L; the last state too."""
    x = inputs()
    out, last, g = grads(selective_scan, x, chunk_size=chunk)
    ref_out, ref_last, ref_g = grads(selective_scan_sequential, x)
    assert torch.allclose(out, ref_out, atol=1e-12) and torch.allclose(last, ref_last, atol=1e-12)
    for name, a, b in zip(x, g, ref_g, strict=True):
        assert torch.allclose(a, b, atol=1e-10), name


def test_gradcheck_in_float64():
    x = inputs(b=1, d=3, length=11, n=2)
    fn = lambda u, delta, A, B, C, D, z, delta_bias: selective_scan(  # noqa: E731, N803
        u, delta, A, B, C, D, z, delta_bias, delta_softplus=True, chunk_size=4
    )
    assert torch.autograd.gradcheck(fn, tuple(v.requires_grad_() for v in x.values()))


def test_float32_matches_the_float64_recurrence_at_moma_length():
    """16 frames of 7x7 patches = 784 positions, Mamba's A = -[1..16]: float32 stays within float32 rounding."""
    x = inputs(b=2, d=8, length=784, n=16)
    x["A"] = -torch.arange(1, 17, dtype=torch.float64).repeat(8, 1)
    ref = selective_scan_sequential(**x, delta_softplus=True)
    out = selective_scan(**{k: v.float() for k, v in x.items()}, delta_softplus=True)
    assert out.dtype == torch.float32
    assert (out.double() - ref).abs().max() < 1e-4 * ref.abs().max()


def test_strong_decay_and_long_inputs_give_no_overflow():
    """Δ·A of -1e4 per step decays the state to exactly zero: no inf or nan (nothing is divided by a decay)."""
    x = inputs(length=100)
    x["delta"] = torch.full_like(x["delta"], 50.0)
    x["A"] = torch.full_like(x["A"], -200.0)
    out = selective_scan(**x, chunk_size=16)
    assert torch.isfinite(out).all()
    assert torch.allclose(out, selective_scan_sequential(**x))


def test_optional_arguments_follow_mamba():
    """Without D, z, the bias and softplus, out_t = <C_t, h_t> with Δ taken as given."""
    x = inputs(b=1, d=2, length=3, n=1)
    u, delta, A, B, C = (x[k] for k in ["u", "delta", "A", "B", "C"])  # noqa: N806
    out = selective_scan(u, delta, A, B, C)
    h = torch.zeros(1, 2, 1, dtype=torch.float64)
    for t in range(3):
        h = torch.exp(delta[..., t, None] * A) * h + (delta[..., t] * u[..., t])[..., None] * B[:, None, :, t]
        assert torch.allclose(out[..., t], (h * C[:, None, :, t]).sum(-1))
    assert selective_scan(**x).dtype == torch.float64
    half = selective_scan(**{k: v.bfloat16() for k, v in x.items()})
    assert half.dtype == torch.bfloat16  # the scan itself runs in float32, as the kernel


def test_bad_shapes_are_named():
    x = inputs()
    with pytest.raises(ValueError, match=r"B must be \(2, 4, 37\), got \(2, 1, 4, 37\) \(grouped"):
        selective_scan(**dict(x, B=x["B"][:, None]))
    with pytest.raises(ValueError, match=r"A must be \(channels=5, states\)"):
        selective_scan(**dict(x, A=x["A"][:3]))
    with pytest.raises(ValueError, match="complex A"):
        selective_scan(**dict(x, A=torch.complex(x["A"], x["A"])))
    with pytest.raises(ValueError, match=r"delta_bias must be \(5,\)"):
        selective_scan(**dict(x, delta_bias=x["delta_bias"][:2]))
    with pytest.raises(ValueError, match="chunk_size must be at least 1"):
        selective_scan(**x, chunk_size=-1)


def test_backend_choice_and_the_fused_kernel_dispatch(monkeypatch):
    assert resolve_backend("auto", "cpu") == "torch"
    with pytest.raises(RuntimeError, match="backend 'cuda': the tensors are not on a CUDA device"):
        resolve_backend("cuda", "cpu")
    with pytest.raises(ValueError, match="choose auto, torch, cuda or sequential"):
        resolve_backend("triton", "cpu")
    monkeypatch.setitem(sys.modules, "mamba_ssm", None)  # not installed (or broken)
    _mamba_import_error.cache_clear()  # the import is tried once per process
    assert resolve_backend("auto", "cuda") == "torch"
    with pytest.raises(RuntimeError, match=r"mamba_ssm does not import \(ModuleNotFoundError: .*\); install the extra"):
        resolve_backend("cuda", "cuda")
    # mamba_ssm importable: CUDA tensors go to its selective_scan_fn with the same arguments in the same order
    calls = []
    fused = types.ModuleType("mamba_ssm.ops.selective_scan_interface")
    fused.selective_scan_fn = lambda *args: calls.append(args) or args[0]
    for name in ("mamba_ssm", "mamba_ssm.ops"):
        monkeypatch.setitem(sys.modules, name, types.ModuleType(name))
    monkeypatch.setitem(sys.modules, fused.__name__, fused)
    _mamba_import_error.cache_clear()
    assert resolve_backend("auto", "cuda") == "cuda" and resolve_backend("auto", "cpu") == "torch"
    x = inputs()
    module = sys.modules["lit_i2v.ops.selective_scan"]  # the package's attribute of that name is the function
    monkeypatch.setattr(module, "resolve_backend", lambda backend, device: "cuda")
    half = {k: v.float() if k in ("A", "D", "delta_bias") else v.bfloat16() for k, v in x.items()}
    selective_scan(**half, delta_softplus=True)
    u, delta, A, B, C, D, z, bias, softplus, last = calls[0]  # noqa: N806
    assert u is half["u"] and torch.equal(bias, half["delta_bias"]) and softplus is True and last is False
    assert {t.dtype for t in (u, delta, B, C, z)} == {torch.bfloat16} and {A.dtype, D.dtype} == {torch.float32}
    with pytest.raises(ValueError, match="kernel takes no float64"):
        selective_scan(**x, backend="cuda")
    selective_scan(**x)  # float64 under auto: the torch scan
    assert len(calls) == 1
    _mamba_import_error.cache_clear()


def test_flops_are_counted_by_formula():
    x = inputs(b=2, d=5, length=37, n=4)
    with counting_scan_flops() as scans:
        selective_scan(**x)
        selective_scan(x["u"], x["delta"], x["A"], x["B"], x["C"])
    assert scans[0] == 2 * 37 * 5 * (5 * 4 + 2) + 2 * 37 * 5 * (5 * 4)
    with counting_scan_flops() as none:
        pass
    selective_scan(**x)
    assert none[0] == 0  # outside the block nothing is counted
