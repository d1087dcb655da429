"""Decoding only the frames a clip needs, from video files (decord, PyAV) or folders of JPEG frames.

A reader is opened inside the DataLoader worker that uses it (never in the parent process, where decord's threads
would not survive the fork) and returns uint8 frames ``(T, H, W, 3)``. ``backend="auto"`` uses decord and falls back
to PyAV for a file decord cannot open or decode (decord 0.6 rejects some frame widths, e.g. 48 px), so an odd file
costs speed rather than a sample.
"""

from __future__ import annotations

import io
import logging
from pathlib import Path
from typing import Literal, Protocol

import numpy as np
import torch
from torch import Tensor

from lit_i2v.data.images import decode_jpegs

Backend = Literal["auto", "decord", "pyav"]
log = logging.getLogger(__name__)


class DecodeError(RuntimeError):
    """A video that is missing or cannot be decoded; the message starts with its path."""


class VideoReader(Protocol):
    num_frames: int
    fps: float

    def get_frames(self, indices: list[int]) -> Tensor:
        """uint8 frames ``(len(indices), H, W, 3)``; indices may repeat and need not be sorted."""
        ...


def _source(path: str, data: bytes | None):
    """What a decoder opens: the file, or the bytes of one read from a shard."""
    return io.BytesIO(data) if data is not None else path


class DecordReader:
    def __init__(self, path: str, data: bytes | None = None) -> None:
        import decord

        # One thread per reader: parallelism comes from DataLoader workers, and decord's default (all cores in
        # every worker) oversubscribes the CPU.
        self._reader = decord.VideoReader(_source(path, data), num_threads=1)
        self.num_frames = len(self._reader)
        self.fps = float(self._reader.get_avg_fps())

    def get_frames(self, indices: list[int]) -> Tensor:
        unique = sorted(set(indices))
        frames = self._reader.get_batch(unique).asnumpy()  # (U, H, W, 3)
        where = {frame: row for row, frame in enumerate(unique)}
        return torch.from_numpy(frames[[where[i] for i in indices]])


class PyAVReader:
    """Decodes sequentially from the start up to the last wanted frame: slower than decord, but reads anything
    FFmpeg reads."""

    def __init__(self, path: str, data: bytes | None = None) -> None:
        import av

        self._path, self._data = path, data
        with av.open(_source(path, data)) as container:
            stream = container.streams.video[0]
            self.fps = float(stream.average_rate or 0) or 30.0
            self.num_frames = stream.frames or sum(1 for _ in container.decode(stream))

    def get_frames(self, indices: list[int]) -> Tensor:
        import av

        wanted = set(indices)
        last = max(indices)
        found: dict[int, np.ndarray] = {}
        with av.open(_source(self._path, self._data)) as container:
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            for i, frame in enumerate(container.decode(stream)):
                if i in wanted:
                    found[i] = frame.to_ndarray(format="rgb24")
                if i >= last:
                    break
        if len(found) < len(wanted):
            # The container's frame count overstated the stream: repeat the last decoded frame, as decord does.
            if not found:
                raise DecodeError(f"{self._path}: no frame could be decoded")
            tail = found[max(found)]
            found.update({i: tail for i in wanted - found.keys()})
        return torch.from_numpy(np.stack([found[i] for i in indices]))


class FallbackReader:
    """decord first; if it fails on this file's frames (decord rejects some frame widths), PyAV for the rest."""

    def __init__(self, primary: DecordReader, path: str, data: bytes | None = None) -> None:
        self.primary, self.path, self.data = primary, path, data
        self.num_frames, self.fps = primary.num_frames, primary.fps

    def get_frames(self, indices: list[int]) -> Tensor:
        try:
            return self.primary.get_frames(indices)
        except Exception as err:  # DECORDError: decode the same frames with PyAV instead
            log.debug("decord failed on %s (%s); decoding with PyAV", self.path, err)
            fallback = PyAVReader(self.path, self.data)
            fallback.num_frames = self.num_frames  # the same frame indices
            return fallback.get_frames(indices)


class FrameFolderReader:
    """mmaction2's rawframes layout: ``dir/img_00001.jpg ...`` (1-based), decoded with libjpeg-turbo."""

    def __init__(self, path: str, num_frames: int, template: str = "img_{:05d}.jpg", start_index: int = 1) -> None:
        self._dir = Path(path)
        self._template, self._start = template, start_index
        self.num_frames, self.fps = num_frames, 30.0

    def get_frames(self, indices: list[int]) -> Tensor:
        files = [self._dir / self._template.format(i + self._start) for i in indices]
        jpegs = [torch.frombuffer(bytearray(file.read_bytes()), dtype=torch.uint8) for file in files]
        return torch.stack([image.permute(1, 2, 0) for image in decode_jpegs(jpegs)])


def open_video(
    path: str | Path, backend: Backend = "auto", num_frames: int | None = None, data: bytes | None = None
) -> VideoReader:
    """Open a video file, or a frame folder when ``num_frames`` is given (rawframes), or the video file's ``data``
    (read from a shard; ``path`` then only names it); raise :class:`DecodeError`."""
    path = str(path)
    if data is None and num_frames is not None:
        if not Path(path).is_dir():
            raise DecodeError(f"{path}: frame folder not found")
        return FrameFolderReader(path, num_frames)
    if data is None and not Path(path).is_file():
        raise DecodeError(f"{path}: file not found")
    errors = []
    for name in ["decord", "pyav"] if backend == "auto" else [backend]:
        try:
            reader = DecordReader(path, data) if name == "decord" else PyAVReader(path, data)
        except ImportError as err:
            errors.append(f"{name}: not installed ({err})")
            continue
        except Exception as err:  # decord raises DECORDError, PyAV raises av.error.*: both mean "cannot decode"
            errors.append(f"{name}: {err}")
            continue
        if reader.num_frames < 1:
            errors.append(f"{name}: no frames")
            continue
        return FallbackReader(reader, path, data) if backend == "auto" and name == "decord" else reader
    raise DecodeError(f"{path}: cannot decode ({'; '.join(errors)})")
