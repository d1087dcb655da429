"""Training step per strategy: time, peak memory and achieved FLOP/s, against full fine-tuning and the machine's
matrix-multiply throughput.

    python benchmarks/train_step.py [--configs configs/recognition/k400/*.yaml] [--batch 1] [--steps 2]
    python benchmarks/train_step.py --device cuda --precision bf16 --batch 32 --steps 10   # on a GPU: MFU

Each recipe's model (random weights of the recipe's shapes: the weights do not change the cost) takes ``--steps``
AdamW steps of its own ``training_step`` (augmentation mixing, distillation teacher and re-encoded prompts
included) on a batch of ``--batch`` clips of the recipe's frames and resolution, after one warm-up step, each recipe
in its own process so that its peak resident memory is its own. The FLOPs of a step (forward, and backward through
what the strategy lets train) are counted by running the same step under ``FakeTensorMode`` with PyTorch's FLOP
counter, halved to the multiply-add convention; achieved FLOP/s = counted FLOPs / measured time. The machine's
throughput is a 2048x2048 fp32 matrix product timed on all threads. Writes ``results.json`` and a Markdown table
under ``--out``.

On a GPU (``--device cuda``), steps run under autocast at ``--precision bf16`` (or fp32), timed between CUDA
synchronisations; peak memory is the allocator's peak; the machine's throughput is an 8192x8192 matrix product at
that precision, and MFU (model FLOPs utilisation) divides the achieved rate by the card's datasheet dense peak where
the card is known (H100/H200 SXM 989 bf16 TFLOP/s, H100 PCIe 756, A100 312; the datasheets count a multiply-add as
2 FLOPs, so the step's FLOPs are doubled for it).
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


# Dense (no sparsity) tensor-core peaks from NVIDIA's datasheets, TFLOP/s with a multiply-add counted as 2 FLOPs.
DATASHEET_TFLOPS = {"bf16": [("H100 PCIe", 756.0), ("H100", 989.4), ("H200", 989.4), ("A100", 312.0)]}


def datasheet_tflops(name: str, precision: str) -> float | None:
    return next((peak for key, peak in DATASHEET_TFLOPS.get(precision, []) if key in name), None)


def dtype_of(precision: str):
    import torch

    return {"32": torch.float32, "bf16": torch.bfloat16}[precision]


def synchronize(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize(device)


def matmul_gflops(device: str = "cpu", precision: str = "32", repeats: int = 10) -> float:
    import torch

    n = 8192 if device.startswith("cuda") else 2048
    a = torch.randn(n, n, device=device, dtype=dtype_of(precision))
    b = torch.randn(n, n, device=device, dtype=dtype_of(precision))
    a @ b
    synchronize(device)
    start = time.perf_counter()
    for _ in range(repeats):
        a @ b
    synchronize(device)
    return repeats * n**3 / (time.perf_counter() - start) / 1e9  # multiply-adds per second, as GFLOPs below


def build(config: str):
    """The recipe's task, randomly initialised, and its (frames, size)."""
    import torch  # noqa: F401

    from lit_i2v.cli import LitI2VCLI
    from lit_i2v.commands.summary import make_weights_optional

    class CLI(LitI2VCLI):
        def before_instantiate_classes(self) -> None:
            super().before_instantiate_classes()
            make_weights_optional(self.config.model)
            init = self.config.model.init_args
            if isinstance(init.get("class_names"), str) and init.get("num_classes"):
                init.class_names = [f"class {i}" for i in range(init.num_classes)]
            teacher = init.get("distillation")
            if teacher is not None and teacher.get("init_args") is not None:
                make_weights_optional(teacher)

    cli = CLI(args=["--config", config], run=False, only=("model",))
    sampler = cli.config.get("data", {}).get("init_args", {}).get("sampler", {}).get("init_args", {})
    return cli.model, sampler.get("num_frames", 8), cli.model.backbone.visual.image_size


def training_batch(batch: int, frames: int, size: int) -> dict:
    import torch

    return {"video": torch.randint(0, 256, (batch, frames, 3, size, size), dtype=torch.uint8),
            "label": torch.zeros(batch, dtype=torch.long), "skipped": torch.zeros(batch, dtype=torch.long)}  # fmt: skip


def step_flops(model, batch: int, frames: int, size: int) -> float:
    """GFLOPs (multiply-add = 1) of one training step's forward and backward (the task's own ``training_step``: a
    distillation teacher, prompts re-encoded each step, mixup all count), on fake tensors."""
    from torch._subclasses.fake_tensor import FakeTensorMode
    from torch.utils.flop_counter import FlopCounterMode

    from lit_i2v.summary import _CUSTOM

    try:
        with FakeTensorMode(allow_non_fake_inputs=True):
            data = training_batch(batch, frames, size)
            with FlopCounterMode(display=False, custom_mapping=_CUSTOM) as counter:
                model.training_step(data, 0).backward()
    except Exception:  # a step whose control flow reads tensor values: count a real step instead
        data = training_batch(batch, frames, size)
        with FlopCounterMode(display=False, custom_mapping=_CUSTOM) as counter:
            model.training_step(data, 0).backward()
    model.zero_grad(set_to_none=True)
    return counter.get_total_flops() / 2 / 1e9


def one(config: str, batch: int, steps: int, device: str = "cpu", precision: str = "32") -> dict:
    import warnings

    import torch

    warnings.filterwarnings("ignore", message=".*self.log.*")  # training_step logs; no trainer here
    model, frames, size = build(config)
    model.train()
    trainable = [p for p in model.parameters() if p.requires_grad]
    if not trainable:
        return {"config": os.path.relpath(config, ROOT), "skipped": "nothing trains (a zero-shot recipe)"}
    flops = step_flops(model, batch, frames, size)
    model.to(device)
    optimizer = torch.optim.AdamW(trainable, lr=1e-4)
    data = {k: v.to(device) for k, v in training_batch(batch, frames, size).items()}
    autocast = torch.autocast(torch.device(device).type, dtype=dtype_of(precision), enabled=precision != "32")
    times = []
    for i in range(steps + 1):
        synchronize(device)
        start = time.perf_counter()
        with autocast:
            loss = model.training_step(data, 0)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        synchronize(device)
        if i:  # the first step warms up (allocations, kernels)
            times.append(time.perf_counter() - start)
    seconds = sum(times) / len(times)
    if device.startswith("cuda"):
        peak_gb = torch.cuda.max_memory_allocated(device) / 2**30
    else:
        peak_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    return {
        "config": os.path.relpath(config, ROOT),
        "strategy": type(model.transfer).__name__,
        "trainable_params": sum(p.numel() for p in trainable),
        "step_gflops": round(flops, 1),
        "step_s": round(seconds, 2),
        "achieved_gflops_per_s": round(flops / seconds, 1),
        "peak_memory_gb": round(peak_gb, 2),
        "batch": batch,
        "frames": frames,
        "size": size,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--configs", nargs="*", default=sorted(glob.glob(str(ROOT / "configs/recognition/k400/*.yaml"))))
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--steps", type=int, default=2)
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    p.add_argument("--precision", default="32", choices=["32", "bf16"], help="autocast dtype of the steps")
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "out" / "train_step"))
    p.add_argument("--one", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.one:
        print(json.dumps(one(args.one, args.batch, args.steps, args.device, args.precision)))
        return
    import torch

    peak = matmul_gflops(args.device, args.precision)
    card = torch.cuda.get_device_name(args.device) if args.device.startswith("cuda") else "cpu"
    datasheet = datasheet_tflops(card, args.precision)
    known = f"{datasheet} TFLOP/s (multiply-add = 2)" if datasheet else "not known: no MFU column"
    print(f"{card}: {args.precision} matrix product {peak:.1f} GFLOP/s (multiply-add = 1); datasheet peak {known}",
          flush=True)  # fmt: skip
    rows = []
    for config in args.configs:
        done = subprocess.run([sys.executable, __file__, "--one", config, "--batch", str(args.batch), "--steps",
                               str(args.steps), "--device", args.device, "--precision", args.precision],
                              capture_output=True, text=True)  # fmt: skip
        if done.returncode:
            print(f"{config}: failed: {done.stderr.strip().splitlines()[-1]}", flush=True)
            continue
        row = json.loads(done.stdout.strip().splitlines()[-1])
        if "skipped" in row:
            print(f"{config}: {row['skipped']}", flush=True)
            continue
        row["share_of_matmul_peak"] = round(row["achieved_gflops_per_s"] / peak, 3)
        if datasheet:
            row["mfu"] = round(2 * row["achieved_gflops_per_s"] / (datasheet * 1e3), 3)
        rows.append(row)
        print(json.dumps(row), flush=True)
    full = next((r for r in rows if r["strategy"] == "FullFinetune"), None)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    facts = {"device": card, "precision": args.precision, "batch": args.batch, "matmul_gflops_per_s": round(peak, 1),
             "datasheet_tflops": datasheet}  # fmt: skip
    (out / "results.json").write_text(json.dumps({**facts, "rows": rows}, indent=1))
    lines = [
        "| recipe | trainable | GFLOPs a step | step time | vs full fine-tuning | achieved GFLOP/s | of matmul peak |"
        " peak memory |" + (" MFU |" if datasheet else ""),
        "|---|---|---|---|---|---|---|---|" + ("---|" if datasheet else ""),
    ]
    for r in rows:
        ratio = f"{r['step_s'] / full['step_s']:.2f}x" if full else "-"
        cells = [
            Path(r["config"]).stem, f"{r['trainable_params'] / 1e6:.2f}M", r["step_gflops"], f"{r['step_s']} s", ratio,
            r["achieved_gflops_per_s"], f"{100 * r['share_of_matmul_peak']:.0f}%", f"{r['peak_memory_gb']} GB",
        ] + ([f"{100 * r['mfu']:.1f}%"] if datasheet else [])  # fmt: skip
        lines.append("| " + " | ".join(str(c) for c in cells) + " |")
    (out / "table.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
