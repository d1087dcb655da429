"""Damaged and rotated videos: every path that decodes (decord, PyAV, auto, check-data, training, preprocess, shards)
refuses a file cut short and returns a rotated file's frames upright, on small generated files."""

from __future__ import annotations

import re
import struct
import tarfile
from pathlib import Path
from types import SimpleNamespace

import av
import numpy as np
import pytest
import torch

from lit_i2v.check_data import check_split, format_report
from lit_i2v.data import DecodeError, TrainTransform, UniformSampler, VideoClipDataset, VideoRecord, open_video
from lit_i2v.data.shards import ShardSpec, write_shards
from lit_i2v.data.video.decode import DamagedVideoError
from lit_i2v.data.video.images import decode_jpegs
from lit_i2v.preprocess import reencode


def pictures(n: int, height: int = 32, width: int = 64) -> np.ndarray:
    """``(n, H, W, 3)`` frames that tell their index (grey level 30+3i) and their orientation: a red square in the
    top-left corner, a blue bar along the bottom-right."""
    frames = np.stack([np.full((height, width, 3), 30 + 3 * i, np.uint8) for i in range(n)])
    frames[:, :8, :8] = (230, 30, 30)
    frames[:, -8:, -24:] = (30, 30, 230)
    return frames


def write(path: Path, frames: np.ndarray, rotation: int = 0, codec: str = "libx264") -> Path:
    """Encode with PyAV; an mp4 gets its index first (as streaming sites serve them) and no B-frames, so that packet
    i holds frame i; ``rotation`` (counter-clockwise degrees) goes into the container's display matrix."""
    options = {"movflags": "faststart"} if path.suffix == ".mp4" else {}
    with av.open(str(path), "w", options=options) as container:
        stream = container.add_stream(codec, rate=12)
        stream.height, stream.width = frames.shape[1:3]
        stream.pix_fmt = "yuv420p"
        if codec == "libx264":
            stream.options = {"crf": "12", "g": "12", "bf": "0"}
        else:
            stream.bit_rate = 4_000_000  # grey levels intact
        if rotation:
            stream.set_display_rotation(rotation)
        for frame in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def cut(path: Path, keep: int) -> Path:
    """A copy of the video that stops inside frame ``keep``'s data: a download cut short, header intact."""
    with av.open(str(path)) as container:
        packet = [packet for packet in container.demux(video=0) if packet.size][keep]
    out = path.with_name(f"cut-{path.name}")
    out.write_bytes(path.read_bytes()[: packet.pos + packet.size // 2])
    return out


def index_of(frames: torch.Tensor) -> list[int]:
    """Frame indices read back from the grey level of the frames' middle row."""
    return [round((float(f[f.shape[0] // 2, 16:40].float().mean()) - 30) / 3) for f in frames]


@pytest.fixture
def whole(tmp_path) -> Path:
    return write(tmp_path / "whole.mp4", pictures(60))


# ---- damaged files ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("backend", ["pyav", "auto"])
def test_a_file_cut_short_is_damaged_not_a_frozen_clip(whole, backend):
    """PyAV decodes the 24 frames left and stops without an error; decord cannot open the file, so auto falls back
    to PyAV. The frames past the cut used to be the last one repeated."""
    damaged = cut(whole, 24)
    with pytest.raises(DecodeError, match=f"^{re.escape(str(damaged))}: cannot decode \\(decord: "):
        open_video(damaged, "decord")
    reader = open_video(damaged, backend)
    assert reader.num_frames == 60  # what the header declares
    assert index_of(reader.get_frames([0, 12, 23])) == [0, 12, 23]  # the frames before the cut are fine
    message = f"{damaged}: damaged: 24 of 60 declared frames decode"
    with pytest.raises(DamagedVideoError, match=f"^{re.escape(message)}$"):
        reader.get_frames([0, 30, 59])


def test_an_edit_list_that_shows_fewer_frames_is_no_damage(whole):
    """An mp4 cut without re-encoding keeps packets its edit list does not show; FFmpeg presents only the shown
    frames, and the edit list's duration counts them."""
    data = bytearray(whole.read_bytes())
    entry = data.index(b"elst") + 12  # version, flags, entry count; then the first entry's duration (ms)
    assert struct.unpack_from(">I", data, entry)[0] == 5000
    struct.pack_into(">I", data, entry, 4000)  # show 4 s of the 5 s: 48 frames of 60
    shown = whole.with_name("shown.mp4")
    shown.write_bytes(bytes(data))
    reader = open_video(shown, "pyav")
    assert reader.num_frames == 48 and index_of(reader.get_frames([0, 47])) == [0, 47]


@pytest.mark.parametrize("backend", ["auto", "pyav"])
def test_check_data_decodes_the_last_frame_and_reports_damage(whole, backend):
    """The evaluation frames (7, 22, 37, 52) of a file cut after 57 frames decode: only its last frame tells. A
    webm declares no frame count (PyAV counts its frames by decoding): whole, it is fine."""
    damaged = cut(whole, 57)
    webm = write(whole.with_name("whole.webm"), pictures(60), codec="libvpx-vp9")
    sampler = UniformSampler(4)
    assert sampler(60, training=False) == [[7, 22, 37, 52]]
    records = [VideoRecord(str(path), 0, path.name) for path in (whole, damaged, webm)]
    datamodule = SimpleNamespace(records=lambda split: records, sampler=sampler, backend=backend, files={"val": "v"})
    report = check_split(datamodule, "val", workers=1)
    assert report["ok"] == 2 and report["missing"] == []
    assert [(bad["path"], bad["decoded"], bad["declared"]) for bad in report["undecodable"]] == [(str(damaged), 57, 60)]
    text = format_report(report)
    assert "1 undecodable (1 of them damaged)" in text
    assert f"damaged      {damaged}: 57 of 60 declared frames decode" in text


def test_training_replaces_a_damaged_video_and_names_it(whole, caplog):
    damaged = cut(whole, 24)
    records = [VideoRecord(str(damaged), 0, "damaged"), VideoRecord(str(whole), 1, "whole")]
    dataset = VideoClipDataset(records, UniformSampler(4), TrainTransform(size=32), training=True)
    sample = dataset[0]  # the last of 4 segments lies past the cut, whatever frame training draws in it
    assert sample["skipped"] == 1 and sample["video_id"] == "whole" and sample["valid"]
    assert f"skipping {damaged}: {damaged}: damaged: 24 of 60 declared frames decode" in caplog.text


@pytest.mark.parametrize("mode", ["frames", "video"])
def test_shard_refuses_a_damaged_video(whole, tmp_path, mode):
    """Cut after 57 frames, the 4 stored frames (7, 22, 37, 52) decode: the writer checks the last one too."""
    records = [VideoRecord(str(whole), 0, "whole"), VideoRecord(str(cut(whole, 57)), 1, "damaged")]
    index = write_shards({"val": records}, tmp_path / "shards", ShardSpec(mode=mode, frames=4), workers=1)
    split = index["splits"]["val"]
    assert split["samples"] == 1
    assert split["failed"] == [f"{records[1].path}: damaged: 57 of 60 declared frames decode"]


def test_preprocess_refuses_a_damaged_video_and_leaves_nothing(whole, tmp_path):
    out = tmp_path / "out"
    with pytest.raises(DamagedVideoError, match="24 of 60 declared frames decode"):
        reencode(cut(whole, 24), out / "v.mp4")
    assert list(out.iterdir()) == []


# ---- rotation ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name,rotation", [("r.mp4", 90), ("r.mp4", -90), ("r.mp4", 180), ("r.mkv", 90)])
def test_rotated_videos_decode_upright_on_every_backend(tmp_path, name, rotation):
    """decord 0.6 turns mp4 frames by their display matrix but not Matroska's; PyAV turns neither by itself."""
    frames = pictures(6)
    path = write(tmp_path / name, frames, rotation)
    expected = torch.from_numpy(np.rot90(frames, rotation // 90, axes=(1, 2)).copy()).int()
    decoded = {backend: open_video(path, backend).get_frames(list(range(6))).int() for backend in ("decord", "pyav")}
    decoded["auto"] = open_video(path, "auto").get_frames(list(range(6))).int()
    for backend, got in decoded.items():
        assert got.shape == expected.shape, backend
        assert (got - expected).abs().float().mean() < 3, backend
        assert (got - decoded["decord"]).abs().max() <= 2, backend


def test_preprocess_writes_rotated_videos_upright_without_rotation(tmp_path):
    source = write(tmp_path / "r.mp4", pictures(6), rotation=-90)  # a phone's portrait video: turned clockwise
    upright = open_video(source, "pyav").get_frames(list(range(6))).int()  # (6, 64, 32, 3)
    reencode(source, tmp_path / "same.mp4", short_side=320)
    with av.open(str(tmp_path / "same.mp4")) as container:
        assert next(container.decode(video=0)).rotation == 0
    same = open_video(tmp_path / "same.mp4", "pyav").get_frames(list(range(6))).int()
    assert (same - upright).abs().float().mean() < 3
    reencode(source, tmp_path / "small.mp4", short_side=16)  # the short side is the upright width
    with av.open(str(tmp_path / "small.mp4")) as container:
        assert (container.streams.video[0].width, container.streams.video[0].height) == (16, 32)


def test_frame_shards_store_rotated_videos_upright(tmp_path):
    source = write(tmp_path / "r.mkv", pictures(6), rotation=90)
    records = [VideoRecord(str(source), 0, "r")]
    write_shards({"val": records}, tmp_path / "shards", ShardSpec(frames=2, short_side=0), workers=1)
    with tarfile.open(tmp_path / "shards" / "val-000000.tar") as tar:
        jpeg = tar.extractfile(next(m for m in tar.getmembers() if m.name.endswith(".jpg"))).read()
    stored = decode_jpegs([torch.frombuffer(bytearray(jpeg), dtype=torch.uint8)])[0]
    assert stored.shape == (3, 64, 32)
    red = stored[0].float() - stored[2].float()  # the red square: top-left before a quarter turn, bottom-left after
    assert red[-8:, :8].mean() > 100 and red[:8, :8].abs().mean() < 20
