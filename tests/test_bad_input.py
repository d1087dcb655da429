"""Bad input, generated here: malformed and odd annotation files, wrong roots and labels, config mistakes and damaged
checkpoints. Each must end in one line that names the file and line, or the config key (``lit_i2v: error: ...``,
exit code 2), or be read correctly; never a traceback, never a silent misreading."""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
from pathlib import Path

import lightning as L
import pytest
import torch

from lit_i2v.cli import main
from lit_i2v.data import VideoDataModule
from lit_i2v.data.formats.annotations import AnnotationError, read_annotations
from lit_i2v.tasks.checkpoint_io import CheckpointError, check_loadable, remove_orphans, resume_path

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def lists(synth_root, tmp_path_factory) -> Path:
    """The synthetic test set as mmaction2 video lists (``<id>.mp4 <label>``) under a folder of their own."""
    folder = tmp_path_factory.mktemp("lists")
    names = json.loads((synth_root / "labels.json").read_text())
    index = {name: int(i) for name, i in names.items()}
    for split, file in [("train", "train.json"), ("val", "validation.json"), ("test", "test.json")]:
        items = json.loads((synth_root / file).read_text())
        lines = [f"{it['id']}.mp4 {index[it['template'].replace('[', '').replace(']', '')]}" for it in items]
        (folder / f"{split}.txt").write_text("\n".join(lines) + "\n")
    return folder


def run_args(synth_root: Path, lists: Path, run: Path, *extra: str) -> list[str]:
    """A tiny random model on the list files, one short epoch, everything written under ``run``."""
    return [
        "--config", str(ROOT / "configs" / "quickstart.yaml"),
        "--model.init_args.backbone.init_args.arch=ViT-T-8-test",
        "--model.init_args.backbone.init_args.pretrained=null",
        "--model.init_args.temporal.init_args.heads=2",
        "--data=lit_i2v.data.VideoDataModule",
        "--data.synthetic=null",
        f"--data.train={lists / 'train.txt'}",
        f"--data.val={lists / 'val.txt'}",
        f"--data.root={synth_root / 'videos'}",
        "--data.batch_size=8",
        "--data.num_workers=0",
        "--data.sampler=lit_i2v.data.UniformSampler",
        "--data.sampler.num_frames=4",
        "--data.train_transform=lit_i2v.data.TrainTransform",
        "--data.train_transform.size=32",
        "--data.eval_transform=lit_i2v.data.EvalTransform",
        "--data.eval_transform.size=32",
        "--trainer.max_epochs=1",
        f"--trainer.default_root_dir={run}",
        f"--trainer.logger.init_args.save_dir={run}",
        "--trainer.enable_progress_bar=false",
        *extra,
    ]  # fmt: skip


def one_error_line(capsys) -> str:
    """The ``lit_i2v: error:`` line of a failed command; no traceback anywhere."""
    err = capsys.readouterr().err
    assert "Traceback" not in err, err[-3000:]
    lines = [line for line in err.splitlines() if line.startswith("lit_i2v: error:")]
    assert len(lines) == 1, err[-3000:]
    return lines[0]


# ---- annotation files -----------------------------------------------------------------------------------------


def test_mmaction2_lists_are_read_or_refused_by_name(tmp_path):
    ann = tmp_path / "list.txt"
    ann.write_bytes("\ufeffa/x.mp4 3\nb/y.mp4 1\n".encode())  # a byte-order mark is not part of the first path
    assert [r.path for r in read_annotations(ann, "/data")] == ["/data/a/x.mp4", "/data/b/y.mp4"]
    ann.write_text("test.mp4 0 3\n")  # mmaction2's multi-label list: not rawframes, not a missing file
    with pytest.raises(AnnotationError, match=r"list.txt:1: 'test.mp4 0 3' has several labels: a multi-label list"):
        read_annotations(ann)
    with pytest.raises(AnnotationError, match="list.txt:1: .* multi-label"):
        read_annotations(ann, fmt="list")
    ann.write_text("imgs 2 5 127\n")  # rawframes with a start offset: auto cannot tell it from a multi-label list
    with pytest.raises(AnnotationError, match="list.txt:1: .* data.annotations.format=rawframes_offset"):
        read_annotations(ann)
    (record,) = read_annotations(ann, "/f", fmt="rawframes_offset")
    assert (record.path, record.num_frames, record.label, record.first_frame) == ("/f/imgs", 5, 127, 3)
    with pytest.raises(AnnotationError, match=r"list.txt:1: expected '<dir> <num_frames> <label>', got 'imgs 2 5 127'"):
        read_annotations(ann, fmt="rawframes")  # an extra field is never silently dropped


@pytest.mark.parametrize(
    "first, line, message",
    [
        ("ok.mp4 0", "a.mp4 1.0", r"expected '<path> <label>', got 'a.mp4 1.0' \(invalid literal"),
        ("ok.mp4 0", "a.mp4 -1", "label -1 is negative"),
        ("ok.mp4 0", "a.mp4", r"expected '<path> <label>', got 'a.mp4' \(1 fields\)"),
        ("ok.mp4 0", "b.mp4 2 3", "'b.mp4 2 3' has several labels"),
        ("clip 12 0", "clip 0 3", "0 frames from offset 0 is no clip"),
        ("clip 12 0", "clip 12", r"expected '<dir> <num_frames> <label>', got 'clip 12' \(2 fields\)"),
    ],
)
def test_a_bad_line_is_named_with_its_file_and_number(tmp_path, first, line, message):
    ann = tmp_path / "train.txt"
    ann.write_text(f"{first}\n\n{line}\n")
    with pytest.raises(AnnotationError, match=rf"train.txt:3: {message}"):
        read_annotations(ann)


def test_empty_annotation_files_are_errors(tmp_path, synth_root):
    header = "label,youtube_id,time_start,time_end\n"
    for name, text in [("empty.txt", ""), ("blank.txt", "\n\n"), ("empty.json", "[]"), ("empty.csv", header)]:
        (tmp_path / name).write_text(text)
        with pytest.raises(AnnotationError, match=f"{name}: lists no videos"):
            read_annotations(tmp_path / name, labels=synth_root / "labels.json")


def test_files_that_are_not_utf8_or_not_the_json_expected_are_named(tmp_path, synth_root):
    from lit_i2v.data.formats.annotations import read_class_names
    from lit_i2v.data.formats.captions import read_captions

    (tmp_path / "latin.txt").write_bytes(b"ok.mp4 0\ncaf\xe9.mp4 1\n")  # Latin-1, not UTF-8
    with pytest.raises(AnnotationError, match=r"latin.txt:2: not UTF-8 text \(byte 0xe9\)"):
        read_annotations(tmp_path / "latin.txt")
    for text, message in [
        ('{"a": 0,\n', r"labels.json:2: invalid JSON"),
        ('["a", "b"]', "labels.json: expected an object mapping class names to indices"),
        ('{"a": "0", "b": "0"}', "labels.json: 'b' has index '0'; expected each of 0 to 1 once"),
        ('{"a": "0", "b": "2"}', "labels.json: 'b' has index '2'; expected each of 0 to 1 once"),
    ]:
        (tmp_path / "labels.json").write_text(text)
        with pytest.raises(AnnotationError, match=message):
            read_class_names(tmp_path / "labels.json")
    (tmp_path / "train.json").write_text('{"id": "1", "template": "x"}')  # an entry, not a list of them
    with pytest.raises(AnnotationError, match="train.json: expected a list of"):
        read_annotations(tmp_path / "train.json", labels=synth_root / "labels.json")
    (tmp_path / "captions.json").write_bytes(b'[{"video_id": "v\xff", "captions": ["a"]}]')
    with pytest.raises(AnnotationError, match=r"captions.json:1: not UTF-8 text"):
        read_captions(tmp_path / "captions.json", tmp_path, "captions")


def test_rawframes_with_offsets_read_their_own_frames(tmp_path):
    from lit_i2v.data.video import images
    from lit_i2v.data.video.decode import open_video

    folder = tmp_path / "long"
    folder.mkdir()
    for i in range(10):  # frame files img_00001 ... img_00010, frame k flat grey 20*k
        image = torch.full((3, 16, 16), 20 * i, dtype=torch.uint8)
        (folder / f"img_{i + 1:05d}.jpg").write_bytes(images.encode_jpeg(image, 100).numpy().tobytes())
    (tmp_path / "clips.txt").write_text("long 0 4 0\nlong 6 4 1\n")  # two clips of 4 frames cut from one folder
    first, second = read_annotations(tmp_path / "clips.txt", tmp_path, fmt="rawframes_offset")
    assert first.video_id != second.video_id
    for record, start in [(first, 0), (second, 6)]:
        frames = open_video(record.path, num_frames=record.num_frames, first_frame=record.first_frame)
        levels = [round(float(f.float().mean()) / 20) for f in frames.get_frames([0, 3])]
        assert levels == [start, start + 3]


# ---- labels, roots, splits ------------------------------------------------------------------------------------


@pytest.mark.parametrize("split", ["train", "val", "test"])
def test_labels_outside_the_classes_name_file_and_line_in_every_split(lists, synth_root, tmp_path, split):
    files = {s: str(lists / f"{s}.txt") for s in ("train", "val", "test")}
    bad = tmp_path / f"{split}.txt"
    lines = (lists / f"{split}.txt").read_text().splitlines()
    lines[1] = lines[1].rsplit(" ", 1)[0] + " 8"  # the synthetic set's 8 classes are 0 to 7
    bad.write_text("\n".join(lines) + "\n")
    files[split] = str(bad)
    with pytest.raises(AnnotationError, match=rf"{split}.txt:2: label 8 is outside the 8 classes \(0 to 7\)"):
        VideoDataModule(**files, root=str(synth_root / "videos"), num_classes=8)


def test_the_task_checks_labels_of_a_datamodule_built_without_num_classes(lists, synth_root):
    from lit_i2v.backbones import CLIP
    from lit_i2v.data import EvalTransform, TrainTransform, UniformSampler
    from lit_i2v.tasks import ActionRecognition

    data = VideoDataModule(train=str(lists / "train.txt"), val=str(lists / "val.txt"), root=str(synth_root / "videos"),
                           sampler=UniformSampler(4), train_transform=TrainTransform(32),
                           eval_transform=EvalTransform(32), batch_size=4, num_workers=0)  # fmt: skip
    task = ActionRecognition(CLIP("ViT-T-8-test"), num_classes=4)  # the synthetic set has 8 classes
    trainer = L.Trainer(fast_dev_run=1, accelerator="cpu", logger=False, enable_progress_bar=False)
    with pytest.raises(AnnotationError, match=r"train.txt:\d+: label [4-7] is outside the 4 classes"):
        trainer.fit(task, datamodule=data)


def test_a_wrong_root_is_one_line_before_the_model_is_built(lists, synth_root, tmp_path, capsys, caplog):
    args = run_args(synth_root, lists, tmp_path / "run")
    assert main(["fit", *args, f"--data.root={synth_root / 'vidoes'}"]) == 2  # a typo
    assert one_error_line(capsys) == (
        f"lit_i2v: error: data.root: {synth_root / 'vidoes'} does not exist; see docs/datasets.md for how to "
        "prepare each dataset"
    )
    assert main(["fit", *args, f"--data.root={synth_root}"]) == 2  # one level too high: none of the videos there
    line = one_error_line(capsys)
    assert f"data.root: none of 32 videos of data.train looked up is under {synth_root}" in line
    assert re.search(r"it holds \w+\.json, ", line)  # what the root does hold (its annotation files)
    partial = tmp_path / "videos"  # half the videos present: a warning, and check-data lists them
    shutil.copytree(synth_root / "videos", partial)
    for video in sorted(partial.glob("*.mp4"))[::2]:
        video.unlink()
    with caplog.at_level(logging.WARNING, logger="lit_i2v.data"):
        VideoDataModule(train=str(lists / "train.txt"), root=str(partial))
    assert "videos of data.train looked up are missing under" in caplog.text and "check-data" in caplog.text


def test_a_machine_with_the_evaluation_videos_only_can_still_evaluate(lists, synth_root, tmp_path, caplog):
    """Only the validation videos are here: building the module warns about the training split; validating works,
    fitting stops naming data.root. A QA training split with no answer in the vocabulary is named too."""
    from lit_i2v.data import Questions

    videos = tmp_path / "videos"
    videos.mkdir()
    for line in (lists / "val.txt").read_text().split():
        if line.endswith(".mp4"):
            shutil.copy(synth_root / "videos" / line, videos / line)
    with caplog.at_level(logging.WARNING, logger="lit_i2v.data"):
        data = VideoDataModule(train=str(lists / "train.txt"), val=str(lists / "val.txt"), root=str(videos))
    assert "none of 32 videos of data.train looked up" in caplog.text
    data.setup("validate")
    assert len(data.datasets["val"]) == 16
    with pytest.raises(FileNotFoundError, match="data.root: none of 32 videos of data.train looked up"):
        data.setup("fit")
    (tmp_path / "answers.txt").write_text("yes\nno\n")
    (tmp_path / "qa.json").write_text(json.dumps([{"video_id": "1", "question": "what?", "answer": "maybe"}]))
    with pytest.raises(
        AnnotationError, match=r"qa.json: none of its 1 answers is in data.annotations.answers \(.*answers.txt\)"
    ):
        answers = Questions(answers=str(tmp_path / "answers.txt"))
        VideoDataModule(train=str(tmp_path / "qa.json"), annotations=answers, root=str(videos))


def test_too_few_videos_for_one_batch_is_an_error_naming_the_split(lists, synth_root, tmp_path, capsys):
    few = tmp_path / "few.txt"
    few.write_text("".join((lists / "train.txt").read_text().splitlines(keepends=True)[:5]))
    args = run_args(synth_root, lists, tmp_path / "run", f"--data.train={few}")
    assert main(["fit", *args]) == 2
    assert f"data.train ({few}): 5 videos do not fill one batch of data.batch_size=8" in one_error_line(capsys)
    assert not (tmp_path / "run" / "checkpoints" / "last.ckpt").exists()


def test_check_data_lists_every_label_outside_the_models_classes(lists, synth_root, tmp_path, capsys):
    lines = (lists / "train.txt").read_text().splitlines()
    lines[0], lines[5] = lines[0].rsplit(" ", 1)[0] + " 9", lines[5].rsplit(" ", 1)[0] + " 12"
    bad = tmp_path / "train.txt"
    bad.write_text("\n".join(lines) + "\n")
    args = run_args(synth_root, lists, tmp_path / "run", f"--data.train={bad}")
    assert main(["check-data", *args, "--workers", "1"]) == 1
    out = capsys.readouterr().out
    assert "32 fine, 0 missing, 0 undecodable, 2 labels outside the 8 classes" in out
    assert f"bad label    {bad}:1: 9" in out and f"bad label    {bad}:6: 12" in out


# ---- config mistakes ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "override, expected",
    [
        (
            "--model.init_args.optim.optimizer.init_args.lr=-0.001",
            "model.init_args.optim.optimizer: Invalid learning rate: -0.001",
        ),
        ("--model.init_args.optim.layer_decay=1.5", r"model.init_args.optim.layer_decay: must be in \(0, 1\], got 1.5"),
        ("--data.batch_size=0", "data.batch_size: must be at least 1, got 0"),
        ("--data.num_workers=-1", "data.num_workers: must be at least 0, got -1"),
        ("--model.init_args.num_classes=0", "model.init_args.num_classes: must be at least 1, got 0"),
        ("--model.init_args.num_classes=3", r"train.txt:\d+: label \d is outside the 3 classes"),
        ("--trainer.strategy=dpp", "trainer.strategy: 'dpp' is not a registered strategy name - did you mean 'ddp'?"),
        ("--trainer.accelerator=cpo", "trainer.accelerator: .*accelerator='cpo'"),
        (
            "--model.init_args.transfer=lit_i2v.strategies.STAdaptr",
            "model.init_args.transfer: class_path 'lit_i2v.strategies.STAdaptr': lit_i2v.strategies has no class "
            "'STAdaptr' - did you mean lit_i2v.strategies.STAdapter",
        ),
        (
            "--model.init_args.transfer=lit_i2v.strategy.STAdapter",
            "lit_i2v has no module 'strategy' - did you mean lit_i2v.strategies",
        ),
        (  # the name it had until 2026-12, beside trainer.strategy
            "--model.init_args.strategy=lit_i2v.strategies.AIM",
            "ActionRecognition: option 'strategy' is now model.init_args.transfer$",
        ),
        (  # the data options that moved into annotations, and the task DataModules that annotations replaced
            "--data.labels=labels.json",
            r"VideoDataModule: option 'labels' is now data.annotations.init_args.labels \(annotations: Labels\)$",
        ),
        (
            "--data.answers=a.txt",
            r"option 'answers' is now data.annotations.init_args.answers \(annotations: Questions\)",
        ),
        (
            "--data=lit_i2v.data.CaptionDataModule",
            "is now lit_i2v.data.VideoDataModule with annotations: {class_path: ",
        ),
    ],
)
def test_config_mistakes_are_one_line_naming_the_key(lists, synth_root, tmp_path, capsys, override, expected):
    assert main(["fit", *run_args(synth_root, lists, tmp_path / "run"), override]) == 2
    line = one_error_line(capsys)
    assert line.startswith("lit_i2v: error: ") and re.search(expected, line), line


def test_weights_and_yaml_files_that_do_not_parse_are_named(lists, synth_root, tmp_path, capsys):
    fake = tmp_path / "model.safetensors"
    fake.write_text("<html>404 Not Found</html>")  # what a failed download leaves
    args = run_args(synth_root, lists, tmp_path / "run", f"--model.init_args.backbone.init_args.pretrained={fake}")
    assert main(["fit", *args]) == 2
    assert f"{fake}: not a readable safetensors file" in one_error_line(capsys)
    bad = tmp_path / "bad.yaml"
    bad.write_text("trainer:\n  max_epochs: [1\n")
    assert main(["fit", *run_args(synth_root, lists, tmp_path / "run"), "--config", str(bad)]) == 2
    assert one_error_line(capsys).startswith(f"lit_i2v: error: {bad}:3:1: not valid YAML (")


def test_an_annotation_error_shows_its_file_not_its_cause(lists, synth_root, tmp_path, capsys):
    items = json.loads((synth_root / "train.json").read_text())
    items[3]["template"] = "Jumping over [something]"
    bad = tmp_path / "train.json"
    bad.write_text(json.dumps(items))
    labels = f"--data.annotations.labels={synth_root / 'labels.json'}"
    args = run_args(synth_root, lists, tmp_path / "run", f"--data.train={bad}", labels)
    assert main(["fit", *args]) == 2
    line = one_error_line(capsys)
    assert f"{bad}: entry 3 (id '{items[3]['id']}'): template 'Jumping over something' is not a class of" in line


# ---- checkpoints ----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def trained_run(lists, synth_root, tmp_path_factory) -> tuple[Path, list[str]]:
    """One tiny fit (1 epoch): its run folder, and the arguments that made it."""
    run = tmp_path_factory.mktemp("trained") / "run"
    args = run_args(synth_root, lists, run)
    assert main(["fit", *args]) == 0
    return run, args


def _copy_run(trained_run, tmp_path) -> tuple[Path, list[str]]:
    run, args = trained_run
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    return copy, [a.replace(str(run), str(copy)) for a in args]


def test_evaluating_last_without_a_checkpoint_is_an_error_not_an_untrained_model(lists, synth_root, tmp_path, capsys):
    args = run_args(synth_root, lists, tmp_path / "fresh")
    assert main(["test", *args, "--ckpt_path=last"]) == 2
    assert one_error_line(capsys).endswith(
        f"--ckpt_path=last: {tmp_path / 'fresh' / 'checkpoints'} holds no last.ckpt to test"
    )
    assert main(["test", *args, f"--ckpt_path={tmp_path / 'nope.ckpt'}"]) == 2
    assert one_error_line(capsys).endswith(f"checkpoint not found: {tmp_path / 'nope.ckpt'}")


@pytest.mark.parametrize("damage", ["truncated", "empty", "text", "pickle"])
def test_a_damaged_checkpoint_is_one_line_naming_it(trained_run, tmp_path, capsys, damage):
    run, args = _copy_run(trained_run, tmp_path)
    path = tmp_path / "damaged.ckpt"
    data = (run / "checkpoints" / "last.ckpt").read_bytes()
    if damage == "pickle":
        torch.save({"state_dict": object}, path, _use_new_zipfile_serialization=True)  # needs weights_only=False
    else:
        path.write_bytes({"truncated": data[: len(data) // 2], "empty": b"", "text": b"epoch=3\n"}[damage])
    assert main(["test", *args, f"--ckpt_path={path}"]) == 2
    line = one_error_line(capsys)
    assert (
        line.startswith(f"lit_i2v: error: {path}: damaged or not a checkpoint (") and "weights_only=False" not in line
    )


def test_a_checkpoint_from_before_the_grouped_arguments_still_loads(trained_run, tmp_path, capsys):
    """Checkpoints written when tasks took ``optimizer``, ``warmup_epochs``, ``compile``... flat: Lightning reads
    their hyperparameters into the config, where those keys now sit under ``optim`` and ``runtime``."""
    run, args = _copy_run(trained_run, tmp_path)
    checkpoint = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True, map_location="cpu")
    hparams = checkpoint["hyper_parameters"]
    hparams.update(hparams.pop("optim"), compile=False, trainable_only_checkpoints=False)
    hparams.pop("runtime", None)
    old = tmp_path / "old.ckpt"
    torch.save(checkpoint, old)
    assert main(["test", *args, f"--ckpt_path={old}"]) == 0, capsys.readouterr().err[-2000:]
    tensor = tmp_path / "tensor.pt"
    torch.save(torch.zeros(3), tensor)  # loads with weights_only, but is no run's checkpoint
    assert main(["test", *args, f"--ckpt_path={tensor}"]) == 2
    assert "not a checkpoint of a run (a Tensor without a state_dict)" in one_error_line(capsys)


def test_resuming_from_a_damaged_last_checkpoint_takes_the_newest_that_loads(trained_run, tmp_path, caplog):
    run, args = _copy_run(trained_run, tmp_path)
    folder = run / "checkpoints"
    (best,) = folder.glob("best-*.ckpt")
    last = folder / "last.ckpt"
    last.write_bytes(last.read_bytes()[:1000])  # a torn copy
    assert resume_path(folder) == str(best)
    with caplog.at_level(logging.WARNING, logger="lit_i2v"):
        assert main(["fit", *args, "--trainer.max_epochs=2", "--ckpt_path=last"]) == 0
    assert f"{last}: damaged or not a checkpoint" in caplog.text and f"resuming from {best}" in caplog.text
    assert torch.load(last, weights_only=True, map_location="cpu")["epoch"] == 1  # resumed: one more epoch trained
    for checkpoint in folder.glob("*.ckpt"):
        checkpoint.write_bytes(b"")
    with pytest.raises(CheckpointError, match=r"last.ckpt: damaged .*no other checkpoint in .* loads; move it away"):
        resume_path(folder)


def test_restarts_leave_no_orphans_and_no_extra_copies_and_respect_the_umask(trained_run, tmp_path):
    run, args = _copy_run(trained_run, tmp_path)
    folder = run / "checkpoints"
    before = sorted(p.name for p in folder.iterdir())
    orphan = folder / ".last.ckpt.k3j2h1.tmp"  # what a kill -9 during a write leaves
    orphan.write_bytes((folder / "last.ckpt").read_bytes())
    unrelated = folder / "notes.tmp"
    unrelated.write_text("mine")
    previous = os.umask(0o027)
    try:
        assert main(["fit", *args]) == 0  # started afresh in the same folder (no --ckpt_path)
    finally:
        os.umask(previous)
    assert not orphan.exists() and unrelated.exists()
    assert sorted(p.name for p in folder.iterdir() if p != unrelated) == before  # no best-...-v1.ckpt beside
    assert (folder / "last.ckpt").stat().st_mode & 0o777 == 0o640  # 0666 less the umask, not mkstemp's 0600
    check_loadable(folder / "last.ckpt")
    assert remove_orphans(folder) == []


def test_what_shards_cannot_hold_and_captions_that_are_not_there_are_named(tmp_path, capsys):
    """Shards hold labelled clips: sharding a retrieval recipe is refused before anything is written. An MSVD video
    listed with an empty caption list is named (training would draw from nothing)."""
    import pickle

    from lit_i2v.data.formats.captions import read_captions

    config = str(ROOT / "configs" / "retrieval" / "synthetic.yaml")
    assert main(["shard", "--config", config, f"--data.root={tmp_path / 'set'}", "--out", str(tmp_path / "s")]) == 2
    assert "shard: shards hold labelled clips (annotations: Labels); Captions cannot be read from them" in (
        one_error_line(capsys)
    )
    assert not (tmp_path / "set").exists() and not (tmp_path / "s").exists()
    (tmp_path / "test_list.txt").write_text("vid1\nvid2\n")
    with open(tmp_path / "raw-captions.pkl", "wb") as f:
        pickle.dump({"vid1": [["a", "dog"]], "vid2": []}, f)
    with pytest.raises(AnnotationError, match=r"test_list.txt:2: video 'vid2' has no caption in"):
        read_captions(tmp_path / "test_list.txt", tmp_path, "msvd", str(tmp_path / "raw-captions.pkl"))


def test_labels_are_checked_only_where_they_are_classes(tmp_path):
    """``num_classes`` bounds recognition labels; captions (label -1) are not classes."""
    from lit_i2v.data import Captions

    (tmp_path / "v.mp4").write_bytes(b"")
    (tmp_path / "train.json").write_text(json.dumps([{"video_id": "v", "captions": ["a dog"]}]))
    data = VideoDataModule(train=str(tmp_path / "train.json"), root=str(tmp_path), annotations=Captions(),
                           num_classes=5)  # fmt: skip
    assert data.records("train")[0].label == -1


def test_synthetic_given_as_a_dict_from_python_is_built_or_named(tmp_path):
    """``VideoDataModule(synthetic={"video_size": 64})`` (the YAML shape, from Python) builds the spec instead of
    failing on a dict's missing attribute; an unknown key is named under ``data.synthetic``."""
    from lit_i2v.data import Captions, Synthetic
    from lit_i2v.errors import ConfigError

    dm = VideoDataModule(annotations=Captions(), root=str(tmp_path), synthetic={"video_size": 48})
    assert isinstance(dm.synthetic, Synthetic) and dm.synthetic.video_size == 48
    with pytest.raises(ConfigError, match=r"data.synthetic: .*'video_szie'"):
        VideoDataModule(annotations=Captions(), root=str(tmp_path), synthetic={"video_szie": 48})
