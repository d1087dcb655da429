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
from lit_i2v.data import Captions, EvalTransform, TrainTransform, UniformSampler, VideoDataModule, read_captions
from lit_i2v.data.formats.annotations import AnnotationError
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


def test_msvd_didemo_and_activitynet_formats(tmp_path):
    import pickle

    with open(tmp_path / "raw-captions.pkl", "wb") as f:  # CLIP4Clip's MSVD release: token lists
        pickle.dump({"-4wsuPCjDBc_5_15": [["a", "cat", "plays"], ["cat", "playing"]], "zv2RI": [["a", "man"]]}, f)
    (tmp_path / "test_list.txt").write_text("-4wsuPCjDBc_5_15\nzv2RI\n")
    records, captions = read_captions(tmp_path / "test_list.txt", "/v", "msvd", str(tmp_path / "raw-captions.pkl"),
                                      ".avi")  # fmt: skip
    assert records[0].path == "/v/-4wsuPCjDBc_5_15.avi" and captions == [["a cat plays", "cat playing"], ["a man"]]
    (tmp_path / "captions_msvd.json").write_text(json.dumps({"zv2RI": ["a man"]}))  # X-Pool's release
    with pytest.raises(AnnotationError, match=r"test_list.txt:1: video '-4wsuPCjDBc_5_15' has no caption"):
        read_captions(tmp_path / "test_list.txt", "/v", "msvd", str(tmp_path / "captions_msvd.json"))
    didemo = [{"video": "1234@N00_5_ab.mov", "description": "a dog runs. ", "times": [[0, 1]]},
              {"video": "99@N00_7_cd.mp4", "description": "someone waves", "times": [[2, 2]]},
              {"video": "1234@N00_5_ab.mov", "description": "it stops", "times": [[3, 4]]}]  # fmt: skip
    (tmp_path / "test_data.json").write_text(json.dumps(didemo))
    records, captions = read_captions(tmp_path / "test_data.json", "/v", "didemo")
    assert [r.video_id for r in records] == ["1234@N00_5_ab", "99@N00_7_cd"]
    assert captions == [["a dog runs. it stops"], ["someone waves"]]  # one paragraph a video
    anet = {"v_QOlSCBRmfWY": {"duration": 82.7, "timestamps": [[0.8, 19.9], [17.4, 60.8]],
                              "sentences": ["A young woman is seen standing.", " She then dances."]}}  # fmt: skip
    (tmp_path / "val_1.json").write_text(json.dumps(anet))
    records, captions = read_captions(tmp_path / "val_1.json", "/v", "activitynet")
    assert records[0].path == "/v/v_QOlSCBRmfWY.mp4"
    assert captions == [["A young woman is seen standing. She then dances."]]


def test_synthetic_captions_describe_object_and_motion(caption_root):
    items = json.loads((caption_root / "captions_train.json").read_text())
    ssv2 = {i["id"]: i for i in json.loads((caption_root / "train.json").read_text())}
    first = items[0]
    assert len(first["captions"]) == 2 and first["captions"][0] == ssv2[first["video_id"]]["label"]
    assert ssv2[first["video_id"]]["placeholders"][0] in first["captions"][1]


def datamodule(caption_root, **kwargs) -> VideoDataModule:
    return VideoDataModule(
        train=str(caption_root / "captions_train.json"), val=str(caption_root / "captions_validation.json"),
        root=str(caption_root / "videos"), annotations=Captions(), sampler=UniformSampler(4),
        train_transform=TrainTransform(size=32), eval_transform=EvalTransform(size=32), batch_size=8, num_workers=0,
        **kwargs,
    )  # fmt: skip


def train_on(task: TextVideoRetrieval, batch: dict, steps: int = 30) -> list[float]:
    """The losses of ``steps`` AdamW steps on one batch."""
    optimizer = torch.optim.AdamW([p for p in task.parameters() if p.requires_grad], lr=1e-3)
    losses = []
    for _ in range(steps):
        loss = task.training_step(batch, 0)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return losses


def test_training_lowers_the_contrastive_loss(caption_root):
    dm = datamodule(caption_root)
    dm.setup("fit")
    batch = dm.on_after_batch_transfer(next(iter(dm.train_dataloader())), 0)  # as Lightning hands it to the task
    assert len(batch["caption"]) == 8 and isinstance(batch["caption"][0], str)
    torch.manual_seed(0)
    task = TextVideoRetrieval(CLIP("ViT-T-8-test"), transfer=FullFinetune(towers=["visual", "text"]))
    losses = train_on(task, batch)
    assert losses[-1] < 0.5 * math.log(8) < losses[0]  # from chance level to pairing these 8 clips and captions


def retrieval_overrides(caption_root, run_dir) -> list[str]:
    return [
        "--config", str(ROOT / "configs" / "retrieval" / "synthetic.yaml"),
        "--model.init_args.backbone.init_args.arch=ViT-T-8-test",
        "--model.init_args.backbone.init_args.pretrained=null",
        "--model.init_args.temporal.init_args.init_from_text=false",
        "--model.init_args.temporal.init_args.heads=2",
        f"--data.init_args.root={caption_root}", "--data.init_args.synthetic.video_size=32",
        "--data.init_args.batch_size=8",
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


@pytest.mark.parametrize(("temporal", "count"), [("default", 7), ("lit_i2v.heads.XPool", 7)])
def test_ddp_evaluation_gathers_each_video_once(caption_root, tmp_path, temporal, count):
    """Two CPU ranks, 7 test videos: the similarity matrix holds all 7 videos and their 14 captions, once each (with
    X-Pool, each video's frame embeddings are gathered)."""
    items = json.loads((caption_root / "captions_test.json").read_text())[:count]
    (tmp_path / "test7.json").write_text(json.dumps(items))
    run = tmp_path / "ddp"
    args = [sys.executable, "-m", "lit_i2v", "test", *retrieval_overrides(caption_root, run),
            "--data.synthetic=null", f"--data.test={tmp_path / 'test7.json'}",
            f"--data.root={caption_root / 'videos'}", "--data.eval_batch_size=2", "--data.num_workers=0",
            "--data.eval_transform=lit_i2v.data.EvalTransform", "--data.eval_transform.size=32",
            "--trainer.devices=2", "--trainer.strategy=ddp"]  # fmt: skip
    args = [a for a in args if not a.startswith("--data.init_args.")]
    if temporal != "default":
        args = [a for a in args if not a.startswith("--model.init_args.temporal")] + [f"--model.temporal={temporal}"]
    done = subprocess.run(args, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    rows = metrics(run)
    assert last_value(rows, "test/videos") == count and last_value(rows, "test/captions") == 2 * count


# ---- X-Pool ------------------------------------------------------------------------------------------------------


def test_xpool_starts_as_identity_projections_and_attends_to_the_matching_frame():
    from lit_i2v.heads import XPool

    pool = XPool(heads=1, dropout=0.0)
    pool.build(32)
    for linear in (pool.q, pool.k, pool.v, pool.o, pool.proj):
        assert torch.equal(linear.weight, torch.eye(32)) and not linear.bias.any()
    torch.manual_seed(0)
    frames = torch.randn(3, 5, 32)  # 3 videos of 5 frames
    texts = torch.stack([frames[0, 2], frames[1, 4]]) * 4  # caption 0 is (a multiple of) video 0's frame 2
    out = pool(texts, frames)
    assert out.shape == (2, 3, 32)
    weights = pool.attention(texts, frames)  # (texts, videos, heads, frames)
    assert weights.shape == (2, 3, 1, 5) and weights[0, 0, 0].argmax() == 2 and weights[1, 1, 0].argmax() == 4
    assert not torch.allclose(out[0, 2], out[1, 2])  # one video, pooled differently for each caption
    still = frames[:, :1].expand(3, 5, 32)  # every frame the same: nothing to choose, any caption pools alike
    pooled = pool(texts, still)
    assert torch.allclose(pooled[0], pooled[1], atol=1e-5)


def test_xpool_retrieval_trains_and_scores_per_caption(caption_root):
    from lit_i2v.heads import XPool

    dm = datamodule(caption_root)
    dm.setup("fit")
    batch = dm.on_after_batch_transfer(next(iter(dm.train_dataloader())), 0)  # as Lightning hands it to the task
    torch.manual_seed(0)
    task = TextVideoRetrieval(CLIP("ViT-T-8-test"), transfer=FullFinetune(towers=["visual", "text"]),
                              temporal=XPool(dropout=0.0))  # fmt: skip
    videos = task.encode_videos(task.normalize(batch["video"]))
    assert videos.shape == (8, 4, 32)  # frames are kept: each caption pools them its own way
    texts = task.encode_texts(list(batch["caption"]))
    sim = task.similarity(texts, videos)
    by_pair = torch.stack([torch.stack([torch.nn.functional.cosine_similarity(texts[i], task.temporal(texts[i : i + 1],
                          videos[j : j + 1])[0, 0], dim=0) for j in range(8)]) for i in range(8)])  # fmt: skip
    assert torch.allclose(sim, by_pair, atol=1e-5)
    losses = train_on(task, batch)
    assert losses[-1] < 0.5 * math.log(8) < losses[0]
    assert task.temporal.q.weight.grad is not None and not torch.equal(task.temporal.q.weight, torch.eye(32))


def test_evaluation_reads_every_caption_from_the_batches_not_the_datamodule(caption_root, tmp_path):
    """Evaluation samples carry their video's captions, so the task scores a plain DataLoader's batches: the same
    metrics as with the DataModule attached, over every caption of the split."""
    import lightning as L

    dm = datamodule(caption_root)
    dm.setup("validate")
    sample = dm.datasets["val"][0]
    assert isinstance(sample["captions"], list) and len(sample["captions"]) == 2 and "caption" not in sample

    def validate(**data) -> dict:
        torch.manual_seed(0)
        task = TextVideoRetrieval(CLIP("ViT-T-8-test"), transfer=FullFinetune(towers=["visual", "text"]))
        trainer = L.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False, enable_checkpointing=False,
                            default_root_dir=tmp_path, enable_model_summary=False)  # fmt: skip
        return trainer.validate(task, **data, verbose=False)[0]

    loader = dm.val_dataloader()  # batches moved by hand: no DataModule hook runs for a bare loader
    batches = [dm.on_after_batch_transfer(batch, 0) for batch in loader]
    alone = validate(dataloaders=torch.utils.data.DataLoader(batches, batch_size=None))
    attached = validate(datamodule=dm)
    videos = len(dm.datasets["val"])
    assert alone["val/videos"] == videos and alone["val/captions"] == 2 * videos
    assert alone == pytest.approx(attached)
