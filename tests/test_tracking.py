"""What a run records: the manifest and resolved config sent to the loggers, evaluation reports (per-class accuracy,
confusion matrix, sample clips), and W&B media and checkpoint artifacts offline."""

from __future__ import annotations

import csv
import json
import time

import torch
import yaml

from lit_i2v.cli import main
from lit_i2v.reports import confusion_image

from .test_cli import tiny_overrides


def lines(path) -> list[str]:
    return path.read_text().splitlines()


def test_a_fit_writes_its_manifest_and_evaluation_reports(tmp_path, synth_root):
    run = tmp_path / "run"
    missing = tmp_path / "train_with_a_missing_video.json"
    items = json.loads((synth_root / "train.json").read_text())
    items.append({**items[0], "id": "no-such-video"})
    missing.write_text(json.dumps(items))
    args = [*tiny_overrides(synth_root, run), "--data.synthetic=null", f"--data.train={missing}",
            f"--data.val={synth_root / 'validation.json'}", f"--data.root={synth_root / 'videos'}",
            f"--data.annotations.labels={synth_root / 'labels.json'}", "--data.annotations.format=ssv2",
            "--data.train_transform=lit_i2v.data.TrainTransform", "--data.train_transform.size=32",
            "--data.eval_transform=lit_i2v.data.EvalTransform", "--data.eval_transform.size=32"]  # fmt: skip
    args = [a for a in args if not a.startswith(("--data.init_args.root", "--data.init_args.synthetic."))]
    assert main(["fit", *args]) == 0
    log_dir = next(run.glob("version_*"))
    manifest = json.loads((log_dir / "manifest.json").read_text())
    model, data = manifest["model"], manifest["data"]
    assert model["class"] == "ActionRecognition" and model["backbone"] == "ViT-T-8-test"
    assert 0 < model["trainable_params"] <= model["total_params"] and model["gflops_per_view"] > 0
    assert data["train"] == {"videos": 33, "found": 32, "missing": 1, "first_missing": [str(synth_root / "videos" /
                             "no-such-video.mp4")]}  # fmt: skip
    assert data["val"]["videos"] == data["val"]["found"] == 16
    assert manifest["run"]["world_size"] == 1 and manifest["run"]["effective_batch"] == 8
    hparams = yaml.safe_load((log_dir / "hparams.yaml").read_text())  # what the logger received
    assert hparams["manifest"]["model"]["total_params"] == model["total_params"]
    assert hparams["config"]["model"]["init_args"]["backbone"]["init_args"]["arch"] == "ViT-T-8-test"

    reports = log_dir / "evaluation"
    per_class = list(csv.DictReader(lines(reports / "val-epoch000-per-class.csv")))
    assert len(per_class) == 8 and sum(int(r["videos"]) for r in per_class) == 16
    assert per_class[0]["class"].startswith("Moving")  # named from the labels file
    confusion = list(csv.reader(lines(reports / "val-epoch000-confusion.csv")))
    assert len(confusion) == 9 and sum(int(x) for row in confusion[1:] for x in row[1:]) == 16
    correct = sum(int(r["correct"]) for r in per_class)
    top1 = [float(r["val/top1"]) for r in csv.DictReader(lines(log_dir / "metrics.csv")) if r.get("val/top1")][-1]
    assert abs(correct / 16 - top1) < 1e-6  # the diagonal is the accuracy that was logged
    samples = list(csv.reader(lines(reports / "val-epoch000-samples.csv")))
    assert len(samples) == 4 and samples[0][0].startswith("true: ")
    assert (reports / "val-epoch000-samples.png").stat().st_size > 0
    assert (reports / "val-epoch000-confusion.png").stat().st_size > 0


def test_confusion_image_normalises_rows():
    image = confusion_image(torch.tensor([[3, 1], [0, 0]]), min_side=4)
    assert image.shape == (1, 4, 4) and image.dtype == torch.uint8
    assert image[0, 0, 0] == 191 and image[0, 0, 2] == 64 and image[0, 2].eq(0).all()  # 3/4, 1/4, an empty row


def test_wandb_offline_gets_config_media_and_checkpoint_artifacts(tmp_path, synth_root, no_wandb_key):
    run = tmp_path / "run"
    logger = ["--trainer.logger=lit_i2v.tracking.WandbLogger", f"--trainer.logger.save_dir={run}",
              "--trainer.logger.log_model=true"]  # fmt: skip
    overrides = [a for a in tiny_overrides(synth_root, run) if not a.startswith("--trainer.logger")]
    assert main(["fit", *overrides, *logger]) == 0
    (offline,) = (run / "wandb").glob("offline-run-*")
    files = {p.relative_to(offline).as_posix() for p in offline.rglob("*") if p.is_file()}
    assert any(f.startswith("files/media/table/val/per_class") for f in files), sorted(files)[:30]
    assert any(f.startswith("files/media/images/val/confusion") for f in files)
    assert any(f.startswith("files/media/images/val/samples") for f in files)
    wandb_log = offline / f"run-{offline.name.split('-')[-1]}.wandb"  # what `wandb sync` uploads
    deadline = time.monotonic() + 60
    while b"last.ckpt" not in wandb_log.read_bytes() and time.monotonic() < deadline:
        time.sleep(0.5)  # W&B's service process writes the offline log behind the run
    log = wandb_log.read_bytes()
    assert b"manifest" in log and b"gflops_per_view" in log  # the run's config
    assert b"model-" in log and b"last.ckpt" in log  # the checkpoint artifact


def test_tensorboard_is_one_config_change_away(tmp_path, synth_root):
    """``--trainer.logger=lightning.pytorch.loggers.TensorBoardLogger`` (``pip install lit_i2v[tensorboard]``): event
    files with the metrics, and the manifest beside them."""
    run = tmp_path / "run"
    overrides = [a for a in tiny_overrides(synth_root, run) if not a.startswith("--trainer.logger")]
    logger = [
        "--trainer.logger=lightning.pytorch.loggers.TensorBoardLogger",
        f"--trainer.logger.save_dir={run}",
        "--trainer.log_every_n_steps=1",
    ]
    assert main(["fit", *overrides, *logger]) == 0
    events = list(run.rglob("events.out.tfevents.*"))
    assert events and events[0].stat().st_size > 0
    assert json.loads(next(run.rglob("manifest.json")).read_text())["model"]["backbone"] == "ViT-T-8-test"
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    tags = EventAccumulator(str(events[0].parent)).Reload().Tags()["scalars"]
    assert "val/top1" in tags and "train/loss" in tags
