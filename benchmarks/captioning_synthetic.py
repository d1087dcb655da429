"""Captioning on the synthetic motion set: a temporal captioner against a frame-order-blind one, and what
self-critical training adds.

    python benchmarks/captioning_synthetic.py [--skip-fit] [--out benchmarks/out/captioning]

Fits the synthetic captioning recipes in ``RUNS`` (``configs/captioning/synthetic*.yaml``) unless ``--skip-fit``, then
reads each run's last validation captions (``captions_val_epoch<N>.json``, written by ``VideoCaptioning``; for the
self-critical run also the one just before it began) and reports the COCO metrics and the share of captions that
name the video's motion correctly (``lit_i2v.data.synthetic.caption_motion`` on the caption and on the video's
label). Every class has a time-reversed twin (left/right, up/down, approaching/away, appear/disappear), so an
order-blind captioner can name the motion's pair but not the motion: of the captions that name the right pair, it
names the right direction about half the time, plus what the set of frames gives away (where a motion's range lies;
the linear probe on the frames' average measures that)."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

from lit_i2v.data.synthetic import caption_motion

ROOT = Path(__file__).resolve().parents[1]
RUNS = {
    "frames averaged (order-blind)": "synthetic_mean",
    "frames in order (CLIP4Caption layout, frozen tower)": "synthetic",
    "ClipCap: frames in order, tiny GPT-2": "synthetic_clipcap",
    "synthetic_scst: the same after 8 epochs of self-critical training": "synthetic_scst",
}
# runs whose earlier validation (epoch, row name) is a row too
BEFORE = {"synthetic_scst": (47, "synthetic_scst at epoch 48: frames in order, teacher forcing only")}
PAIRS = 2  # CLASSES come in time-reversed twins: (0, 1), (2, 3), ...


def motion_scores(captions: list[dict], references: dict) -> dict:
    """The share of captions that name the video's motion; that name its pair (the motion or its time reversal);
    and, of those, the share that name the direction right: an order-blind captioner is at 50% there at best."""
    return motion_counts([(caption_motion(c["caption"]), caption_motion(references[c["video_id"]][0]))
                          for c in captions])  # fmt: skip


def motion_counts(named: list[tuple[int | None, int]]) -> dict:
    """(named class or None, true class) pairs → the three shares (x100)."""
    in_pair = [(g, t) for g, t in named if g is not None and g // PAIRS == t // PAIRS]
    return {
        "motion_right": 100 * sum(g == t for g, t in named) / len(named),
        "pair_right": 100 * len(in_pair) / len(named),
        "direction_in_pair": 100 * sum(g == t for g, t in in_pair) / max(len(in_pair), 1),
    }


def last_captions(run_dir: Path, epoch: int | None = None) -> dict:
    """The last epoch's validation captions (or ``epoch``'s) of the newest run (version_N) under ``run_dir``."""
    versions = sorted(run_dir.glob("version_*"), key=lambda p: int(p.name.split("_")[1]))
    if versions:
        run_dir = versions[-1]
    files = sorted(run_dir.glob("captions_val_epoch*.json"), key=lambda p: int(p.stem.rsplit("epoch", 1)[1]))
    if epoch is not None:
        files = [f for f in files if f.stem.endswith(f"_epoch{epoch}")]
    if not files:
        raise FileNotFoundError(f"no validation captions under {run_dir}: fit the recipe first")
    return json.loads(files[-1].read_text()) | {"file": str(files[-1])}


def row(name: str, result: dict, references: dict) -> dict:
    m = result["metrics"]
    return {"run": name, "videos": len(result["captions"]), "cider": 100 * m["cider"], "bleu4": 100 * m["bleu4"],
            "meteor": 100 * m.get("meteor", float("nan")), "rouge_l": 100 * m["rouge_l"],
            **motion_scores(result["captions"], references), "file": result["file"]}  # fmt: skip


def linear_probes(root: Path, frames: int = 8, steps: int = 500) -> dict[str, dict]:
    """Whether the frozen tower's frame embeddings carry the direction at all: linear probes (z-scored inputs, L2 0.001,
    Adam, full batch) from the 480 training videos' embeddings to their class, scored on the 160 validation videos
    like the captions (top-1, pair, direction within pair), on the frames' embeddings concatenated in order, their
    average, and the last minus the first."""
    import av
    import numpy as np
    import torch

    from lit_i2v.backbones import CLIP
    from lit_i2v.data.synthetic import templates

    clip = CLIP("ViT-S-8-tiny", pretrained="synthetic").eval()
    mean, std = (torch.tensor(clip.pretrained_cfg[k]).view(1, 3, 1, 1) for k in ("mean", "std"))

    def embeddings(split: str) -> tuple[torch.Tensor, torch.Tensor]:
        xs, ys = [], []
        for item in json.loads((root / f"{split}.json").read_text()):
            with av.open(str(root / "videos" / f"{item['id']}.mp4")) as container:
                decoded = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
            index = np.linspace(0, len(decoded) - 1, frames).round().astype(int)
            video = torch.from_numpy(np.stack([decoded[i] for i in index])).permute(0, 3, 1, 2).float()
            with torch.no_grad():
                xs.append(clip.encode_video(((video - mean) / std)[None], project=True)[0])  # (T, D)
            ys.append(templates().index(item["template"]))
        return torch.stack(xs), torch.tensor(ys)

    torch.manual_seed(0)
    (train_x, train_y), (val_x, val_y) = embeddings("train"), embeddings("validation")
    views = {"concatenated in order": lambda x: x.flatten(1), "averaged": lambda x: x.mean(1),
             "last minus first": lambda x: x[:, -1] - x[:, 0]}  # fmt: skip
    out = {}
    for name, view in views.items():
        a, b = view(train_x), view(val_x)
        mu, sd = a.mean(0), a.std(0) + 1e-6
        a, b = (a - mu) / sd, (b - mu) / sd
        weight = torch.zeros(a.shape[1], len(templates()), requires_grad=True)
        bias = torch.zeros(len(templates()), requires_grad=True)
        optimizer = torch.optim.Adam([weight, bias], lr=1e-2)
        for _ in range(steps):
            optimizer.zero_grad()
            loss = torch.nn.functional.cross_entropy(a @ weight + bias, train_y) + 1e-3 * weight.pow(2).sum()
            loss.backward()
            optimizer.step()
        pred = (b @ weight + bias).argmax(1).tolist()
        out[name] = motion_counts(list(zip(pred, val_y.tolist(), strict=True)))
    return out


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
        if recipe in BEFORE:
            epoch, before = BEFORE[recipe]
            rows.append(row(before, last_captions(run_dir, epoch), references))
        rows.append(row(name, last_captions(run_dir), references))
        print(json.dumps(rows[-1]), flush=True)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    lines = ["| captioner | CIDEr-D | BLEU-4 | METEOR | ROUGE-L | motion right | pair right | direction within pair |",
             "|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for r in rows:
        scores = f"{r['cider']:.1f} | {r['bleu4']:.1f} | {r['meteor']:.1f} | {r['rouge_l']:.1f}"
        motion = f"{r['motion_right']:.1f}% | {r['pair_right']:.1f}% | {r['direction_in_pair']:.1f}%"
        lines.append(f"| {r['run']} | {scores} | {motion} |")
    probes = linear_probes(validation.parent)
    lines += ["", "| linear probe on the frozen frame embeddings | top-1 | pair right | direction within pair |",
              "|---|---|---|---|"]  # fmt: skip
    for name, r in probes.items():
        lines.append(f"| {name} | {r['motion_right']:.1f}% | {r['pair_right']:.1f}% | {r['direction_in_pair']:.1f}% |")
    (out / "results.json").write_text(json.dumps({"captioners": rows, "probes": probes}, indent=1))
    (out / "table.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
