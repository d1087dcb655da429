"""Tar shards: writing (formats, resume, broken videos), reading (same frames as the files), and the epoch plan
across ranks and workers (every sample once, known length), through the DataModule and a 2-process DDP run."""

from __future__ import annotations

import json
import subprocess
import sys
import tarfile
from collections import Counter
from pathlib import Path

import pytest
import torch

from lit_i2v.cli import main
from lit_i2v.data import EvalTransform, TrainTransform, UniformSampler, VideoClipDataset, VideoDataModule
from lit_i2v.data.formats.annotations import read_annotations
from lit_i2v.data.loading.dataset import collate_clips
from lit_i2v.data.shards import ShardedClips, ShardError, ShardSpec, stored_frames, write_shards
from lit_i2v.data.video.images import decode_jpegs
from lit_i2v.data.video.transforms import PackedJpegs

from .conftest import in_shared_memory, resized
from .test_cli import last_value, metrics, tiny_overrides


def ssv2_records(root: Path, split: str = "train"):
    name = {"train": "train.json", "val": "validation.json", "test": "test.json"}[split]
    return read_annotations(root / name, root / "videos", "ssv2", root / "labels.json")


@pytest.fixture(scope="module")
def shards(synth_root, tmp_path_factory) -> Path:
    """All three splits of the small synthetic set, 5 videos a shard, every frame at full size."""
    out = tmp_path_factory.mktemp("shards")
    splits = {s: ssv2_records(synth_root, s) for s in ("train", "val", "test")}
    write_shards(splits, out, ShardSpec(samples_per_shard=5), class_names=[str(i) for i in range(8)], workers=1)
    return out


def eval_clips(root_or_records, split="val", **kwargs):
    args = dict(sampler=UniformSampler(4, test_clips=2), transform=EvalTransform(size=32), training=False)
    if isinstance(root_or_records, list):
        return VideoClipDataset(root_or_records, **args)
    return ShardedClips(root_or_records, split, **args, **kwargs)


def test_shards_are_plain_tars_grouped_by_key_with_exact_byte_ranges(shards):
    index = json.loads((shards / "index.json").read_text())
    assert index["splits"]["train"]["samples"] == 32 and len(index["splits"]["train"]["shards"]) == 7
    assert index["splits"]["val"]["samples"] == 16 and index["splits"]["val"]["failed"] == []
    rows = json.loads((shards / "train-000000.idx.json").read_text())
    with tarfile.open(shards / "train-000000.tar") as tar:
        names = tar.getnames()
        assert names[:3] == [f"{rows[0]['key']}.json", f"{rows[0]['key']}.0000.jpg", f"{rows[0]['key']}.0001.jpg"]
        assert len(names) == 5 * (1 + 16)  # metadata + every one of the 16 frames
        blob = (shards / "train-000000.tar").read_bytes()
        offset, size = rows[1]["members"][3]
        assert blob[offset : offset + size] == tar.extractfile(f"{rows[1]['key']}.0003.jpg").read()
        meta = json.loads(tar.extractfile(f"{rows[1]['key']}.json").read())
    assert meta == {k: rows[1][k] for k in ("label", "video_id", "index", "num_frames", "stored")}
    assert meta["num_frames"] == 16 and meta["stored"] is None


def test_training_shards_mix_the_annotation_order_and_evaluation_keeps_it(shards):
    rows = lambda split, n: json.loads((shards / f"{split}-{n:06d}.idx.json").read_text())  # noqa: E731
    assert [r["index"] for r in rows("val", 0)] == [0, 1, 2, 3, 4]
    train = [r["index"] for n in range(7) for r in rows("train", n)]
    assert sorted(train) == list(range(32)) and train != list(range(32))


def test_sharded_frames_match_the_decoded_files(shards, synth_root):
    files = eval_clips(ssv2_records(synth_root, "val"))
    streamed = list(eval_clips(shards, "val"))
    assert [s["index"] for s in streamed] == list(range(16))
    for sample in streamed[:4]:
        reference = files[sample["index"]]
        assert sample["video_id"] == reference["video_id"] and sample["label"] == reference["label"]
        assert sample["video"].shape == reference["video"].shape == (2, 4, 3, 32, 32)
        error = (sample["video"].float() - reference["video"].float()).abs().mean()
        other = (sample["video"].float() - files[(sample["index"] + 1) % 16]["video"].float()).abs().mean()
        assert error < 5.0 and error < other / 3  # JPEG (quality 90) of the same frames, not of another video


def test_video_mode_stores_the_files_and_decodes_identical_frames(synth_root, tmp_path):
    records = ssv2_records(synth_root, "test")
    write_shards({"test": records}, tmp_path, ShardSpec(mode="video", samples_per_shard=4), workers=1)
    streamed = list(eval_clips(tmp_path, "test"))
    files = eval_clips(records)
    assert len(streamed) == 8
    for sample in streamed:
        assert torch.equal(sample["video"], files[sample["index"]]["video"])


def test_fewer_stored_frames_stand_in_by_nearest_and_resize_the_short_side(synth_root, tmp_path):
    assert stored_frames(16, 4) == [2, 6, 10, 14] and stored_frames(16, 0) == list(range(16))
    write_shards({"val": ssv2_records(synth_root, "val")[:3]}, tmp_path, ShardSpec(frames=4, short_side=24), workers=1)
    rows = json.loads((tmp_path / "val-000000.idx.json").read_text())
    assert rows[0]["stored"] == [2, 6, 10, 14] and len(rows[0]["members"]) == 4
    with tarfile.open(tmp_path / "val-000000.tar") as tar:
        jpeg = tar.extractfile(f"{rows[0]['key']}.0000.jpg").read()
        assert decode_jpegs([torch.frombuffer(bytearray(jpeg), dtype=torch.uint8)])[0].shape == (3, 24, 24)
    sample = next(iter(eval_clips(tmp_path, "val")))
    assert sample["video"].shape == (2, 4, 3, 32, 32) and sample["valid"]


@pytest.mark.parametrize("world", [1, 2, 3])
@pytest.mark.parametrize("workers", [1, 2])
def test_evaluation_plan_reads_every_sample_exactly_once(shards, world, workers):
    ds = eval_clips(shards, "val")
    ds.batch_size = 3
    seen = Counter(p for r in range(world) for w in range(workers) for p in ds.plan(0, r, world, w, workers))
    assert len(seen) == 16 and set(seen.values()) == {1}


@pytest.mark.parametrize("world", [1, 2, 3])
def test_training_plan_covers_the_epoch_with_equal_whole_batches_per_rank(shards, world):
    ds = ShardedClips(shards, "train", UniformSampler(4), TrainTransform(size=32), training=True)
    ds.batch_size = 4
    per_rank = []
    seen = Counter()
    for rank in range(world):
        positions = [p for w in range(2) for p in ds.plan(5, rank, world, w, 2)]
        worker0 = ds.plan(5, rank, world, 0, 2)
        assert len(worker0) % 4 == 0  # only the last worker may hold a partial batch
        per_rank.append(len(positions))
        seen.update(positions)
    assert set(per_rank) == {-(-32 // world)}  # ceil(N / W) on every rank
    assert len(seen) == 32  # nothing dropped
    assert sum(seen.values()) - 32 == world * -(-32 // world) - 32  # duplicates only as DistributedSampler pads
    assert ds.plan(5, 0, world) == ds.plan(5, 0, world) and ds.plan(5, 0, world) != ds.plan(6, 0, world)


def test_datamodule_streams_an_epoch_of_each_training_sample_once(shards):
    dm = VideoDataModule(shards=str(shards), sampler=UniformSampler(4), batch_size=4, num_workers=2,
                         train_transform=TrainTransform(size=32), eval_transform=EvalTransform(size=32))  # fmt: skip
    dm.setup("fit")
    assert dm.class_names() == [str(i) for i in range(8)] and dm.datasets["train"].num_videos == 32
    loader = dm.train_dataloader()
    assert len(loader) == 8
    epochs = []
    for _ in range(2):
        batches = list(loader)
        assert len(batches) == 8 and all(b["video"].shape == (4, 4, 3, 32, 32) for b in batches)
        epochs.append([i for b in batches for i in b["index"].tolist()])
    assert sorted(epochs[0]) == sorted(epochs[1]) == list(range(32))
    assert epochs[0] != epochs[1]  # the next epoch reads the shards in another order
    val = [b for b in dm.val_dataloader()]
    assert sorted(i for b in val for i in b["index"].tolist()) == list(range(16))


def test_writing_resumes_and_reports_broken_videos(synth_root, tmp_path):
    records = ssv2_records(synth_root, "val")[:6]
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"not a video")
    records[2] = type(records[2])(str(broken), records[2].label, "broken")
    spec = ShardSpec(samples_per_shard=3)
    first = write_shards({"val": records}, tmp_path / "out", spec, workers=1)
    assert first["splits"]["val"]["samples"] == 5 and first["splits"]["val"]["failed"][0].startswith(str(broken))
    stamp = (tmp_path / "out" / "val-000001.tar").stat().st_mtime_ns
    (tmp_path / "out" / "val-000000.idx.json").unlink()  # as if interrupted before this shard finished
    again = write_shards({"val": records}, tmp_path / "out", spec, workers=1)
    assert again["splits"]["val"]["samples"] == 5
    assert (tmp_path / "out" / "val-000001.tar").stat().st_mtime_ns == stamp  # finished shards are kept
    assert not list((tmp_path / "out").glob(".*tmp"))


def test_a_damaged_member_is_masked_in_evaluation_and_replaced_in_training(synth_root, tmp_path):
    write_shards({"val": ssv2_records(synth_root, "val")[:4]}, tmp_path, ShardSpec(samples_per_shard=4), workers=1)
    rows = json.loads((tmp_path / "val-000000.idx.json").read_text())
    with open(tmp_path / "val-000000.tar", "r+b") as f:  # overwrite every frame of the second sample
        for offset, size in rows[1]["members"]:
            f.seek(offset)
            f.write(b"\0" * size)
    samples = list(eval_clips(tmp_path, "val"))
    assert [s["valid"] for s in samples] == [True, False, True, True] and samples[1]["video"].abs().sum() == 0
    train = ShardedClips(tmp_path, "val", UniformSampler(4), TrainTransform(size=32), training=True)
    streamed = list(train)
    assert len(streamed) == 4 and sum(s["skipped"] for s in streamed) >= 1
    assert all(s["index"] != rows[1]["index"] or s["skipped"] for s in streamed)


def test_missing_or_foreign_shard_folders_fail_clearly(tmp_path, shards):
    with pytest.raises(ShardError, match=r"index.json: no shard index; write shards with"):
        VideoDataModule(shards=str(tmp_path))
    (tmp_path / "index.json").write_text(json.dumps({"format": "webdataset"}))
    with pytest.raises(ShardError, match=r"not a lit_i2v-shards v1 index"):
        VideoDataModule(shards=str(tmp_path))
    with pytest.raises(ShardError, match=r"no 'holdout' split"):
        ShardedClips(shards, "holdout", UniformSampler(4), EvalTransform(size=32), training=False)


def test_shard_command_then_fit_on_two_ddp_ranks(synth_root, tmp_path, capsys):
    """``shard`` from a recipe, then a 2-process DDP fit streaming the shards: ranks step equally (no hang), and
    validation counts each of the 16 videos once."""
    out = tmp_path / "shards"
    overrides = tiny_overrides(synth_root, tmp_path / "unused")
    assert main(["shard", *overrides, "--out", str(out), "--samples-per-shard", "6", "--workers", "1"]) == 0
    printed = capsys.readouterr().out
    assert "train: 32 of 32 videos in 6 shards" in printed and "val: 16 of 16 videos in 3 shards" in printed
    run = tmp_path / "ddp"
    args = [sys.executable, "-m", "lit_i2v", "fit", *tiny_overrides(synth_root, run),
            f"--data.init_args.shards={out}", "--trainer.devices=2", "--trainer.strategy=ddp",
            "--data.init_args.batch_size=5"]  # fmt: skip
    done = subprocess.run(args, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    rows = metrics(run)
    assert last_value(rows, "val/videos") == 16
    assert max(int(r["step"]) for r in rows if r.get("step")) + 1 == 3  # ceil(32 / 2) = 16 per rank: 3 batches of 5


@pytest.mark.parametrize("workers", [0, 2])
def test_a_resumed_stream_yields_the_rest_of_the_epoch(shards, workers):
    """Told that 3 batches of epoch 1 were trained on, the sharded loader skips them (across its workers' round
    robin) and yields the remaining batches with the same clips as an uninterrupted pass."""
    dm = VideoDataModule(shards=str(shards), sampler=UniformSampler(4), batch_size=3, num_workers=workers, seed=0,
                         train_transform=TrainTransform(size=32), eval_transform=EvalTransform(size=32))  # fmt: skip
    dm.setup("fit")
    loader = dm.train_dataloader()
    epochs = [[(b["index"].tolist(), resized(b["video"])) for b in loader] for _ in range(2)]
    resumed = dm.train_dataloader()
    resumed.load_state_dict({"epoch": 1, "batches": 3})
    resumed._passes = 1
    rest = [(b["index"].tolist(), resized(b["video"])) for b in resumed]
    assert [i for i, _ in rest] == [i for i, _ in epochs[1][3:]] and len(rest) == len(epochs[1]) - 3
    assert all(torch.equal(a, b) for (_, a), (_, b) in zip(rest, epochs[1][3:], strict=True))


@pytest.mark.parametrize("workers", [0, 2])
def test_clips_decoded_on_the_device_are_the_clips_the_workers_would_cut(shards, workers):
    """With ``decode_on_device`` the workers send each clip's JPEGs and crop box; decoded, cut and resized where the
    batch goes, they are exactly the clips of the worker path (same seed), and the JPEGs cross in shared memory."""
    common = dict(shards=str(shards), sampler=UniformSampler(4), batch_size=4, num_workers=workers, seed=3,
                  train_transform=TrainTransform(size=32), eval_transform=EvalTransform(size=32))  # fmt: skip
    batches = {}
    for on_device in (False, True):
        dm = VideoDataModule(decode_on_device=on_device, **common)
        dm.setup("fit")
        batches[on_device] = list(dm.train_dataloader())
    assert len(batches[True]) == len(batches[False]) == 8
    for cut, encoded in zip(batches[False], batches[True], strict=True):
        video = encoded["video"]
        assert isinstance(video, PackedJpegs) and video.shape == (4, 4, 3, 32, 32) and len(video) == 4
        assert encoded["index"].tolist() == cut["index"].tolist()
        jpegs = video.jpegs()  # the 4 x 4 frames travel as JPEGs, not pixels
        assert len(jpegs) == 16 and all(bytes(jpeg[:2].tolist()) == b"\xff\xd8" for jpeg in jpegs)
        assert in_shared_memory(video.data) == (workers > 0)
        assert torch.equal(video.to("cpu").resize(), cut["video"].resize())


def test_a_frame_that_fails_to_decode_on_the_device_is_left_black_and_named(synth_root, tmp_path, caplog):
    write_shards({"train": ssv2_records(synth_root, "train")[:4]}, tmp_path, ShardSpec(samples_per_shard=4), workers=1)
    rows = json.loads((tmp_path / "train-000000.idx.json").read_text())
    with open(tmp_path / "train-000000.tar", "r+b") as f:  # a sample 8-bit JPEGs that claim 3-bit precision
        for offset, size in rows[1]["members"]:
            f.seek(offset)
            jpeg = bytearray(f.read(size))
            jpeg[jpeg.index(b"\xff\xc0") + 4] = 3  # the frame header's precision byte; its size still reads
            f.seek(offset)
            f.write(jpeg)
    dataset = ShardedClips(tmp_path, "train", UniformSampler(4), TrainTransform(size=32), training=True,
                           decode_on_device=True)  # fmt: skip
    dataset.batch_size = 4
    batch = collate_clips(list(dataset))
    with caplog.at_level("WARNING", logger="lit_i2v.data"):
        clips = batch["video"].resize()
    black = [i for i in range(4) if clips[i].abs().sum() == 0]
    assert batch["index"][black].tolist() == [rows[1]["index"]] and clips.abs().sum() > 0
    assert caplog.text.count(f"{rows[1]['key']}: frame") == 4 and "left black" in caplog.text


def test_decoding_on_the_device_needs_jpeg_shards_and_the_resize_left_to_it(shards, synth_root, tmp_path):
    with pytest.raises(ValueError, match="data.decode_on_device decodes JPEG frames of shards: set data.shards"):
        VideoDataModule(train=str(synth_root / "train.json"), decode_on_device=True)
    with pytest.raises(ValueError, match="must leave the resize to the device"):
        ShardedClips(shards, "train", UniformSampler(4), TrainTransform(size=32, rand_augment=(2, 5)), training=True,
                     decode_on_device=True)  # fmt: skip
    write_shards({"train": ssv2_records(synth_root)[:2]}, tmp_path, ShardSpec(mode="video"), workers=1)
    with pytest.raises(ShardError, match=r"decode_on_device needs shards of JPEG frames .* these hold video files"):
        ShardedClips(tmp_path, "train", UniformSampler(4), TrainTransform(size=32), training=True,
                     decode_on_device=True)  # fmt: skip


def test_fit_decoding_training_clips_on_the_device(shards, synth_root, tmp_path, capsys):
    """A fit whose training batches are ``PackedJpegs``: Lightning moves them with the batch, the data module decodes
    them on the device, the task receives tensors."""
    run = tmp_path / "run"
    overrides = [*tiny_overrides(synth_root, run), f"--data.init_args.shards={shards}",
                 "--data.init_args.decode_on_device=true", "--data.init_args.num_workers=1",
                 "--trainer.log_every_n_steps=1"]  # fmt: skip
    assert main(["fit", *overrides]) == 0
    summary = capsys.readouterr().out
    assert f"data        shards {shards} (JPEG frames, decoded on the device in training), 1 worker(s)" in summary
    rows = metrics(run)
    assert last_value(rows, "val/videos") == 16 and last_value(rows, "train/skipped") == 0
    assert torch.isfinite(torch.tensor(last_value(rows, "train/loss")))
