"""The tokenizer that comes with a model's weights, used the way SigLIP is used.

SigLIP's (a SentencePiece vocabulary) and SigLIP 2's (Gemma's) tokenizers are not shipped in the package as CLIP's
BPE is: they are read from the weights' folder, ``tokenizer.json`` with Hugging Face ``tokenizers`` (open_clip's hub
folders, most transformers folders), else ``spiece.model`` with ``sentencepiece`` (``google/siglip-*`` folders,
which transformers reads with its ``SiglipTokenizer``). As in big_vision's evaluators, open_clip's
``HFTokenizer(clean="canonicalize")`` and transformers' ``SiglipTokenizer``, a text is canonicalised first (ftfy and
HTML unescaping, ``_`` to space, punctuation removed, lower case, whitespace collapsed; transformers does all but
the first three, which change only texts with mojibake, HTML entities or underscores), then encoded with the file's
own normaliser, ``</s>`` appended, truncated to ``context_length`` (the end token kept) and padded to it with the pad
token the folder names.
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


TOKENIZER_FILES = ("tokenizer.json", "spiece.model")


def has_tokenizer(folder: str | Path) -> bool:
    return any((Path(folder) / name).is_file() for name in TOKENIZER_FILES)


def _named_token(folder: Path, key: str) -> str | None:
    """The token ``tokenizer_config.json`` or ``special_tokens_map.json`` names as ``key`` (``pad_token``...)."""
    for name in ("tokenizer_config.json", "special_tokens_map.json"):
        if (folder / name).is_file():
            token = json.loads((folder / name).read_text()).get(key)
            if isinstance(token, dict):  # {"content": "<pad>", ...}
                token = token.get("content")
            if token:
                return token
    return None


class FolderTokenizer:
    """Texts → token ids ``(N, context_length)`` with the tokenizer of a weights folder.

    Args:
        folder: the folder holding ``tokenizer.json`` or ``spiece.model``, and ``tokenizer_config.json`` or
            ``special_tokens_map.json`` naming the pad token. Without one, the pad token is ``tokenizer.json``'s
            padding token, ``<pad>`` or id 0; for ``spiece.model`` it is ``</s>``, transformers' ``SiglipTokenizer``
            default.
        context_length: tokens per text (SigLIP: 64).
    """

    def __init__(self, folder: str | Path, context_length: int) -> None:
        folder = Path(folder)
        self.folder, self.context_length = folder, context_length
        self.tokenizer = self.spm = None
        if (folder / "tokenizer.json").is_file():
            self._fast(folder)
        elif (folder / "spiece.model").is_file():
            self._sentencepiece(folder)
        else:
            raise FileNotFoundError(f"{folder}: no {' or '.join(TOKENIZER_FILES)} in it")

    def _fast(self, folder: Path) -> None:
        try:
            from tokenizers import Tokenizer as HFTokenizer
        except ImportError as err:
            raise ImportError(f"{folder}/tokenizer.json needs Hugging Face tokenizers: pip install tokenizers") from err

        self.tokenizer = HFTokenizer.from_file(str(folder / "tokenizer.json"))
        pad = _named_token(folder, "pad_token")
        if pad is None:
            padding = self.tokenizer.padding
            pad = padding["pad_token"] if padding else ("<pad>" if self.tokenizer.token_to_id("<pad>") is not None
                                                        else None)  # fmt: skip
        pad_id = self.tokenizer.token_to_id(pad) if pad is not None else None
        self.pad_id = 0 if pad_id is None else pad_id
        self._plain = HFTokenizer.from_str(self.tokenizer.to_str())  # without padding or truncation: ``encode``
        self._plain.no_padding()
        self._plain.no_truncation()
        probe = self._plain.encode("a"), self._plain.encode("a", add_special_tokens=False)
        at = next(i for i in range(len(probe[0].ids)) if probe[0].ids[i : i + len(probe[1].ids)] == probe[1].ids)
        self.prefix, self.suffix = probe[0].ids[:at], probe[0].ids[at + len(probe[1].ids) :]  # the file's specials
        self.tokenizer.enable_truncation(max_length=self.context_length)
        self.tokenizer.enable_padding(length=self.context_length, pad_id=self.pad_id, pad_token=pad or "<pad>")

    def _sentencepiece(self, folder: Path) -> None:
        try:
            import sentencepiece
        except ImportError as err:
            raise ImportError(f"{folder}/spiece.model needs sentencepiece: pip install sentencepiece (or give a folder "
                              "with tokenizer.json)") from err  # fmt: skip
        self.spm = sentencepiece.SentencePieceProcessor(model_file=str(folder / "spiece.model"))
        ids = {}
        for key, default in (("eos_token", "</s>"), ("pad_token", "</s>"), ("unk_token", "<unk>")):
            token = _named_token(folder, key) or default
            ids[key] = self.spm.piece_to_id(token)
            if self.spm.id_to_piece(ids[key]) != token:
                raise ValueError(f"{folder}/spiece.model has no {key} {token!r}")
        self.eos_id, self.pad_id, unk = ids["eos_token"], ids["pad_token"], self.spm.id_to_piece(ids["unk_token"])
        self.prefix, self.suffix = [], [self.eos_id]
        # transformers' SiglipTokenizer encodes "<unk>▁text" and drops the pieces of "<unk>": every text starts with
        # one word boundary, whatever the model's add_dummy_prefix setting
        self._prefix, self._skip = unk + "▁", len(self.spm.encode(unk))

    @property
    def prefix_length(self) -> int:
        """Tokens before a text's own (none for SigLIP's): where a learnt prompt context begins."""
        return len(self.prefix)

    def encode(self, text: str) -> list[int]:
        """One text's ids, canonicalised, without special tokens, not truncated."""
        if self.spm is not None:
            return self.spm.encode(self._prefix + canonicalize(text))[self._skip :]
        return self._plain.encode(canonicalize(text), add_special_tokens=False).ids

    def pack(self, ids: list[int]) -> torch.Tensor:
        """One text's ids (``encode``'s, or prompt placeholders) → the model's input row ``(context_length,)``: the
        file's special tokens around them (the end token kept when truncating), padded with the pad token."""
        room = self.context_length - len(self.prefix) - len(self.suffix)
        ids = self.prefix + list(ids)[:room] + self.suffix
        return torch.tensor(ids + [self.pad_id] * (self.context_length - len(ids)), dtype=torch.long)

    def __call__(self, texts: str | list[str]) -> torch.Tensor:
        texts = [texts] if isinstance(texts, str) else list(texts)
        if self.spm is not None:
            return torch.stack([self.pack(self.encode(t)) for t in texts]).reshape(len(texts), self.context_length)
        encoded = self.tokenizer.encode_batch([canonicalize(t) for t in texts])  # its own truncation and padding
        return torch.tensor([e.ids for e in encoded], dtype=torch.long).reshape(len(texts), self.context_length)

    def __repr__(self) -> str:
        return f"FolderTokenizer({self.folder}, context_length={self.context_length})"
