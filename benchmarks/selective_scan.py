"""The selective scan at MoMa's sizes: lit_i2v's chunked scan against the step-by-step recurrence (and, on a GPU with
``mamba_ssm`` installed, its fused kernel); time of forward and of forward + backward, and peak memory.

    python benchmarks/selective_scan.py [--device cpu] [--frames 4 8 16] [--out benchmarks/out/selective_scan]

One MoMa layer of ViT-B/16 on one clip: hidden 384, state 16, the 4 scan directions side by side (batch 4 per clip),
196 patches a frame, so L = 196 x frames. Each case runs in its own process, so that its peak memory is its own:
on CPU the growth of the peak resident set over the process's size before the scan; on CUDA
``torch.cuda.max_memory_allocated`` over the inputs. Times are the best of ``--rounds`` (one round for the
sequential backward past 2000 positions: it takes minutes). The backward is autograd's through the loop for the
sequential scan and the recomputing backward of ``lit_i2v.ops`` for the chunked one.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def case(backend: str, length: int, device: str, rounds: int, clips: int) -> dict:
    import torch

    from lit_i2v.ops import selective_scan

    torch.manual_seed(0)
    b, d, n = 4 * clips, 384, 16
    make = lambda *s: torch.randn(*s, device=device, requires_grad=True)  # noqa: E731
    u, delta, bm, cm = make(b, d, length), make(b, d, length), make(b, n, length), make(b, n, length)
    a = (-torch.arange(1, n + 1.0, device=device).repeat(d, 1)).requires_grad_()
    dvec, bias = torch.ones(d, device=device, requires_grad=True), torch.zeros(d, device=device, requires_grad=True)
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    small = [t[..., :8].detach().clone().requires_grad_() for t in (u, delta, bm, cm)]
    selective_scan(*small[:2], a, *small[2:], dvec, None, bias, True, backend=backend).sum().backward()  # warm-up
    for t in (a, dvec, bias):
        t.grad = None
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
    else:
        base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    fwd, both = float("inf"), float("inf")
    for _ in range(rounds if backend != "sequential" or length <= 2000 else 1):
        sync()
        start = time.perf_counter()
        out = selective_scan(u, delta, a, bm, cm, dvec, None, bias, True, backend=backend)
        sync()
        middle = time.perf_counter()
        out.float().square().mean().backward()
        sync()
        end = time.perf_counter()
        fwd, both = min(fwd, middle - start), min(both, end - start)
        del out
        for t in (u, delta, bm, cm, a, dvec, bias):
            t.grad = None  # each round writes its gradients afresh, as a training step after zero_grad
    if device == "cuda":
        peak = torch.cuda.max_memory_allocated() - base
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - base
    return {"backend": backend, "length": length, "forward_s": round(fwd, 4), "forward_backward_s": round(both, 4),
            "peak_mb": round(peak / 2**20, 1)}  # fmt: skip


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--device", default="cpu")
    p.add_argument("--frames", type=int, nargs="*", default=[4, 8, 16])
    p.add_argument("--clips", type=int, default=1, help="clips per batch (the 4 directions of each side by side)")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "out" / "selective_scan"))
    p.add_argument("--case", nargs=2, help=argparse.SUPPRESS)  # internal: backend length, in a child process
    args = p.parse_args()
    if args.case:
        print(json.dumps(case(args.case[0], int(args.case[1]), args.device, args.rounds, args.clips)))
        return
    backends = ["torch", "sequential"]
    if args.device == "cuda":
        from lit_i2v.ops.selective_scan import mamba_available

        backends += ["cuda"] if mamba_available() else []
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for frames in args.frames:
        for backend in backends:
            child = [sys.executable, __file__, "--device", args.device, "--rounds", str(args.rounds),
                     "--clips", str(args.clips), "--case", backend, str(196 * frames)]  # fmt: skip
            done = subprocess.run(child, capture_output=True, text=True, cwd=ROOT)
            if done.returncode:
                raise RuntimeError(f"{backend} at {frames} frames failed:\n{done.stderr[-2000:]}")
            row = json.loads(done.stdout.strip().splitlines()[-1]) | {"frames": frames}
            rows.append(row)
            print(json.dumps(row), flush=True)
    (out / "results.json").write_text(json.dumps(rows, indent=1))
    lines = ["| frames | L | backend | forward | forward + backward | peak memory | vs sequential (fwd+bwd) |",
             "|---|---|---|---|---|---|---|"]  # fmt: skip
    for r in rows:
        seq = next(s for s in rows if s["length"] == r["length"] and s["backend"] == "sequential")
        lines.append(
            f"| {r['frames']} | {r['length']} | {r['backend']} | {r['forward_s']:.3f} s | "
            f"{r['forward_backward_s']:.3f} s | {r['peak_mb']:.0f} MB | "
            f"{seq['forward_backward_s'] / r['forward_backward_s']:.1f}x |"
        )
    (out / "table.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
