"""Every transfer strategy on the synthetic motion set under one budget; writes a Markdown table and JSON.

    python benchmarks/strategies_synthetic.py [--epochs 6] [--out benchmarks/out]

Budget: the quickstart's data and trainer (8 frames at 64 px, batch 16, seed 0, AdamW, warm-up cosine) for
``--epochs`` epochs, all starting from the same synthetic-pretrained tiny CLIP (``pretrained: synthetic``, made by
``python -m lit_i2v pretrain-synthetic`` if absent). Frames are mean-pooled unless the run is the post-network one,
so whatever temporal modelling a run has comes from its strategy. Each run is a separate process under
``/usr/bin/time -v`` for its peak memory; step time is the fit's wall time over its optimizer steps (data, forward,
backward and validation included). Accuracy is the best validation top-1 (160 videos; chance 12.5%; any frame
averaging model is capped at 50% because each class has a time-reversed twin).
"""

from __future__ import annotations

import argparse
import csv
import json
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

CLASS_NAMES = f"--model.init_args.class_names={ROOT / 'data' / 'synthetic-motion' / 'labels.json'}"
RUNS = {  # name: (strategy, temporal module, extra overrides)
    "linear probe (frozen, mean pool)": ("lit_i2v.strategies.Frozen", "lit_i2v.heads.MeanPool", []),
    "post-network: temporal transformer on frozen features": (
        "lit_i2v.strategies.Frozen", "lit_i2v.heads.TemporalTransformer",
        ["--model.init_args.temporal.init_args.layers=2", "--model.init_args.temporal.init_args.heads=3"],
    ),
    "full fine-tuning (mean pool)": ("lit_i2v.strategies.FullFinetune", "lit_i2v.heads.MeanPool", []),
    "partial: last block": (
        "lit_i2v.strategies.PartialFinetune", "lit_i2v.heads.MeanPool", ["--model.init_args.transfer.last_blocks=1"],
    ),
    "BitFit": (
        "lit_i2v.strategies.PartialFinetune", "lit_i2v.heads.MeanPool", ["--model.init_args.transfer.biases=true"],
    ),
    "ST-Adapter 2 per block": (
        "lit_i2v.strategies.STAdapter", "lit_i2v.heads.MeanPool",
        ["--model.init_args.transfer.channels=48", "--model.init_args.transfer.positions=[pre_attn,pre_mlp]"],
    ),
    "AIM (SSv2 layout)": (
        "lit_i2v.strategies.AIM", "lit_i2v.heads.MeanPool",
        ["--model.init_args.transfer.scale=1.0", "--model.init_args.transfer.temporal_in=true",
         "--model.init_args.transfer.max_frames=8"],
    ),
    "ZeroI2V": ("lit_i2v.strategies.ZeroI2V", "lit_i2v.heads.MeanPool", ["--model.init_args.transfer.scale=1.0"]),
    "LoRA r8 (all linears)": (
        "lit_i2v.strategies.LoRA", "lit_i2v.heads.MeanPool",
        ["--model.init_args.transfer.targets=[attn.qkv,attn.proj,mlp.fc1,mlp.fc2]"],
    ),
    "AdaptFormer": (
        "lit_i2v.strategies.AdaptFormer", "lit_i2v.heads.MeanPool", ["--model.init_args.transfer.hidden=16"],
    ),
    "VPT deep (8 prompts)": (
        "lit_i2v.strategies.VPT", "lit_i2v.heads.MeanPool", ["--model.init_args.transfer.deep=true"],
    ),
    "X-CLIP (messages, 1-layer MIT, video prompts)": (
        "lit_i2v.strategies.XCLIP", "lit_i2v.heads.TemporalTransformer",
        ["--model.init_args.temporal.init_args.layers=1", "--model.init_args.temporal.init_args.heads=1",
         "--model.init_args.head=lit_i2v.heads.VideoPromptHead", CLASS_NAMES],
    ),
    "Vita-CLIP (global/local/summary tokens, CSC text context)": (
        "lit_i2v.strategies.VitaCLIP", "lit_i2v.heads.MeanPool",
        ["--model.init_args.head=lit_i2v.heads.CoOpHead", "--model.init_args.head.context_init=null",
         "--model.init_args.head.num_context=8", "--model.init_args.head.class_specific=true", CLASS_NAMES],
    ),
    "ViFi-CLIP (both towers, prompts re-encoded)": (
        "lit_i2v.strategies.FullFinetune", "lit_i2v.heads.MeanPool",
        ["--model.init_args.transfer.towers=[visual,text]", "--model.init_args.head=lit_i2v.heads.PromptEncoderHead",
         CLASS_NAMES],
    ),
    "DiST (8 dense + 4 sparse frames)": (
        "lit_i2v.strategies.DiST", "lit_i2v.heads.MeanPool",
        ["--model.init_args.transfer.temporal_dim=24", "--model.init_args.transfer.integration_dim=64",
         "--model.init_args.transfer.max_frames=8", "--model.init_args.head=lit_i2v.heads.TextClassifierHead",
         "--model.init_args.head.trainable=false", CLASS_NAMES],
    ),
    "MoMa (4x4 windows, 4 scans, state 16)": (
        "lit_i2v.strategies.MoMa", "lit_i2v.heads.MeanPool", ["--model.init_args.transfer.window=4"],
    ),
    "EVL side network (4 layers)": (
        "lit_i2v.strategies.EVL", "lit_i2v.heads.MeanPool",
        ["--model.init_args.transfer.heads=3", "--model.init_args.transfer.max_frames=8"],
    ),
}  # fmt: skip


def ensure_pretrained() -> None:
    from lit_i2v.backbones.weights import is_available

    if not is_available("ViT-S-8-tiny", "synthetic"):
        subprocess.run([sys.executable, "-m", "lit_i2v", "pretrain-synthetic"], check=True, cwd=ROOT)


def run(name: str, strategy: str, temporal: str, extra: list[str], epochs: int, out: Path) -> dict:
    slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")
    run_dir = out / slug
    if run_dir.exists():
        shutil.rmtree(run_dir)  # a rerun starts clean: no stale metrics or checkpoints
    args = [
        sys.executable, "-m", "lit_i2v", "fit", "--config", str(ROOT / "configs" / "quickstart.yaml"),
        "--model.init_args.backbone.init_args.pretrained=synthetic",
        f"--model.init_args.transfer={strategy}", f"--model.init_args.temporal={temporal}", *extra,
        f"--trainer.max_epochs={epochs}", f"--trainer.default_root_dir={run_dir}",
        f"--trainer.logger.init_args.save_dir={run_dir}", "--trainer.enable_progress_bar=false",
        f"--data.init_args.root={ROOT / 'data' / 'synthetic-motion'}",
    ]  # fmt: skip
    start = time.perf_counter()
    done = subprocess.run(["/usr/bin/time", "-v", *args], cwd=ROOT, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if done.returncode:
        raise RuntimeError(f"{name} failed:\n{done.stderr[-3000:]}")
    peak_kb = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", done.stderr).group(1))
    metrics = sorted(run_dir.rglob("metrics.csv"), key=lambda p: p.stat().st_mtime)
    if not metrics:
        raise RuntimeError(f"{name}: no metrics.csv under {run_dir}; the run's output:\n{done.stderr[-2000:]}")
    with open(metrics[-1]) as f:
        rows = list(csv.DictReader(f))
    top1 = max(float(r["val/top1"]) for r in rows if r.get("val/top1"))
    steps = max(int(r["step"]) for r in rows if r.get("step")) + 1
    summary = subprocess.run(
        [sys.executable, "-m", "lit_i2v", "summary", *args[4:6], *(a for a in args if a.startswith("--model.")),
         "--json"], cwd=ROOT, capture_output=True, text=True,
    )  # fmt: skip
    if summary.returncode:
        raise RuntimeError(f"{name}: summary failed:\n{summary.stderr[-2000:]}")
    s = json.loads(summary.stdout.strip().splitlines()[-1])
    return {
        "run": name, "val_top1": round(top1, 4), "trainable_params": s["trainable_params"],
        "extra_params": s["extra_params"] + s["strategy_params"], "gflops_per_view": s["gflops_per_view"],
        "seconds_per_step": round(wall / steps, 3), "peak_rss_gb": round(peak_kb / 2**20, 2), "steps": steps,
    }  # fmt: skip


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--epochs", type=int, default=6)
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "out" / "strategies"))
    p.add_argument("--only", nargs="*", help="run names to run (default: all)")
    args = p.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    ensure_pretrained()
    saved = out / "results.json"
    # Results accumulate by run name, so a run can be redone alone (--only) without losing the others.
    by_name = {r["run"]: r for r in json.loads(saved.read_text())} if saved.is_file() else {}
    for name, (strategy, temporal, extra) in RUNS.items():
        if args.only and name not in args.only:
            continue
        by_name[name] = run(name, strategy, temporal, extra, args.epochs, out)
        saved.write_text(json.dumps([by_name[n] for n in RUNS if n in by_name], indent=1))
        print(json.dumps(by_name[name]), flush=True)
    results = [by_name[n] for n in RUNS if n in by_name]
    lines = [
        "| run | val top-1 | trainable | added | GFLOPs / view | s / step | peak RSS |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in results:
        lines.append(
            f"| {r['run']} | {100 * r['val_top1']:.1f}% | {r['trainable_params'] / 1e3:.1f}k | "
            f"{r['extra_params'] / 1e3:.1f}k | {r['gflops_per_view']:.3f} | {r['seconds_per_step']:.2f} | "
            f"{r['peak_rss_gb']:.2f} GB |"
        )
    (out / "table.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
