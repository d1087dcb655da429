"""Text-video retrieval: caption formats, the synthetic captions, training, and evaluation (also over 2 DDP ranks)."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import pytest
import torch

from lit_i2v.backbones import CLIP
from lit_i2v.cli import main
from lit_i2v.data import CaptionDataModule, EvalTransform, TrainTransform, UniformSampler, read_captions
from lit_i2v.data.annotations import AnnotationError
from lit_i2v.data.synthetic import write_captions
from lit_i2v.strategies import FullFinetune
from lit_i2v.tasks import TextVideoRetrieval
from tests.test_cli import ROOT, last_value, metrics


@pytest.fixture(scope="module")
def caption_root(synth_root):
    return write_captions(synth_root)


def test_caption_formats(tmp_path):
    (tmp_path / "data.json").write_text(
        json.dumps(
            {
                "sentences": [
                    {"video_id": "video1", "caption": "a"},
                    {"video_id": "video1", "caption": "b"},
                    {"video_id": "video2", "caption": "c"},
                ]
            }
        )  # fmt: skip
    )
    (tmp_path / "train.csv").write_text("video_id\nvideo1\nvideo2\n")
    records, captions = read_captions(tmp_path / "train.csv", "/v", "msrvtt", str(tmp_path / "data.json"))
    assert [r.path for r in records] == ["/v/video1.mp4", "/v/video2.mp4"] and captions == [["a", "b"], ["c"]]
    (tmp_path / "test.csv").write_text("key,vid_key,video_id,sentence\nret0,msr7,video7,a man sings\n")
    records, captions = read_captions(tmp_path / "test.csv", "/v", "jsfusion")
    assert records[0].video_id == "video7" and captions == [["a man sings"]]
    (tmp_path / "bad.csv").write_text("video_id\nvideo1\nvideo9\n")
    with pytest.raises(AnnotationError, match=r"bad.csv:3: video 'video9' has no caption"):
        read_captions(tmp_path / "bad.csv", "/v", "msrvtt", str(tmp_path / "data.json"))
    (tmp_path / "c.json").write_text(json.dumps([{"video_id": "x", "captions": []}]))
    with pytest.raises(AnnotationError, match="item 0 needs a video_id and a non-empty captions list"):
        read_captions(tmp_path / "c.json", "/v", "captions")


def test_synthetic_captions_describe_object_and_motion(caption_root):
    items = json.loads((caption_root / "captions_train.json").read_text())
    ssv2 = {i["id"]: i for i in json.loads((caption_root / "train.json").read_text())}
    first = items[0]
    assert len(first["captions"]) == 2 and first["captions"][0] == ssv2[first["video_id"]]["label"]
    assert ssv2[first["video_id"]]["placeholders"][0] in first["captions"][1]


def datamodule(caption_root, **kwargs) -> CaptionDataModule:
    return CaptionDataModule(
        train=str(caption_root / "captions_train.json"), val=str(caption_root / "captions_validation.json"),
        root=str(caption_root / "videos"), sampler=UniformSampler(4), train_transform=TrainTransform(size=32),
        eval_transform=EvalTransform(size=32), batch_size=8, num_workers=0, **kwargs,
    )  # fmt: skip


def test_training_lowers_the_contrastive_loss(caption_root):
    dm = datamodule(caption_root)
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    assert len(batch["caption"]) == 8 and isinstance(batch["caption"][0], str)
    torch.manual_seed(0)
    task = TextVideoRetrieval(CLIP("ViT-T-8-test"), strategy=FullFinetune(towers=["visual", "text"]))
    optimizer = torch.optim.AdamW([p for p in task.parameters() if p.requires_grad], lr=1e-3)
    losses = []
    for _ in range(30):
        loss = task.training_step(batch, 0)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * math.log(8) < losses[0]  # from chance level to pairing these 8 clips and captions


def retrieval_overrides(caption_root, run_dir) -> list[str]:
    return [
        "--config", str(ROOT / "configs" / "retrieval" / "synthetic.yaml"),
        "--model.init_args.backbone.init_args.arch=ViT-T-8-test",
        "--model.init_args.backbone.init_args.pretrained=null",
        "--model.init_args.temporal.init_args.init_from_text=false",
        "--model.init_args.temporal.init_args.heads=2",
        f"--data.init_args.root={caption_root}", "--data.init_args.video_size=32", "--data.init_args.batch_size=8",
        "--data.init_args.num_workers=0", "--data.init_args.sampler.init_args.num_frames=4",
        "--trainer.max_epochs=1", f"--trainer.default_root_dir={run_dir}",
        f"--trainer.logger.init_args.save_dir={run_dir}", "--trainer.enable_progress_bar=false",
    ]  # fmt: skip


def test_fit_scores_every_caption_against_every_video(caption_root, tmp_path):
    run = tmp_path / "run"
    assert main(["fit", *retrieval_overrides(caption_root, run)]) == 0
    rows = metrics(run)
    assert last_value(rows, "val/videos") == 16 and last_value(rows, "val/captions") == 32
    for key in ("val/t2v/R@1", "val/t2v/R@10", "val/v2t/MdR", "val/v2t/MnR"):
        assert last_value(rows, key) >= 0
    assert (run / "checkpoints" / "last.ckpt").is_file()
    assert any(p.name.startswith("best-") for p in (run / "checkpoints").iterdir())  # chosen by val/t2v/R@1


def test_ddp_evaluation_gathers_each_video_once(caption_root, tmp_path):
    """Two CPU ranks, 7 test videos: the similarity matrix holds all 7 videos and their 14 captions, once each."""
    items = json.loads((caption_root / "captions_test.json").read_text())[:7]
    (tmp_path / "test7.json").write_text(json.dumps(items))
    run = tmp_path / "ddp"
    args = [sys.executable, "-m", "lit_i2v", "test", *retrieval_overrides(caption_root, run),
            "--data=lit_i2v.data.CaptionDataModule", f"--data.test={tmp_path / 'test7.json'}",
            f"--data.root={caption_root / 'videos'}", "--data.eval_batch_size=2", "--data.num_workers=0",
            "--data.eval_transform=lit_i2v.data.EvalTransform", "--data.eval_transform.size=32",
            "--trainer.devices=2", "--trainer.strategy=ddp"]  # fmt: skip
    args = [a for a in args if not a.startswith("--data.init_args.")]
    done = subprocess.run(args, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    rows = metrics(run)
    assert last_value(rows, "test/videos") == 7 and last_value(rows, "test/captions") == 14
