"""Captioning on the synthetic motion set: a temporal captioner against a frame-order-blind one.

    python benchmarks/captioning_synthetic.py [--skip-fit] [--out benchmarks/out/captioning]

Fits ``configs/captioning/synthetic.yaml`` (the decoder attends to the frames in order) and
``configs/captioning/synthetic_mean.yaml`` (to their average: blind to order) unless ``--skip-fit``, then reads each
run's last validation captions (``captions_val_epoch<N>.json``, written by ``VideoCaptioning``) and reports the COCO
metrics and the share of captions that name the video's motion correctly (``lit_i2v.data.synthetic.caption_motion``
on the caption and on the video's label). Every class has a time-reversed twin (left/right, up/down, approaching/
away, appear/disappear), so an order-blind captioner can name at most the motion's pair, not the motion.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

from lit_i2v.data.synthetic import caption_motion

ROOT = Path(__file__).resolve().parents[1]
RUNS = {"frames in order (CLIP4Caption layout)": "synthetic", "frames averaged (order-blind)": "synthetic_mean"}


def last_captions(run_dir: Path) -> dict:
    """The last epoch's validation captions of the newest run (version_N) under ``run_dir``."""
    versions = sorted(run_dir.glob("version_*"), key=lambda p: int(p.name.split("_")[1]))
    if versions:
        run_dir = versions[-1]
    files = sorted(run_dir.glob("captions_val_epoch*.json"), key=lambda p: int(p.stem.rsplit("epoch", 1)[1]))
    if not files:
        raise FileNotFoundError(f"no validation captions under {run_dir}: fit the recipe first")
    return json.loads(files[-1].read_text()) | {"file": str(files[-1])}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--skip-fit", action="store_true", help="read the runs already under runs/")
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "out" / "captioning"))
    args = p.parse_args()
    validation = ROOT / "data" / "synthetic-motion" / "captions_validation.json"
    references = {str(v["video_id"]): v["captions"] for v in json.loads(validation.read_text())}
    rows = []
    for name, recipe in RUNS.items():
        config = ROOT / "configs" / "captioning" / f"{recipe}.yaml"
        run_dir = ROOT / "runs" / f"captioning-{recipe.replace('_', '-')}"
        if not args.skip_fit:
            subprocess.run([sys.executable, "-m", "lit_i2v", "fit", "--config", str(config),
                            "--trainer.enable_progress_bar=false"], check=True, cwd=ROOT)  # fmt: skip
        result = last_captions(run_dir)
        right = [caption_motion(c["caption"]) == caption_motion(references[c["video_id"]][0])
                 for c in result["captions"]]  # fmt: skip
        m = result["metrics"]
        rows.append({"run": name, "videos": len(right), "cider": 100 * m["cider"], "bleu4": 100 * m["bleu4"],
                     "meteor": 100 * m.get("meteor", float("nan")), "rouge_l": 100 * m["rouge_l"],
                     "motion_right": 100 * sum(right) / len(right), "file": result["file"]})  # fmt: skip
        print(json.dumps(rows[-1]), flush=True)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(rows, indent=1))
    lines = ["| captioner | CIDEr-D | BLEU-4 | METEOR | ROUGE-L | motion named right |", "|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['run']} | {r['cider']:.1f} | {r['bleu4']:.1f} | {r['meteor']:.1f} | {r['rouge_l']:.1f} | "
                     f"{r['motion_right']:.1f}% |")  # fmt: skip
    (out / "table.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
