"""Multi-view evaluation throughput: test videos per second end to end (decoding, views, model), per view layout.

    python benchmarks/eval_throughput.py [--config configs/quickstart.yaml] [--views 1x1 3x1 4x3] [--workers 2]

Runs ``trainer.test`` of the recipe (its model randomly initialised: weights do not change the cost) over the test
split with each temporal-clips x spatial-crops layout, timing the test loop alone (from the first to the last test
batch hook), and reports videos/s and views/s. Writes ``results.json`` and a Markdown table under ``--out``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import lightning as L

ROOT = Path(__file__).resolve().parents[1]


class Clock(L.Callback):
    def on_test_start(self, trainer, pl_module) -> None:
        self.start = time.perf_counter()

    def on_test_end(self, trainer, pl_module) -> None:
        self.seconds = time.perf_counter() - self.start


def measure(config: str, clips: int, crops: int, workers: int) -> dict:
    from lit_i2v.cli import LitI2VCLI

    args = ["--config", config, "--model.init_args.backbone.init_args.pretrained=null",
            f"--data.init_args.sampler.init_args.test_clips={clips}", f"--data.init_args.num_workers={workers}",
            "--trainer.logger=false", "--trainer.enable_progress_bar=false"]  # fmt: skip
    cli = LitI2VCLI(args=args, run=False)
    cli.datamodule.eval_transform.crops = crops
    clock = Clock()
    cli.trainer.callbacks.append(clock)
    cli.trainer.test(cli.model, datamodule=cli.datamodule, verbose=False)
    videos = cli.datamodule.datasets["test"].__len__()
    return {"views": f"{clips}x{crops}", "videos": videos, "seconds": round(clock.seconds, 2),
            "videos_per_s": round(videos / clock.seconds, 1),
            "views_per_s": round(videos * clips * crops / clock.seconds, 1)}  # fmt: skip


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--config", default=str(ROOT / "configs" / "quickstart.yaml"))
    p.add_argument("--views", nargs="*", default=["1x1", "3x1", "4x3"], help="temporal clips x spatial crops")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "out" / "eval"))
    args = p.parse_args()
    rows = []
    for layout in args.views:
        clips, crops = (int(x) for x in layout.split("x"))
        rows.append(measure(args.config, clips, crops, args.workers))
        print(json.dumps(rows[-1]), flush=True)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(rows, indent=1))
    lines = ["| views (clips x crops) | test videos | time | videos/s | views/s |", "|---|---|---|---|---|"]
    lines += [f"| {r['views']} | {r['videos']} | {r['seconds']} s | {r['videos_per_s']} | {r['views_per_s']} |"
              for r in rows]  # fmt: skip
    (out / "table.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
