"""Video question answering: formats, the synthetic questions, both modes, per-type accuracy, and DDP counting."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

from lit_i2v.backbones import CLIP
from lit_i2v.cli import main
from lit_i2v.data import read_qa
from lit_i2v.data.formats.annotations import AnnotationError
from lit_i2v.data.synthetic import MOTION_ANSWERS, write_qa
from lit_i2v.strategies import Frozen
from lit_i2v.tasks import VideoQuestionAnswering
from tests.test_cli import ROOT, last_value, metrics


@pytest.fixture(scope="module")
def qa_root(synth_root):
    return write_qa(synth_root)


def test_qa_formats(tmp_path):
    (tmp_path / "qa.json").write_text(json.dumps([
        {"video_id": 7010, "question": "what is he doing?", "answer": "singing", "category_id": 0},
        {"video_id": 7011, "question": "who talks?", "answer": "a dinosaur", "category_id": 1},
    ]))  # fmt: skip
    records, extras = read_qa(tmp_path / "qa.json", "/v", "qa", ["singing", "man"], video_prefix="video")
    assert records[0].path == "/v/video7010.mp4" and [r.label for r in records] == [0, -1]  # -1: not in vocabulary
    assert extras[1] == {"question": "who talks?", "qtype": "1", "candidates": [], "answer": "a dinosaur"}
    (tmp_path / "mc.csv").write_text("key,vid_key,video_id,a1,a2,a3,answer\nmc0,msr7,video7,a cat,a dog,a man,2\n")
    records, extras = read_qa(tmp_path / "mc.csv", "/v", "mc")
    assert records[0].label == 2 and extras[0]["candidates"] == ["a cat", "a dog", "a man"]
    assert extras[0]["answer"] == "a man"  # the right option's text
    (tmp_path / "bad.json").write_text(json.dumps([{"video_id": 1, "candidates": ["a"], "answer": 3}]))
    with pytest.raises(AnnotationError, match="answer 3 is not one of 1 options"):
        read_qa(tmp_path / "bad.json", "/v", "mc")
    with pytest.raises(AnnotationError, match="needs data.annotations.answers"):
        read_qa(tmp_path / "qa.json", "/v", "qa")
    records, extras = read_qa(tmp_path / "qa.json", "/v", "open", video_prefix="video")  # generative: no vocabulary
    assert [r.label for r in records] == [-1, -1] and [e["answer"] for e in extras] == ["singing", "a dinosaur"]


def test_generative_qa_formats(tmp_path):
    """ActivityNet-QA's question and answer files joined by question_id (types named); Video-ChatGPT's instructions."""
    (tmp_path / "test_q.json").write_text(json.dumps([
        {"video_name": "abc", "question_id": "abc_1", "question": "is the man happy"},
        {"video_name": "xyz", "question_id": "xyz_3", "question": "what colour is the car"},
    ]))  # fmt: skip
    (tmp_path / "test_a.json").write_text(json.dumps([
        {"question_id": "xyz_3", "answer": "red", "type": 4}, {"question_id": "abc_1", "answer": "yes", "type": 3},
    ]))  # fmt: skip
    records, extras = read_qa(tmp_path / "test_q.json", "/v", "activitynet", video_prefix="v_")
    assert [r.path for r in records] == ["/v/v_abc.mp4", "/v/v_xyz.mp4"]
    assert [(e["answer"], e["qtype"]) for e in extras] == [("yes", "yes_no"), ("red", "colour")]
    (tmp_path / "lone_q.json").write_text("[]")
    with pytest.raises(AnnotationError, match="answers file lone_a.json is not beside it"):
        read_qa(tmp_path / "lone_q.json", "/v", "activitynet")
    (tmp_path / "instruct.json").write_text(json.dumps([{"video_id": "v_k1", "q": "describe it", "a": "a dog runs"}]))
    records, extras = read_qa(tmp_path / "instruct.json", "/v", "videochatgpt")
    assert records[0].path == "/v/v_k1.mp4" and extras[0]["question"] == "describe it"
    assert extras[0]["answer"] == "a dog runs" and records[0].label == -1


def test_synthetic_questions_need_time_for_motion(qa_root):
    qa = json.loads((qa_root / "qa_train.json").read_text())
    assert {q["type"] for q in qa} == {"motion", "colour"} and len(qa) == 2 * 32
    assert all(q["answer"] in MOTION_ANSWERS for q in qa if q["type"] == "motion")
    mc = json.loads((qa_root / "mc_train.json").read_text())
    twins = {"left to right": "right to left", "up": "down", "approaching": "moving away",
             "appearing": "disappearing"}  # fmt: skip
    twins.update({b: a for a, b in twins.items()})
    for item in mc:
        right = item["candidates"][item["answer"]].rsplit(" is ", 1)[1]
        assert any(c.endswith(f" is {twins[right]}") for c in item["candidates"])  # the reversed twin is offered


def test_multiple_choice_scores_candidates_by_cosine():
    torch.manual_seed(0)
    task = VideoQuestionAnswering(CLIP("ViT-T-8-test"), mode="mc", transfer=Frozen()).eval()
    video = torch.randn(2, 4, 3, 32, 32)
    candidates = [["a cat", "a dog", "a man"], ["red", "blue", "green"]]
    with torch.no_grad():
        v = task.video_embedding(video)
        scores = task.scores(v, ["", "which colour?"], candidates)
        t = task.text_embedding(["which colour? blue"])
    scale = task.backbone.logit_scale.exp()
    assert scores.shape == (2, 3) and torch.allclose(scores[1, 1], scale * v[1] @ t[0], atol=1e-4)
    with pytest.raises(ValueError, match="same number of candidates"):
        task.scores(v, ["", ""], [["a", "b"], ["c"]])
    with pytest.raises(ValueError, match="model.num_answers"):
        VideoQuestionAnswering(CLIP("ViT-T-8-test"), mode="open")


def qa_overrides(qa_root, run_dir, config="synthetic.yaml") -> list[str]:
    return [
        "--config", str(ROOT / "configs" / "qa" / config),
        "--model.init_args.backbone.init_args.arch=ViT-T-8-test",
        "--model.init_args.backbone.init_args.pretrained=null",
        "--model.init_args.transfer.init_args.channels=8",
        f"--data.init_args.root={qa_root}", "--data.init_args.synthetic.video_size=32", "--data.init_args.batch_size=8",
        "--data.init_args.num_workers=0", "--data.init_args.sampler.init_args.num_frames=4",
        "--trainer.max_epochs=1", f"--trainer.default_root_dir={run_dir}",
        f"--trainer.logger.init_args.save_dir={run_dir}", "--trainer.enable_progress_bar=false",
    ]  # fmt: skip


@pytest.mark.parametrize("config", ["synthetic.yaml", "synthetic_mc.yaml"])
def test_fit_reports_accuracy_overall_and_per_type(qa_root, tmp_path, config):
    run = tmp_path / "run"
    assert main(["fit", *qa_overrides(qa_root, run, config)]) == 0
    rows = metrics(run)
    questions = 2 * 16 if config == "synthetic.yaml" else 16  # the fixture's 16 validation videos
    assert last_value(rows, "val/questions") == questions
    assert 0 <= last_value(rows, "val/acc") <= 100 and 0 <= last_value(rows, "val/acc_motion") <= 100
    if config == "synthetic.yaml":
        assert 0 <= last_value(rows, "val/acc_colour") <= 100


def test_ddp_evaluation_counts_each_question_once(qa_root, tmp_path):
    """Two CPU ranks, 7 questions: the accuracy is over exactly 7."""
    items = json.loads((qa_root / "qa_test.json").read_text())[:7]
    (tmp_path / "q7.json").write_text(json.dumps(items))
    run = tmp_path / "ddp"
    args = [sys.executable, "-m", "lit_i2v", "test", *qa_overrides(qa_root, run),
            "--data.synthetic=null", f"--data.test={tmp_path / 'q7.json'}",
            f"--data.root={qa_root / 'videos'}", f"--data.annotations.answers={qa_root / 'answers.json'}",
            "--data.eval_batch_size=2", "--data.num_workers=0",
            "--data.eval_transform=lit_i2v.data.EvalTransform", "--data.eval_transform.size=32",
            "--trainer.devices=2", "--trainer.strategy=ddp"]  # fmt: skip
    args = [a for a in args if not a.startswith("--data.init_args.")]
    done = subprocess.run(args, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert last_value(metrics(run), "test/questions") == 7
