"""Temporal grounding: metrics against hand-computed cases, annotation formats, feature extraction (resumable, broken
videos), the span head's targets and decoding, and the task end to end (incl. 2-process DDP evaluation)."""

from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from lit_i2v.backbones import FeatureExtractor
from lit_i2v.cli import main
from lit_i2v.data.formats.annotations import AnnotationError
from lit_i2v.data.grounding import FeatureStore, GroundingDataModule, read_moments
from lit_i2v.data.synthetic import EventSpec, SyntheticMoments, render_events, write_grounding, write_video
from lit_i2v.errors import ConfigError
from lit_i2v.extract import extract_features, extract_for
from lit_i2v.heads.span import SpanHead, decode_spans, segment_targets
from lit_i2v.metrics.grounding import average_precision, query_scores, temporal_iou
from lit_i2v.tasks import TemporalGrounding

from .test_cli import last_value, metrics

ROOT = Path(__file__).resolve().parents[1]
T = lambda *spans: torch.tensor(spans, dtype=torch.float64)  # noqa: E731


# ---- metrics ---------------------------------------------------------------------------------------------------


def test_temporal_iou_hand_computed():
    iou = temporal_iou(T([0, 10], [5, 15], [10, 20], [3, 3]), T([0, 10], [5, 15]))
    assert iou[0].tolist() == pytest.approx([1.0, 5 / 15])
    assert iou[1].tolist() == pytest.approx([5 / 15, 1.0])
    assert iou[2, 0] == 0  # touching at an edge is no overlap
    assert iou[3].tolist() == [0.0, 0.0]  # an empty span overlaps nothing


def test_recall_and_iou_take_the_top_prediction_only():
    scores = query_scores(T([0, 6], [0, 10]), T([0, 10]))  # top: IoU 0.6; the second is perfect but ranked lower
    assert scores["R1@0.3"] == scores["R1@0.5"] == 1 and scores["R1@0.7"] == 0
    assert scores["IoU"] == pytest.approx(0.6)


def test_average_precision_hand_computed():
    gt = T([0, 10], [20, 30])
    # hit, miss, hit: precision 1/1 at recall 1/2, 2/3 at recall 1 -> 0.5 * 1 + 0.5 * 2/3
    assert average_precision(T([0, 10], [40, 50], [20, 30]), gt, 0.5) == pytest.approx(0.5 + 1 / 3)
    # a window is matched once: the duplicate is a false positive and the second window is never found
    assert average_precision(T([0, 10], [0, 10]), gt, 0.5) == pytest.approx(0.5)
    # interpolation: a later, higher precision lifts the earlier recall step (miss, hit, hit -> 0.5*2/3 + 0.5*2/3)
    assert average_precision(T([40, 50], [0, 10], [20, 30]), gt, 0.5) == pytest.approx(2 / 3)
    # the threshold: IoU 0.6 counts at 0.5, not at 0.7
    assert average_precision(T([0, 6]), T([0, 10]), 0.5) == 1.0 and average_precision(T([0, 6]), T([0, 10]), 0.7) == 0


def test_no_prediction_scores_zero_and_spans_at_the_edges_count():
    empty = query_scores(torch.zeros(0, 2, dtype=torch.float64), T([0, 5]))
    assert all(v == 0 for v in empty.values())
    edges = query_scores(T([0, 2], [28, 30]), T([0, 2], [28, 30]))
    assert edges["R1@0.7"] == 1 and edges["mAP"] == pytest.approx(1.0)


# ---- formats ---------------------------------------------------------------------------------------------------


def test_charades_sta_and_qvhighlights_formats(tmp_path):
    charades = tmp_path / "charades_sta_test.txt"
    charades.write_text("3MSZA 24.3 30.4##person turn a light on.\nAO8RW 0.0 6.9##a person is putting a book.\n")
    moments = read_moments(charades)
    assert [(m.video_id, m.query, m.windows) for m in moments] == [
        ("3MSZA", "person turn a light on.", [(24.3, 30.4)]),
        ("AO8RW", "a person is putting a book.", [(0.0, 6.9)]),
    ]
    qvh = tmp_path / "highlight_val_release.jsonl"
    row = {"qid": 2579, "query": "A girl and her mother cooked while talking.", "duration": 150,
           "vid": "NUsG9BgSes0_210.0_360.0", "relevant_windows": [[0, 10], [60, 86]]}  # fmt: skip
    qvh.write_text(json.dumps(row) + "\n")
    (m,) = read_moments(qvh)
    assert m.windows == [(0, 10), (60, 86)] and m.duration == 150 and m.qid == "2579"
    bad = tmp_path / "bad.txt"
    bad.write_text("3MSZA 24.3 30.4##fine\n3MSZA 24.3##no end\n")
    with pytest.raises(AnnotationError, match=r"bad.txt:2: not a charades_sta line"):
        read_moments(bad)
    bad.write_text("3MSZA 30.4 24.3##backwards\n")
    with pytest.raises(AnnotationError, match=r"bad.txt:1: window \(30.4, 24.3\) ends before it starts"):
        read_moments(bad)


# ---- extraction --------------------------------------------------------------------------------------------------


def test_extraction_embeds_segments_and_queries_resumably_and_reports_broken_videos(tmp_path):
    spec = EventSpec(size=32, frames=24, fps=8)  # 3 s
    videos = {}
    for i in range(3):
        frames, _ = render_events(random.Random(i), spec)
        write_video(tmp_path / f"v{i}.mp4", frames, spec.fps)
        videos[f"v{i}"] = str(tmp_path / f"v{i}.mp4")
    (tmp_path / "broken.mp4").write_bytes(b"nope")
    videos["broken"] = str(tmp_path / "broken.mp4")
    extractor = FeatureExtractor("ViT-T-8-test", None, rate=2.0, batch_size=4)
    queries = ["a red circle", "a blue square", "a red circle"]
    index = extract_features(videos, queries, tmp_path / "f", extractor, videos_per_shard=2)
    assert index["videos"] == 3 and index["dim"] == 32 and index["shards"] == ["video-000000", "video-000001"]
    assert index["failed"][0].startswith("broken: ")
    store = FeatureStore(tmp_path / "f")
    assert store.video("v1").shape == (6, 32) and store.meta["v1"]["duration"] == pytest.approx(3.0)
    # the features are the tower's embeddings of the segments' centre frames
    from lit_i2v.data.video.decode import open_video
    from lit_i2v.data.video.transforms import EvalTransform

    model = extractor.model
    frame = open_video(videos["v1"]).get_frames([2])  # segment 0 of 6 over 24 frames: centre frame 2
    cfg = model.pretrained_cfg
    image = (EvalTransform(32)(frame)[0].float() - torch.tensor(cfg["mean"]).view(1, 3, 1, 1) * 255) / (
        torch.tensor(cfg["std"]).view(1, 3, 1, 1) * 255
    )
    expected = model.encode_image(image)[0]
    assert torch.allclose(store.video("v1")[0].float(), expected, atol=2e-3)
    assert torch.allclose(store.text("a blue square").float(), model.encode_text(model.tokenize(["a blue square"]))[0],
                          atol=2e-3)  # fmt: skip
    stamp = (tmp_path / "f" / "video-000000.safetensors").stat().st_mtime_ns
    extract_features(videos, ["a red circle"], tmp_path / "f", extractor, videos_per_shard=2)
    assert (tmp_path / "f" / "video-000000.safetensors").stat().st_mtime_ns == stamp  # finished shards are kept


# ---- span head ---------------------------------------------------------------------------------------------------


def test_segment_targets_at_the_edges_and_with_several_windows():
    start, end, inside = segment_targets([(0.0, 10.0)], 10.0, 5)
    assert start.tolist() == [1, 0, 0, 0, 0] and end.tolist() == [0, 0, 0, 0, 1] and inside.sum() == 5
    start, end, inside = segment_targets([(0.0, 2.0), (6.0, 10.0)], 10.0, 5)
    assert start.tolist() == [0.5, 0, 0, 0.5, 0] and end.tolist() == [0.5, 0, 0, 0, 0.5]
    assert inside.tolist() == [1, 0, 0, 1, 1]


def test_decoding_ranks_spans_and_suppresses_near_duplicates():
    start = torch.full((10,), -10.0)
    end = torch.full((10,), -10.0)
    start[2], end[5] = 5.0, 5.0
    start[7], end[8] = 3.0, 3.0
    spans, scores = decode_spans(start, end, duration=20.0, top_k=3, nms_iou=0.5)
    assert spans[0].tolist() == [4.0, 12.0]  # segments 2..5 of 10 over 20 s
    assert spans[1].tolist() == [14.0, 18.0] or scores[1] <= scores[0]
    assert (scores[:-1] >= scores[1:]).all() and (spans[:, 1] > spans[:, 0]).all()
    assert temporal_iou(spans, spans).fill_diagonal_(0).max() < 0.5


def test_span_head_ignores_padding_and_reads_the_query():
    torch.manual_seed(0)
    head = SpanHead(hidden=32, layers=1, heads=2, dropout=0.0).build(16).eval()
    video, query = torch.randn(2, 6, 16), torch.randn(2, 16)
    mask = torch.ones(2, 6, dtype=torch.bool)
    mask[1, 4:] = False
    out = head(video, mask, query)
    assert out.shape == (2, 6, 3) and (out[1, 4:, :2] == torch.finfo(out.dtype).min).all()
    shorter = head(video[1:, :4], mask[1:, :4], query[1:])
    assert torch.allclose(out[1, :4], shorter[0], atol=1e-5)  # padding changes nothing
    assert not torch.allclose(head(video, mask, -query), out)


# ---- end to end ----------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def grounding_root(tmp_path_factory) -> Path:
    """A small synthetic grounding set (32 px, 24 frames) and its features from a random tiny CLIP."""
    root = tmp_path_factory.mktemp("grounding")
    write_grounding(root, (16, 7, 7), EventSpec(size=32, frames=24, fps=8), seed=3)
    dm = GroundingDataModule(str(root / "features"), str(root / "charades_sta_train.txt"),
                             str(root / "charades_sta_val.txt"), root=str(root / "videos"))  # fmt: skip
    extract_for(dm, FeatureExtractor("ViT-T-8-test", None, rate=4.0))
    return root


def grounding_overrides(root: Path, run: Path) -> list[str]:
    return [
        "--config", str(ROOT / "configs" / "grounding" / "synthetic.yaml"),
        "--data.synthetic=null", f"--data.features={root / 'features'}",
        f"--data.train={root / 'charades_sta_train.txt'}", f"--data.val={root / 'charades_sta_val.txt'}",
        f"--data.root={root / 'videos'}",
        "--data.batch_size=8", "--data.num_workers=0",
        "--model.init_args.feature_dim=32", "--model.init_args.head.init_args.hidden=32",
        "--trainer.max_epochs=2", "--trainer.log_every_n_steps=1", f"--trainer.default_root_dir={run}",
        f"--trainer.logger.init_args.save_dir={run}", "--trainer.enable_progress_bar=false",
    ]  # fmt: skip


def test_synthetic_grounding_set_is_charades_sta_with_two_events_a_video(grounding_root):
    moments = read_moments(grounding_root / "charades_sta_train.txt")
    assert len(moments) == 32 and len({m.video_id for m in moments}) == 16
    first, second = moments[:2]
    assert first.video_id == second.video_id and first.windows[0][1] <= second.windows[0][0]
    assert all(0 <= m.windows[0][0] < m.windows[0][1] <= 3.0 for m in moments)


def test_fit_then_test_logs_grounding_metrics(grounding_root, tmp_path):
    run = tmp_path / "fit"
    assert main(["fit", *grounding_overrides(grounding_root, run)]) == 0
    rows = metrics(run)
    assert last_value(rows, "val/queries") == 14
    for name in ("R1@0.3", "R1@0.5", "R1@0.7", "IoU", "mAP"):
        assert 0 <= last_value(rows, f"val/{name}") <= 100
    losses = [float(r["train/loss"]) for r in rows if r.get("train/loss")]
    assert losses and all(loss > 0 for loss in losses)
    assert list((run / "checkpoints").glob("best-*.ckpt"))


def test_ddp_evaluation_counts_each_query_once(grounding_root, tmp_path):
    run = tmp_path / "ddp"
    args = [sys.executable, "-m", "lit_i2v", "validate", *grounding_overrides(grounding_root, run),
            "--trainer.devices=2", "--trainer.strategy=ddp", "--data.eval_batch_size=3"]  # fmt: skip
    done = subprocess.run(args, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert last_value(metrics(run), "val/queries") == 14  # 7 videos x 2 events, each once over 2 ranks


def test_missing_features_fail_with_the_command_to_run(tmp_path, capsys, grounding_root):
    args = grounding_overrides(grounding_root, tmp_path / "run")
    args = [a if not a.startswith("--data.features=") else f"--data.features={tmp_path / 'none'}" for a in args]
    assert main(["fit", *args]) == 2
    err = capsys.readouterr().err
    assert "index.json does not exist: extract the features first, `python -m lit_i2v extract" in err


def test_extract_command_on_the_recipe(grounding_root, tmp_path, capsys):
    out = tmp_path / "features"
    args = [a for a in grounding_overrides(grounding_root, tmp_path / "run") if not a.startswith("--trainer")]
    args = [a if not a.startswith("--data.features=") else f"--data.features={out}" for a in args]
    args += ["--model.init_args.extractor.arch=ViT-T-8-test", "--model.init_args.extractor.pretrained=null"]
    assert main(["extract", *args, "--split", "val"]) == 0
    assert "7 videos and their queries embedded into" in capsys.readouterr().out
    assert json.loads((out / "index.json").read_text())["videos"] == 7


def test_the_synthetic_recipe_writes_its_set_and_extracts_with_the_tasks_extractor(tmp_path):
    """``data.synthetic`` writes the set on first use; the CLI extracts its features with
    ``model.init_args.extractor`` before the run (the data module builds no model), once."""
    run, root = tmp_path / "run", tmp_path / "set"
    args = [
        "--config", str(ROOT / "configs" / "grounding" / "synthetic.yaml"), f"--data.root={root}",
        "--data.synthetic.num_train=6", "--data.synthetic.num_val=3", "--data.synthetic.num_test=3",
        "--data.batch_size=4", "--model.init_args.extractor.arch=ViT-T-8-test",
        "--model.init_args.extractor.pretrained=null", "--model.init_args.head.init_args.hidden=32",
        "--trainer.max_epochs=1",
        f"--trainer.default_root_dir={run}", f"--trainer.logger.init_args.save_dir={run}",
        "--trainer.enable_progress_bar=false",
    ]  # fmt: skip
    assert main(["fit", *args]) == 0
    index = json.loads((root / "features" / "index.json").read_text())
    assert (index["arch"], index["rate"], index["dim"], index["videos"]) == ("ViT-T-8-test", 4.0, 32, 12)
    stamp = (root / "features" / "index.json").stat().st_mtime_ns
    assert main(["validate", *args]) == 0
    assert (root / "features" / "index.json").stat().st_mtime_ns == stamp  # extracted once
    assert last_value(metrics(run), "val/queries") == 6
    with pytest.raises(ConfigError, match="data.synthetic writes and reads its own annotation files, but data.train"):
        GroundingDataModule(train=str(root / "charades_sta_train.txt"), synthetic=SyntheticMoments())


def test_a_grounding_checkpoint_from_before_the_span_head_argument_tests(grounding_root, tmp_path):
    """Checkpoints written when TemporalGrounding took ``hidden``, ``layers``... itself: their hyperparameters are
    moved under ``head`` when Lightning reads them into the config."""
    run = tmp_path / "fit"
    args = grounding_overrides(grounding_root, run)
    assert main(["fit", *args, "--trainer.max_epochs=1"]) == 0
    checkpoint = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True, map_location="cpu")
    hparams = checkpoint["hyper_parameters"]
    assert "head" not in hparams  # the config holds it (the recipe, overridden on the command line)
    hparams.update(hidden=32, layers=2, heads=4, dropout=0.1)  # what an old checkpoint held itself
    old = tmp_path / "old.ckpt"
    torch.save(checkpoint, old)
    assert main(["test", *args, f"--ckpt_path={old}"]) == 0


def test_other_local_ranks_wait_for_the_synthetic_features(tmp_path, monkeypatch):
    """torchrun and srun start every process before the first run: local rank 0 writes and extracts the synthetic
    set, the others wait for its index and write nothing."""
    import threading

    from lit_i2v.extract import prepare_features

    monkeypatch.setenv("LOCAL_RANK", "1")
    dm = GroundingDataModule(root=str(tmp_path / "set"), synthetic=SyntheticMoments(num_train=2, num_val=1, num_test=1))
    model = TemporalGrounding.tiny()
    features = Path(dm.features)
    timer = threading.Timer(1.0, lambda: (features.mkdir(parents=True), (features / "index.json").write_text("{}")))
    timer.start()
    prepare_features(model, dm)  # returns once rank 0's index is there
    timer.join()
    assert not (tmp_path / "set" / "videos").exists()  # rank 1 wrote no video
