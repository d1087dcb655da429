"""Decoding only the frames a clip needs, from video files (decord, PyAV) or folders of JPEG frames.

A reader is opened inside the DataLoader worker that uses it (never in the parent process, where decord's threads
would not survive the fork) and returns uint8 frames ``(T, H, W, 3)``. ``backend="auto"`` uses decord and falls back
to PyAV for a file decord cannot open or decode (decord 0.6 rejects some frame widths, e.g. 48 px), so an odd file
costs speed rather than a sample.

Every path returns the same frames:

- **Upright**: frames are turned as the container's display matrix says (a phone's portrait video), as players and
  decord show them. Like decord, only the rotation is applied, not a mirroring (rare).
- **Whole**: a video whose wanted frames do not all decode raises :class:`DamagedVideoError`. A file cut short keeps
  a header that declares every frame (an mp4 with its index first); decord 0.6 then fails to open it (or, cut in
  its last packet, to decode its end; cut exactly between two packets, it reads a shorter video that is whole),
  while PyAV decodes the frames that are left and stops without an error: repeating the last of them trained on a
  frozen clip without a word. Every file PyAV writes (H.264, MPEG-4, VP8, VP9 in mp4, mov, avi, mkv, webm) decodes
  exactly the frames it declares, so no tolerance is allowed.
"""

from __future__ import annotations

import io
import logging
from pathlib import Path
from typing import Literal, Protocol

import numpy as np
import torch
from torch import Tensor

from lit_i2v.data.video.images import decode_jpegs

Backend = Literal["auto", "decord", "pyav"]
log = logging.getLogger(__name__)


class DecodeError(RuntimeError):
    """A video that is missing or cannot be decoded; the message starts with its path."""


class DamagedVideoError(DecodeError):
    """A video whose header declares more frames than its data holds: a download or copy cut short."""

    def __init__(self, path: str, decoded: int, declared: int) -> None:
        super().__init__(f"{path}: damaged: {decoded} of {declared} declared frames decode")
        self.path, self.decoded, self.declared = path, decoded, declared

    def __reduce__(self):  # picklable across processes despite the custom signature
        return type(self), (self.path, self.decoded, self.declared)


class VideoReader(Protocol):
    num_frames: int
    fps: float

    def get_frames(self, indices: list[int]) -> Tensor:
        """uint8 frames ``(len(indices), H, W, 3)``; indices may repeat and need not be sorted."""
        ...


def _source(path: str, data: bytes | None):
    """What a decoder opens: the file, or the bytes of one read from a shard."""
    return io.BytesIO(data) if data is not None else path


def upright(frame) -> np.ndarray:
    """An ``av.VideoFrame`` as rgb24 ``(H, W, 3)``, turned by its display matrix's rotation (counter-clockwise)."""
    image = frame.to_ndarray(format="rgb24")
    turns = round(frame.rotation / 90) % 4
    return np.rot90(image, turns) if turns else image


def declared_frames(container, stream) -> int:
    """The frame count the container declares; 0 when it declares none (mkv, webm).

    An mp4 can hold frames its edit list does not show (a cut made without re-encoding keeps the packets around
    it): FFmpeg presents only those the list shows, and the stream's duration is the list's, so the duration at the
    average rate (which FFmpeg derives from the full track) bounds the count."""
    frames = stream.frames
    if frames and "mov" in container.format.name and stream.duration and stream.average_rate:
        shown = round(stream.duration * stream.time_base * stream.average_rate)
        frames = min(frames, shown) or frames
    return frames


# Matroska: the file's first bytes, and the element IDs on the way to a video track's Projection (its rotation)
_EBML_MAGIC = b"\x1a\x45\xdf\xa3"
_SEGMENT, _TRACKS, _TRACK_ENTRY, _VIDEO, _PROJECTION, _CLUSTER = 0x18538067, 0x1654AE6B, 0xAE, 0xE0, 0x7670, 0x1F43B675


def _has_projection(head: bytes) -> bool:
    """Whether the start of a Matroska file (mkv, webm) gives a video track a Projection, before its first frames."""
    if not head.startswith(_EBML_MAGIC):
        return False
    pos = 0
    while pos < len(head) and head[pos]:
        ident_len = 9 - head[pos].bit_length()  # EBML variable-length integers: leading zeros give the length
        ident = int.from_bytes(head[pos : pos + ident_len], "big")
        pos += ident_len
        if pos >= len(head) or not head[pos]:
            return False
        size_len = 9 - head[pos].bit_length()
        size = int.from_bytes(head[pos : pos + size_len], "big") & ((1 << (7 * size_len)) - 1)
        pos += size_len
        if ident == _PROJECTION:
            return True
        if ident == _CLUSTER:
            return False
        if ident not in (_SEGMENT, _TRACKS, _TRACK_ENTRY, _VIDEO):  # step into these, over the rest
            pos += size
    return False


def _matroska_turns(path: str, data: bytes | None) -> int:
    """Quarter turns (counter-clockwise) that decord leaves undone on this file: decord's FFmpeg (4.1) reads the
    rotation of mp4 and mov but not Matroska's, which PyAV's (8.1) reads. Only a file with a Projection pays for
    asking PyAV."""
    if data is not None:
        head = data[:65536]
    else:
        with open(path, "rb") as file:
            head = file.read(4)
            head += file.read(65532) if head == _EBML_MAGIC else b""
    if not _has_projection(head):
        return 0
    import av

    with av.open(_source(path, data)) as container:
        frame = next(container.decode(video=0))
        return round(frame.rotation / 90) % 4


class DecordReader:
    def __init__(self, path: str, data: bytes | None = None) -> None:
        import decord

        # One thread per reader: parallelism comes from DataLoader workers, and decord's default (all cores in
        # every worker) oversubscribes the CPU.
        self._path = path
        self._reader = decord.VideoReader(_source(path, data), num_threads=1)
        self.num_frames = len(self._reader)
        self.fps = float(self._reader.get_avg_fps())
        self._turns = _matroska_turns(path, data)

    def get_frames(self, indices: list[int]) -> Tensor:
        unique = sorted(set(indices))
        try:
            frames = self._reader.get_batch(unique).asnumpy()  # (U, H, W, 3)
        except Exception as err:  # DECORDError: a damaged file, or one of the frame sizes decord 0.6 rejects
            raise DecodeError(f"{self._path}: decord fails on frames {unique[0]}-{unique[-1]}: {err}") from err
        where = {frame: row for row, frame in enumerate(unique)}
        frames = frames[[where[i] for i in indices]]
        if self._turns:
            frames = np.ascontiguousarray(np.rot90(frames, self._turns, axes=(1, 2)))
        return torch.from_numpy(frames)


class PyAVReader:
    """Decodes sequentially from the start up to the last wanted frame: slower than decord, but reads anything
    FFmpeg reads."""

    def __init__(self, path: str, data: bytes | None = None) -> None:
        import av

        self._path, self._data = path, data
        with av.open(_source(path, data)) as container:
            stream = container.streams.video[0]
            self.fps = float(stream.average_rate or 0) or 30.0
            self.num_frames = declared_frames(container, stream) or sum(1 for _ in container.decode(stream))

    def get_frames(self, indices: list[int]) -> Tensor:
        import av

        wanted = set(indices)
        last = max(indices)
        found: dict[int, np.ndarray] = {}
        decoded = 0
        with av.open(_source(self._path, self._data)) as container:
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            try:
                for i, frame in enumerate(container.decode(stream)):
                    decoded = i + 1
                    if i in wanted:
                        found[i] = upright(frame)
                    if i >= last:
                        break
            except av.FFmpegError:  # data cut short or corrupt: decoding ends here (on threads it ends silently)
                pass
        if len(found) < len(wanted):
            raise DamagedVideoError(self._path, decoded, self.num_frames)
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
    path: str | Path,
    backend: Backend = "auto",
    num_frames: int | None = None,
    data: bytes | None = None,
    first_frame: int = 1,
) -> VideoReader:
    """Open a video file, or a frame folder when ``num_frames`` is given (rawframes, whose first frame file is
    numbered ``first_frame``), or the video file's ``data`` (read from a shard; ``path`` then only names it); raise
    :class:`DecodeError`."""
    path = str(path)
    if data is None and num_frames is not None:
        if not Path(path).is_dir():
            raise DecodeError(f"{path}: frame folder not found")
        return FrameFolderReader(path, num_frames, start_index=first_frame)
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
