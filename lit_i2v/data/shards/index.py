"""The shard folder's index: its format tag, version, and the one reader of ``index.json`` (layout in the package's
docstring)."""

from __future__ import annotations

import json
from pathlib import Path

FORMAT = "lit_i2v-shards"
VERSION = 1


class ShardError(RuntimeError):
    """A shard folder that is missing, incomplete or of another format; the message names the file."""


def read_index(root: str | Path, missing_ok: bool = False) -> dict | None:
    path = Path(root) / "index.json"
    if not path.is_file():
        if missing_ok:
            return None
        raise ShardError(f"{path}: no shard index; write shards with `python -m lit_i2v shard --config X --out DIR`")
    index = json.loads(path.read_text())
    if index.get("format") != FORMAT or index.get("version") != VERSION:
        raise ShardError(f"{path}: not a {FORMAT} v{VERSION} index (format {index.get('format')!r})")
    return index
