"""The tokenizer that comes with a model's weights (``tokenizer.json``), used the way SigLIP is used.

SigLIP's (a SentencePiece vocabulary) and SigLIP 2's (Gemma's) tokenizers are not shipped in the package as CLIP's
BPE is: they are read from the weights' folder with Hugging Face ``tokenizers``. As in big_vision's evaluators and
open_clip's ``HFTokenizer(clean="canonicalize")``, a text is canonicalised first (ftfy and HTML unescaping, ``_`` to
space, punctuation removed, lower case, whitespace collapsed), then encoded with the file's own normaliser and
special tokens, truncated to ``context_length`` (the end token kept) and padded to it with the pad token.
"""

from __future__ import annotations

import html
import json
import string
from pathlib import Path

import ftfy
import torch

_PUNCTUATION = str.maketrans("", "", string.punctuation)


def canonicalize(text: str) -> str:
    """big_vision's canonical text: lower case, no punctuation, single spaces."""
    text = html.unescape(html.unescape(ftfy.fix_text(text))).strip()
    text = text.replace("_", " ").translate(_PUNCTUATION).lower()
    return " ".join(text.split())


def has_tokenizer(folder: str | Path) -> bool:
    return (Path(folder) / "tokenizer.json").is_file()


class FolderTokenizer:
    """Texts → token ids ``(N, context_length)`` with the ``tokenizer.json`` of a weights folder.

    Args:
        folder: the folder holding ``tokenizer.json`` (and ``tokenizer_config.json`` or ``special_tokens_map.json``
            naming the pad token, which otherwise is the file's padding token, ``<pad>``, or id 0).
        context_length: tokens per text (SigLIP: 64).
    """

    def __init__(self, folder: str | Path, context_length: int) -> None:
        try:
            from tokenizers import Tokenizer as HFTokenizer
        except ImportError as err:
            raise ImportError(f"{folder}/tokenizer.json needs Hugging Face tokenizers: pip install tokenizers") from err

        folder = Path(folder)
        self.folder, self.context_length = folder, context_length
        self.tokenizer = HFTokenizer.from_file(str(folder / "tokenizer.json"))
        pad = self._pad_token(folder)
        pad_id = self.tokenizer.token_to_id(pad) if pad is not None else None
        self.pad_id = 0 if pad_id is None else pad_id
        self.tokenizer.enable_truncation(max_length=context_length)
        self.tokenizer.enable_padding(length=context_length, pad_id=self.pad_id, pad_token=pad or "<pad>")

    def _pad_token(self, folder: Path) -> str | None:
        for name in ("tokenizer_config.json", "special_tokens_map.json"):
            if (folder / name).is_file():
                pad = json.loads((folder / name).read_text()).get("pad_token")
                if isinstance(pad, dict):  # {"content": "<pad>", ...}
                    pad = pad.get("content")
                if pad:
                    return pad
        padding = self.tokenizer.padding
        return (
            padding["pad_token"] if padding else ("<pad>" if self.tokenizer.token_to_id("<pad>") is not None else None)
        )

    def __call__(self, texts: str | list[str]) -> torch.Tensor:
        texts = [texts] if isinstance(texts, str) else list(texts)
        encoded = self.tokenizer.encode_batch([canonicalize(t) for t in texts])
        return torch.tensor([e.ids for e in encoded], dtype=torch.long)  # (N, context_length)

    def __repr__(self) -> str:
        return f"FolderTokenizer({self.folder}, context_length={self.context_length})"
