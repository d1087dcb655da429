"""Decoding, sampling, transforms, annotation formats, bad videos and distributed sampling on generated videos."""

from __future__ import annotations

import json
import random
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from lit_i2v.data import (
    DecodeError,
    DenseSampler,
    EvalTransform,
    Labels,
    TrainTransform,
    UniformSampler,
    UnpaddedDistributedSampler,
    VideoClipDataset,
    VideoDataModule,
    VideoRecord,
    open_video,
    read_annotations,
)
from lit_i2v.data.formats.annotations import AnnotationError
from lit_i2v.data.synthetic import CLASSES, SynthSpec, render, write_video
from lit_i2v.data.video import images
from lit_i2v.data.video.transforms import ClipCrop, PackedClips, pack_clips

from .conftest import in_shared_memory, resized

ROOT = Path(__file__).resolve().parents[1]


def numbered_video(path: Path, frames: int = 20, size: int = 32) -> Path:
    """A video whose frame i is flat grey level 10*i, so decoded frames reveal their index."""
    data = np.stack([np.full((size, size, 3), 10 * i, np.uint8) for i in range(frames)])
    write_video(path, data, fps=10)
    return path


def frame_index(frames: torch.Tensor) -> list[int]:
    return [round(float(f.float().mean()) / 10) for f in frames]


# ---- sampling -------------------------------------------------------------------------------------------------


def test_uniform_sampler_takes_one_frame_per_segment():
    sampler = UniformSampler(num_frames=8, test_clips=2)
    rng = random.Random(0)
    for total in (8, 24, 300):
        (clip,) = sampler(total, training=True, rng=rng)
        seg = total / 8
        assert [int(i // seg) for i in clip] == list(range(8))
    centre, shifted = sampler(80, training=False)
    assert centre == [2, 12, 22, 32, 42, 52, 62, 72] and shifted == [7, 17, 27, 37, 47, 57, 67, 77]
    assert sampler(3, training=True, rng=rng)[0] == sorted(sampler(3, training=True, rng=rng)[0])  # short: repeats


def test_dense_sampler_strides_and_spreads_views():
    sampler = DenseSampler(num_frames=4, stride=5, test_clips=3)
    (clip,) = sampler(100, training=True, rng=random.Random(0))
    assert np.all(np.diff(clip) == 5)
    views = sampler(100, training=False)
    assert [v[0] for v in views] == [0, 42, 84] and views[-1][-1] == 99
    assert sampler(6, training=False)[0] == [0, 5, 5, 5]  # a video shorter than the span repeats its last frame


# ---- transforms -----------------------------------------------------------------------------------------------


def test_train_transform_is_consistent_across_frames():
    frames = torch.from_numpy(render(0, random.Random(0), SynthSpec(size=48, frames=6))[0])  # (T, H, W, 3)
    frames[:] = frames[:1]  # all frames identical -> all outputs identical if parameters are shared
    out = TrainTransform(size=32, rand_augment=(2, 9))(frames, random.Random(3))
    assert out.shape == (6, 3, 32, 32) and out.dtype == torch.uint8
    assert all(torch.equal(out[0], out[t]) for t in range(6))


def train_clip(transform: TrainTransform, frames, rng: random.Random) -> torch.Tensor:
    """The float clip ``(T, 3, S, S)`` a training step sees, wherever the transform leaves the resize."""
    out = transform(frames, rng)
    return pack_clips([out]).resize()[0] if isinstance(out, ClipCrop) else out.float()


@pytest.mark.parametrize("device_resize", [False, True])
def test_flip_can_be_forbidden(device_resize):
    frames = torch.zeros(2, 32, 32, 3, dtype=torch.uint8)
    frames[..., :8, :] = 255  # a bright left stripe
    never = TrainTransform(size=32, scale=(1, 1), ratio=(1, 1), hflip=False, device_resize=device_resize)
    always_seen = TrainTransform(size=32, scale=(1, 1), ratio=(1, 1), hflip=True, device_resize=device_resize)
    rng = random.Random(0)
    assert all(train_clip(never, frames, rng)[0, 0, :, :8].mean() > 200 for _ in range(20))
    assert any(train_clip(always_seen, frames, rng)[0, 0, :, -8:].mean() > 200 for _ in range(20))


@pytest.mark.parametrize("as_list", [False, True])
def test_a_device_resize_gives_the_workers_clip_and_the_worker_copies_no_pixel(as_list):
    """The default transform cuts the crop out as views of the decoded frames (a tensor, or a list as shards decode
    them); resized and mirrored on the device, it is the clip the worker would have made (to rounding in float)."""
    coarse = torch.rand(4, 3, 5, 7, generator=torch.Generator().manual_seed(0)) * 255
    smooth = torch.nn.functional.interpolate(coarse, size=(40, 56), mode="bicubic") + torch.randn(4, 3, 40, 56) * 8
    frames = smooth.clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).contiguous()  # (T, H, W, 3)
    flips, sides = set(), set()
    for seed in range(8):
        worker = TrainTransform(size=32, device_resize=False)(frames, random.Random(seed))
        crop = TrainTransform(size=32)(list(frames) if as_list else frames, random.Random(seed))
        assert isinstance(crop, ClipCrop) and len(crop.frames) == 4
        assert all(f.untyped_storage().data_ptr() == frames.untyped_storage().data_ptr() for f in crop.frames)
        packed = pack_clips([crop])
        assert torch.equal(packed.resize()[0], worker.float())  # on a CPU, the worker's uint8 kernel
        in_float = packed.resize(in_uint8=False)[0]  # as on a GPU
        assert in_float.shape == (4, 3, 32, 32) and (in_float - worker).abs().max() <= 1.01  # the worker rounds
        flips.add(crop.flip)
        sides.add(crop.frames[0].shape[0] > 32)
    assert flips == {False, True} and sides == {False, True}  # mirrored and not, enlarged and shrunk
    with pytest.raises(ValueError, match="rand_augment .* device_resize"):
        TrainTransform(size=32, rand_augment=(2, 9), device_resize=True)
    assert not TrainTransform(size=32, rand_augment=(2, 9)).device_resize  # RandAugment resizes in the worker


def test_eval_three_crops_cover_the_long_side():
    frames = torch.arange(64, dtype=torch.uint8).repeat(2, 32, 1)[..., None].expand(2, 32, 64, 3)  # column index
    crops = EvalTransform(size=32, crops=3)(frames)
    assert crops.shape == (3, 2, 3, 32, 32)
    assert [int(c[0, 0, 0, 0]) for c in crops] == [0, 16, 32]


def test_eval_squash_keeps_the_whole_frame():
    """SigLIP's evaluation resize: the whole 2:1 frame squashed into the square, the first and last columns kept."""
    from torchvision.transforms.v2 import functional as TF

    frames = torch.arange(64, dtype=torch.uint8).repeat(2, 32, 1)[..., None].expand(2, 32, 64, 3).contiguous()
    views = EvalTransform(size=32, resize="squash")(frames)
    assert views.shape == (1, 2, 3, 32, 32) and channels_last(views)
    assert int(views[0, 0, 0, 0, 0]) <= 1 and int(views[0, 0, 0, 0, -1]) >= 62  # both ends of the long side
    assert torch.equal(views[0], TF.resize(frames.permute(0, 3, 1, 2), [32, 32], antialias=True))
    for wrong in (dict(crops=3), dict(short_side=40)):
        with pytest.raises(ValueError, match="squash .*1 view, no short side"):
            EvalTransform(size=32, resize="squash", **wrong)


def channels_last(clips: torch.Tensor) -> bool:
    """Whether ``(..., 3, S, S)`` clips lie in memory as ``(..., S, S, 3)``, densely."""
    return clips.movedim(-3, -1).is_contiguous()


def test_transforms_keep_the_decoders_memory_order_and_its_values():
    from torchvision.transforms.v2 import functional as TF

    frames = torch.randint(0, 256, (4, 40, 56, 3), dtype=torch.uint8)  # (T, H, W, 3) as decoded
    train = TrainTransform(size=32, hflip=False, device_resize=False)
    out = train(frames, random.Random(5))
    top, left, h, w = train.crop_params(40, 56, random.Random(5))
    planar = frames.permute(0, 3, 1, 2).contiguous()  # the layout the kernels used to get
    assert channels_last(out) and out.shape == (4, 3, 32, 32)
    assert torch.equal(out, TF.resized_crop(planar, top, left, h, w, [32, 32], antialias=True))
    for crops in (1, 3):
        views = EvalTransform(size=32, crops=crops)(frames)
        assert channels_last(views) and views.shape == (crops, 4, 3, 32, 32)
        resized = TF.resize(planar, 32, antialias=True)
        assert torch.equal(views[crops // 2], TF.center_crop(resized, [32, 32]))  # the middle crop is the centre


def test_batches_stay_channels_last_in_and_out_of_workers(synth_root):
    from lit_i2v.data.loading.dataset import collate_clips

    dm = VideoDataModule(train=str(synth_root / "train.json"), val=str(synth_root / "validation.json"),
                         root=str(synth_root / "videos"), annotations=Labels(str(synth_root / "labels.json")),
                         sampler=UniformSampler(4, test_clips=2), train_transform=TrainTransform(size=32),
                         eval_transform=EvalTransform(size=32, crops=3), batch_size=3, num_workers=1)  # fmt: skip
    dm.setup("fit")
    batch = next(iter(dm.val_dataloader()))  # collated in a worker, into shared memory
    dataset = dm.datasets["val"]
    expected = torch.stack([dataset[i]["video"].contiguous() for i in batch["index"].tolist()])
    assert channels_last(batch["video"]) and torch.equal(batch["video"], expected)
    assert torch.equal(collate_clips([dataset[i] for i in batch["index"].tolist()])["video"], expected)

    batch = next(iter(dm.train_dataloader()))  # training crops, packed in a worker for the device to resize
    packed, dataset = batch["video"], dm.datasets["train"]
    local = collate_clips([dataset[i] for i in batch["index"].tolist()])["video"]  # packed in this process
    assert isinstance(packed, PackedClips) and in_shared_memory(packed.data) and packed.shape == (3, 4, 3, 32, 32)
    assert torch.equal(packed.data, local.data) and torch.equal(packed.sizes, local.sizes)
    assert torch.equal(packed.flip, local.flip)
    for clip, index in zip(packed.resize(), batch["index"].tolist(), strict=True):
        assert torch.equal(clip, pack_clips([dataset[index]["video"]]).resize()[0])


# ---- decoding -------------------------------------------------------------------------------------------------


def test_decord_and_pyav_return_the_same_frames(tmp_path):
    path = numbered_video(tmp_path / "n.mp4")
    wanted = [0, 3, 3, 19, 7]
    decord_frames = open_video(path, "decord").get_frames(wanted)
    pyav_reader = open_video(path, "pyav")
    assert pyav_reader.num_frames == 20
    pyav_frames = pyav_reader.get_frames(wanted)
    assert frame_index(decord_frames) == wanted == frame_index(pyav_frames)
    assert (decord_frames.int() - pyav_frames.int()).abs().max() <= 2


def test_unreadable_files_raise_decode_error_naming_the_path(tmp_path):
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"\x00not a video" * 100)
    with pytest.raises(DecodeError, match="junk.mp4"):
        open_video(junk)
    with pytest.raises(DecodeError, match="file not found"):
        open_video(tmp_path / "absent.mp4")


def _block_torchcodec(monkeypatch) -> None:
    """Any import of torchcodec, or of a module of it imported before, raises ImportError."""
    for name in [name for name in sys.modules if name.split(".")[0] == "torchcodec"] + ["torchcodec"]:
        monkeypatch.setitem(sys.modules, name, None)


@pytest.fixture
def torchvision_codec(monkeypatch):
    """The image coding as it is where torchcodec is not installed."""
    _block_torchcodec(monkeypatch)
    images._codec.cache_clear()
    yield
    images._codec.cache_clear()


def _picture(seed: int, height: int = 40, width: int = 56) -> torch.Tensor:
    """A smooth uint8 (3, H, W) picture: a gradient with a little noise, something JPEG keeps close to."""
    g = torch.Generator().manual_seed(seed)
    ramp = torch.linspace(0, 200, width).expand(3, height, width)
    return (ramp + 6 * torch.rand(3, height, width, generator=g)).to(torch.uint8)


def _tensors(jpegs: list[bytes]) -> list[torch.Tensor]:
    return [torch.frombuffer(bytearray(jpeg), dtype=torch.uint8) for jpeg in jpegs]


def _coded(pictures: list[torch.Tensor]) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    jpegs = [images.encode_jpeg(p, 95) for p in pictures]
    return jpegs, images.decode_jpegs(jpegs)


def test_jpeg_coding_round_trips_in_the_decoders_memory_order():
    pictures = [_picture(0), _picture(1, 24, 32)]
    jpegs, decoded = _coded(pictures)
    for picture, jpeg, image in zip(pictures, jpegs, decoded, strict=True):
        assert jpeg.dtype == torch.uint8 and jpeg.dim() == 1 and bytes(jpeg[:2].tolist()) == b"\xff\xd8"
        assert image.shape == picture.shape and (image.int() - picture.int()).abs().float().mean() < 4
        assert image.permute(1, 2, 0).is_contiguous()  # (H, W, 3) memory: what the shards' crops rely on


def test_torchcodec_and_torchvision_code_images_alike(monkeypatch):
    pytest.importorskip("torchcodec")
    pictures = [_picture(2), _picture(3, 24, 32)]
    images._codec.cache_clear()
    assert images.codec() == "torchcodec"
    by_torchcodec = _coded(pictures)
    _block_torchcodec(monkeypatch)  # as where it is not installed
    images._codec.cache_clear()
    assert images.codec() == "torchvision"
    by_torchvision = _coded(pictures)
    images._codec.cache_clear()
    for coded, again in zip(by_torchcodec, by_torchvision, strict=True):  # the same JPEG bytes, the same pixels
        assert all(torch.equal(a, b) for a, b in zip(coded, again, strict=True))


def test_jpeg_size_reads_the_frame_header():
    for height, width in [(40, 56), (17, 300), (1, 1)]:
        jpeg = images.encode_jpeg(torch.zeros(3, height, width, dtype=torch.uint8), 90).numpy().tobytes()
        assert images.jpeg_size(jpeg) == (height, width) == tuple(images.decode_jpegs(_tensors([jpeg]))[0].shape[1:])
    with pytest.raises(ValueError, match="not a JPEG .it does not start with a start-of-image marker"):
        images.jpeg_size(b"\x89PNG\r\n\x1a\n")
    with pytest.raises(ValueError, match="not a JPEG .no frame header"):
        images.jpeg_size(jpeg[:20])  # cut before its frame header


def test_without_torchcodec_torchvision_codes_images_without_deprecation_warnings(torchvision_codec, tmp_path):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert images.codec() == "torchvision"
        _, (image,) = _coded([_picture(4)])
        images.write_png(image, tmp_path / "a.png")
    assert not [w for w in caught if issubclass(w.category, DeprecationWarning)], [str(w.message) for w in caught]
    assert (tmp_path / "a.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_rawframes_folder(tmp_path):
    folder = tmp_path / "clip1"
    folder.mkdir()
    for i in range(12):
        image = torch.full((3, 16, 16), 10 * i, dtype=torch.uint8)
        (folder / f"img_{i + 1:05d}.jpg").write_bytes(images.encode_jpeg(image, 100).numpy().tobytes())
    (tmp_path / "list.txt").write_text("clip1 12 3\n")
    (record,) = read_annotations(tmp_path / "list.txt", tmp_path)
    assert record.num_frames == 12 and record.label == 3
    frames = open_video(record.path, num_frames=record.num_frames).get_frames([0, 11])
    assert frame_index(frames) == [0, 11]


# ---- annotation formats ---------------------------------------------------------------------------------------


def test_list_format_and_errors_name_the_line(tmp_path):
    ann = tmp_path / "train_list.txt"
    ann.write_text("a/x.mp4 3\nb/y.mp4 1\n")
    records = read_annotations(ann, "/data")
    assert records == [VideoRecord("/data/a/x.mp4", 3, "x"), VideoRecord("/data/b/y.mp4", 1, "y")]
    ann.write_text("a/x.mp4 3\nb/y.mp4 one\n")
    with pytest.raises(AnnotationError, match=r"train_list.txt:2: expected '<path> <label>'"):
        read_annotations(ann)


def test_ssv2_json(synth_root):
    records = read_annotations(synth_root / "train.json", synth_root / "videos", labels=synth_root / "labels.json")
    items = json.loads((synth_root / "train.json").read_text())
    assert len(records) == len(items) == 32
    first = items[0]
    expected = [t for t, _, _ in CLASSES].index(first["template"])
    assert records[0] == VideoRecord(str(synth_root / "videos" / f"{first['id']}.mp4"), expected, first["id"])


def test_ssv2_unknown_template_is_named(tmp_path, synth_root):
    ann = tmp_path / "bad.json"
    ann.write_text(json.dumps([{"id": "9", "label": "x", "template": "Juggling [something]", "placeholders": []}]))
    with pytest.raises(AnnotationError, match="bad.json: entry 0 \\(id '9'\\)"):
        read_annotations(ann, labels=synth_root / "labels.json")


def test_kinetics_csv(tmp_path):
    ann = tmp_path / "train.csv"
    ann.write_text("label,youtube_id,time_start,time_end,split\nabseiling,abc,10,20,train\nzumba,xyz,0,10,train\n")
    records = read_annotations(ann, "/k400")
    assert records[0] == VideoRecord("/k400/abseiling/abc_000010_000020.mp4", 0, "abc")
    assert records[1].label == 1
    (tmp_path / "bad.csv").write_text("label,youtube_id\nx,y\n")
    with pytest.raises(AnnotationError, match="bad.csv:1: header must contain"):
        read_annotations(tmp_path / "bad.csv")


# ---- datasets -------------------------------------------------------------------------------------------------


def test_corrupt_training_video_is_replaced_and_counted(tmp_path, caplog):
    good = [numbered_video(tmp_path / f"g{i}.mp4") for i in range(3)]
    bad = tmp_path / "corrupt.mp4"
    bad.write_bytes(good[0].read_bytes()[:300])  # a truncated file
    records = [VideoRecord(str(bad), 0, "bad")] + [VideoRecord(str(p), 1, p.stem) for p in good]
    records.append(VideoRecord(str(tmp_path / "missing.mp4"), 0, "missing"))
    ds = VideoClipDataset(records, UniformSampler(4), TrainTransform(size=32), training=True)
    random.seed(0)
    for index in (0, 4):
        sample = ds[index]
        assert sample["skipped"] >= 1 and sample["label"] == 1 and sample["valid"]
    assert "corrupt.mp4" in caplog.text and "missing.mp4" in caplog.text


def test_corrupt_eval_video_is_masked_not_replaced(tmp_path):
    good = numbered_video(tmp_path / "g.mp4")
    records = [VideoRecord(str(tmp_path / "missing.mp4"), 2, "m"), VideoRecord(str(good), 1, "g")]
    ds = VideoClipDataset(records, UniformSampler(4, test_clips=2), EvalTransform(size=32, crops=3), training=False)
    broken, fine = ds[0], ds[1]
    assert not broken["valid"] and broken["video_id"] == "m" and broken["video"].shape == (6, 4, 3, 32, 32)
    assert fine["valid"] and fine["video"].shape == (6, 4, 3, 32, 32)


@pytest.mark.parametrize("n,world", [(7, 2), (5, 3), (1, 2)])
def test_unpadded_sampler_counts_every_item_once(n, world):
    seen = [i for rank in range(world) for i in UnpaddedDistributedSampler(range(n), world, rank)]
    assert sorted(seen) == list(range(n))
    assert sum(len(UnpaddedDistributedSampler(range(n), world, r)) for r in range(world)) == n


def test_datamodule_batches(synth_root):
    dm = VideoDataModule(
        train=str(synth_root / "train.json"),
        val=str(synth_root / "validation.json"),
        root=str(synth_root / "videos"),
        annotations=Labels(str(synth_root / "labels.json")),
        sampler=UniformSampler(4, test_clips=2),
        train_transform=TrainTransform(size=32),
        eval_transform=EvalTransform(size=32, crops=3),
        batch_size=4,
        num_workers=1,
    )
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    assert isinstance(batch["video"], PackedClips) and resized(batch["video"]).shape == (4, 4, 3, 32, 32)
    val = next(iter(dm.val_dataloader()))
    assert val["video"].shape == (4, 6, 4, 3, 32, 32) and val["valid"].all()
    assert dm.class_names()[0] == "Moving something from left to right"


def test_missing_dataset_fails_at_once_naming_the_path(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"data.train: .*nothere/train.json does not exist; see docs/datasets"):
        VideoDataModule(train=str(tmp_path / "nothere" / "train.json"))


def test_synthetic_frames_cannot_tell_reversed_twins():
    """The dataset's premise: a class and its time-reversed twin show the same kind of frames."""
    spec = SynthSpec(size=32, frames=12, distractor=0.0)
    forward, _ = render(0, random.Random(5), spec)  # left -> right
    backward, _ = render(1, random.Random(5), spec)  # right -> left, same random draws
    assert np.array_equal(forward, backward[::-1])


def test_a_clips_augmentation_depends_on_seed_epoch_and_index_only(tmp_path):
    """Each clip draws its frames and crop from (seed, epoch, index): different for each index and epoch, the same
    whichever worker loads it and however many workers there are, and the same again with the seed."""
    video = numbered_video(tmp_path / "v.mp4", frames=24, size=48)
    (tmp_path / "train.txt").write_text(f"{video} 0\n" * 4)  # one video: only augmentation can differ

    def epoch_clips(workers: int, epoch: int = 0, seed: int = 0) -> dict[int, torch.Tensor]:
        dm = VideoDataModule(
            train=str(tmp_path / "train.txt"), annotations=Labels(format="list"), sampler=UniformSampler(4), seed=seed,
            train_transform=TrainTransform(size=32, scale=(0.2, 1.0)), batch_size=1, num_workers=workers,
        )  # fmt: skip
        dm.setup("fit")
        loader = dm.train_dataloader()
        clips = {}
        for _ in range(epoch + 1):  # the loader counts passes as epochs when no trainer is attached
            clips = {int(b["index"][0]): resized(b["video"])[0] for b in loader}
        return clips

    one, two = epoch_clips(0), epoch_clips(2)
    assert one.keys() == two.keys() == {0, 1, 2, 3}
    assert all(torch.equal(one[i], two[i]) for i in one)  # workers do not matter
    assert not torch.equal(one[0], one[1])  # indices differ
    assert not torch.equal(one[0], epoch_clips(0, epoch=1)[0])  # epochs differ
    assert not torch.equal(one[0], epoch_clips(0, seed=1)[0])  # seeds differ
    assert all(torch.equal(one[i], epoch_clips(2)[i]) for i in one)  # reproducible


def test_a_resumed_loader_yields_the_rest_of_the_epoch(tmp_path, synth_root):
    """Told that 3 batches of epoch 1 were trained on, the loader yields exactly the remaining batches of that epoch,
    with the clips an uninterrupted pass gives (files here; shards in test_shards.py)."""
    dm = VideoDataModule(
        train=str(synth_root / "train.json"), root=str(synth_root / "videos"),
        annotations=Labels(str(synth_root / "labels.json"), "ssv2"), sampler=UniformSampler(4),
        train_transform=TrainTransform(size=32), batch_size=4, num_workers=2,
    )  # fmt: skip
    dm.setup("fit")
    loader = dm.train_dataloader()
    epochs = [[(b["index"].tolist(), resized(b["video"])) for b in loader] for _ in range(2)]
    assert len(epochs[1]) == 8 and [i for i, _ in epochs[0]] != [i for i, _ in epochs[1]]
    resumed = dm.train_dataloader()
    resumed.load_state_dict({"epoch": 1, "batches": 3})
    resumed._passes = 1  # the next pass is epoch 1, as the trainer would say
    rest = [(b["index"].tolist(), resized(b["video"])) for b in resumed]
    assert [i for i, _ in rest] == [i for i, _ in epochs[1][3:]]
    assert all(torch.equal(a, b) for (_, a), (_, b) in zip(rest, epochs[1][3:], strict=True))
    assert len(list(resumed)) == 8  # the skip applies to the resumed epoch only; the next one is whole


def test_auto_backend_decodes_what_decord_rejects(tmp_path):
    """decord 0.6 fails on 48-px-wide frames; ``auto`` decodes the same frames with PyAV instead of losing the clip."""
    video = numbered_video(tmp_path / "v.mp4", frames=20, size=48)
    frames = open_video(video, "auto").get_frames([0, 5, 19])
    assert frames.shape == (3, 48, 48, 3) and frame_index(frames) == [0, 5, 19]


def test_preprocess_reencodes_with_short_keyframe_interval_and_resumes(tmp_path, capsys):
    """Videos keep their relative paths under --out (the annotation file stays valid), at the short side asked,
    with a keyframe every --gop frames and no B-frames; a second run skips what exists; a broken file is listed."""
    import av

    from lit_i2v.cli import main

    root = tmp_path / "videos"
    frames = render(0, random.Random(0), SynthSpec(size=64, frames=24))[0][:, 8:56]  # smooth motion, 48 x 64
    write_video(root / "a" / "one.mp4", np.ascontiguousarray(frames), fps=10)
    (root / "b").mkdir()
    (root / "b" / "two.mp4").write_bytes(b"not a video")
    (tmp_path / "train.txt").write_text("a/one.mp4 0\nb/two.mp4 1\n")
    args = ["preprocess", "--config", str(ROOT / "configs" / "quickstart.yaml"), "--data=lit_i2v.data.VideoDataModule",
            "--data.synthetic=null", f"--data.train={tmp_path / 'train.txt'}", f"--data.root={root}",
            "--data.annotations.format=list", "--out", str(tmp_path / "out"), "--short-side", "32", "--gop", "4",
            "--workers", "1"]  # fmt: skip
    assert main(args) == 1  # one failure, reported
    out = capsys.readouterr().out
    assert "1 written, 0 already there, 1 failed" in out and "two.mp4" in out
    result = tmp_path / "out" / "a" / "one.mp4"
    with av.open(str(result)) as container:
        stream = container.streams.video[0]
        assert (stream.codec_context.width, stream.codec_context.height) == (42, 32)  # short side 32, even sides
        keyframes = [i for i, packet in enumerate(container.demux(stream)) if packet.is_keyframe]
    assert keyframes[:3] == [0, 4, 8]  # (the source was written with a keyframe every 12)
    assert open_video(result).num_frames == 24
    main(args)
    assert "0 written, 1 already there" in capsys.readouterr().out  # resumable
