"""Read the parameters of a TorchScript archive without running any of its code.

OpenAI released CLIP as TorchScript archives (``ViT-B-16.pt``), which ``torch.jit.load`` would execute. The archive
is a zip whose ``data.pkl`` pickles the module tree: scripted modules as ``__torch__.*`` classes whose state is a
dict of attributes, and tensors through ``torch._utils._rebuild_tensor_v2`` with storages in ``data/<key>``. This
reader unpickles that tree with a whitelist (module placeholders, tensor rebuilds, storage types, OrderedDict) and
collects every tensor attribute under its dotted path, which is the module's ``state_dict``. Anything else in the
pickle raises :class:`UnreadableArchive` naming the global, instead of being executed.
"""

from __future__ import annotations

import pickle
import zipfile
from collections import OrderedDict
from pathlib import Path

import torch
from torch import Tensor


class UnreadableArchive(RuntimeError):
    """The archive holds something other than modules and tensors, so it cannot be read without running code."""


class _ScriptModule:
    """Stands in for a ``__torch__.*`` class: keeps the attribute dict it is built with, runs nothing."""

    def __init__(self, *args: object) -> None:
        self.attributes: dict[str, object] = {}

    def __setstate__(self, state: object) -> None:
        self.attributes = dict(state) if isinstance(state, dict) else {}


_STORAGE_DTYPES = {
    "FloatStorage": torch.float32,
    "HalfStorage": torch.float16,
    "BFloat16Storage": torch.bfloat16,
    "DoubleStorage": torch.float64,
    "LongStorage": torch.int64,
    "IntStorage": torch.int32,
    "ShortStorage": torch.int16,
    "CharStorage": torch.int8,
    "ByteStorage": torch.uint8,
    "BoolStorage": torch.bool,
}


def _rebuild_tensor(storage, storage_offset, size, stride, *args):
    raw, dtype = storage  # what ``persistent_load`` returned
    flat = torch.frombuffer(raw, dtype=dtype) if raw else torch.empty(0, dtype=dtype)
    return flat.as_strided(size, stride, storage_offset).clone()


class _Unpickler(pickle.Unpickler):
    def __init__(self, file, archive: zipfile.ZipFile, prefix: str, path: Path) -> None:
        super().__init__(file)
        self.archive, self.prefix, self.path = archive, prefix, path

    def find_class(self, module: str, name: str):
        if module.startswith("__torch__"):
            return type(name, (_ScriptModule,), {})
        if (module, name) in {("torch._utils", "_rebuild_tensor_v2"), ("torch._utils", "_rebuild_tensor")}:
            return _rebuild_tensor
        if module == "torch" and name in _STORAGE_DTYPES:
            return _STORAGE_DTYPES[name]
        if (module, name) == ("collections", "OrderedDict"):
            return OrderedDict
        raise UnreadableArchive(
            f"{self.path}: the TorchScript archive refers to {module}.{name}, which cannot be read without running "
            "the archive's code. If you trust the file, convert it once with "
            "`torch.jit.load(path, map_location='cpu').state_dict()` and `torch.save` the state dict."
        )

    def persistent_load(self, pid):
        kind, dtype, key = pid[:3]
        if kind != "storage" or not isinstance(dtype, torch.dtype):
            raise UnreadableArchive(f"{self.path}: unknown storage record {pid!r}")
        return bytearray(self.archive.read(f"{self.prefix}/data/{key}")), dtype


def is_torchscript(path: str | Path) -> bool:
    """True for a zip archive written by ``torch.jit.save`` (it holds TorchScript ``code/``)."""
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as archive:
        return any("/code/" in name for name in archive.namelist())


def read_torchscript_state_dict(path: str | Path) -> dict[str, Tensor]:
    """The ``state_dict`` of a TorchScript archive, read without executing it."""
    path = Path(path)
    with zipfile.ZipFile(path) as archive:
        pkl = next((n for n in archive.namelist() if n.endswith("/data.pkl") and n.count("/") == 1), None)
        if pkl is None:
            raise UnreadableArchive(f"{path}: no data.pkl at the top of the archive; is it a TorchScript file?")
        prefix = pkl.split("/")[0]
        with archive.open(pkl) as f:
            root = _Unpickler(f, archive, prefix, path).load()
    state: dict[str, Tensor] = {}
    _collect(root, "", state)
    if not state:
        raise UnreadableArchive(f"{path}: the archive holds no tensors")
    return state


def _collect(obj: object, prefix: str, out: dict[str, Tensor]) -> None:
    if not isinstance(obj, _ScriptModule):
        return
    for name, value in obj.attributes.items():
        if isinstance(value, Tensor):
            out[prefix + name] = value
        elif isinstance(value, _ScriptModule):
            _collect(value, f"{prefix}{name}.", out)
