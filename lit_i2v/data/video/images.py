"""JPEG and PNG coding: torchcodec's where it is installed and loads, else torchvision's.

torchvision 0.29 deprecates its image coding in favour of torchcodec's (0.16 on), with a ``DeprecationWarning`` on
every call (about 1% of a worker's time on JPEG shards). Both wrap libjpeg-turbo: on our shards torchcodec decodes
the same pixels at the same speed, and encodes the same bytes. torchcodec is optional (``pip install
lit_i2v[torchcodec]``): each of its wheels is built for one torch version and pip does not check which, so it is not
forced on every install. Without it, or where it does not load, torchvision's functions run with their deprecation
warning silenced. ``codec()`` names the one in use.
"""

from __future__ import annotations

import functools
import logging
import struct
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import NamedTuple

import torch
from torch import Tensor

log = logging.getLogger(__name__)


class Codec(NamedTuple):
    name: str
    decode_jpegs: Callable[[list[Tensor], torch.device], list[Tensor]]
    encode_jpeg: Callable[[Tensor, int], Tensor]
    write_png: Callable[[Tensor, str], None]


def decode_jpegs(data: Sequence[Tensor], device: torch.device | str = "cpu") -> list[Tensor]:
    """JPEGs (1-D uint8 tensors of their bytes, in CPU memory) as RGB uint8 ``(3, H, W)`` tensors on ``device``: on
    a CPU, views of ``(H, W, 3)`` memory; on a GPU, decoded there by nvJPEG, as one batch."""
    return _codec().decode_jpegs(list(data), torch.device(device))


def jpeg_size(data: bytes) -> tuple[int, int]:
    """``(height, width)`` of a JPEG, read from its frame header without decoding it."""
    if data[:2] != b"\xff\xd8":
        raise ValueError("not a JPEG (it does not start with a start-of-image marker)")
    i = 2
    while i + 9 <= len(data):
        if data[i] != 0xFF:
            raise ValueError(f"not a JPEG (no marker at byte {i})")
        marker = data[i + 1]
        if marker == 0xFF:  # a fill byte
            i += 1
        elif 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):  # a start of frame (not DHT, JPG, DAC)
            height, width = struct.unpack(">HH", data[i + 5 : i + 9])
            return height, width
        else:
            i += 2 + struct.unpack(">H", data[i + 2 : i + 4])[0]  # a segment: skip its length
    raise ValueError("not a JPEG (no frame header)")


def encode_jpeg(image: Tensor, quality: int) -> Tensor:
    """A uint8 ``(3, H, W)`` (or ``(1, H, W)``) image as the bytes of a JPEG (a 1-D uint8 tensor)."""
    return _codec().encode_jpeg(image, quality)


def write_png(image: Tensor, path: str | Path) -> None:
    """Write a uint8 ``(C, H, W)`` image (C = 1 or 3) to ``path`` as a PNG."""
    _codec().write_png(image, str(path))


def codec() -> str:
    """``"torchcodec"`` or ``"torchvision"``: whose functions this process uses."""
    return _codec().name


@functools.cache
def _codec() -> Codec:
    try:
        chosen = _torchcodec()
        _check(chosen)
        return chosen
    except Exception as err:  # not installed (ImportError), or built for another torch (OSError, RuntimeError)
        log.info("torchcodec's image coding is not available (%s); using torchvision's", err)
    return _torchvision()


def _torchcodec() -> Codec:
    from torchcodec.decoders import decode_jpeg
    from torchcodec.encoders import JpegEncoder, PngEncoder

    return Codec(
        "torchcodec",
        lambda data, device: decode_jpeg(data, mode="RGB", device=device),
        lambda image, quality: JpegEncoder(image).to_tensor(quality=quality),
        lambda image, path: PngEncoder(image).to_file(path),
    )


def _torchvision() -> Codec:
    import torchvision.io as tvio

    def quiet(function: Callable) -> Callable:
        @functools.wraps(function)
        def call(*args):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)
                return function(*args)

        return call

    return Codec(
        "torchvision",
        quiet(lambda data, device: tvio.decode_jpeg(data, mode=tvio.ImageReadMode.RGB, device=device)),
        quiet(lambda image, quality: tvio.encode_jpeg(image, quality=quality)),
        quiet(lambda image, path: tvio.write_png(image, path)),
    )


def _check(chosen: Codec) -> None:
    """A round trip of a tiny image: a library that imports may still fail to load its compiled part."""
    image = torch.zeros(3, 8, 8, dtype=torch.uint8)
    if chosen.decode_jpegs([chosen.encode_jpeg(image, 90)], torch.device("cpu"))[0].shape != image.shape:
        raise RuntimeError(f"{chosen.name}: a JPEG round trip changed the image's shape")
