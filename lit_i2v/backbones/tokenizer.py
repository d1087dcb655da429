"""CLIP's byte-level BPE tokenizer (Radford et al. 2021; Sennrich et al. 2016 for BPE).

The vocabulary ``bpe_simple_vocab_16e6.txt.gz`` is OpenAI's released merges file (MIT licence), shipped in the
package so tokenizing needs no download. Texts are cleaned (ftfy, HTML unescape, whitespace, lower case), split by
CLIP's pattern, byte-encoded, merged by rank, and wrapped in start/end markers; each row is padded with zeros or cut
to ``context_length`` with the end marker kept last.
"""

from __future__ import annotations

import gzip
import html
from functools import lru_cache
from pathlib import Path

import ftfy
import regex
import torch

VOCAB_FILE = Path(__file__).with_name("bpe_simple_vocab_16e6.txt.gz")
NUM_MERGES = 49152 - 256 - 2


@lru_cache
def byte_to_unicode() -> dict[int, str]:
    """A reversible map from the 256 byte values to printable unicode characters (no whitespace or controls).

    Printable bytes map to themselves and come first; the others map to ``chr(256 + n)`` after them. The order of
    this dict is the order of the first 256 vocabulary entries.
    """
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    table = {b: chr(b) for b in printable}
    others = [b for b in range(256) if b not in table]
    table.update({b: chr(256 + n) for n, b in enumerate(others)})
    return table


def clean(text: str) -> str:
    text = html.unescape(html.unescape(ftfy.fix_text(text))).strip()
    return " ".join(text.split()).lower()


class Tokenizer:
    """Callable ``list[str] -> LongTensor (len, context_length)``, equal to OpenAI CLIP's ``clip.tokenize``."""

    def __init__(self, context_length: int = 77, vocab_file: str | Path = VOCAB_FILE) -> None:
        with gzip.open(vocab_file, "rt", encoding="utf-8") as f:
            merges = [tuple(line.split()) for line in f.read().split("\n")[1 : NUM_MERGES + 1]]
        symbols = list(byte_to_unicode().values())
        vocab = symbols + [s + "</w>" for s in symbols] + ["".join(m) for m in merges]
        vocab += ["<|startoftext|>", "<|endoftext|>"]
        self.encoder = {token: i for i, token in enumerate(vocab)}
        self.decoder = {i: token for token, i in self.encoder.items()}
        self.ranks = {merge: i for i, merge in enumerate(merges)}
        self.byte_encoder = byte_to_unicode()
        self.byte_decoder = {c: b for b, c in self.byte_encoder.items()}
        self.sot_id = self.encoder["<|startoftext|>"]
        self.eot_id = self.encoder["<|endoftext|>"]
        self.context_length = context_length
        self.vocab_size = len(vocab)
        self.pattern = regex.compile(
            r"""<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+""",
            regex.IGNORECASE,
        )
        self._cache: dict[str, list[str]] = {}

    def bpe(self, word: str) -> list[str]:
        """Merge the characters of one pre-token by rank until no known pair is left."""
        if word in self._cache:
            return self._cache[word]
        parts = [*word[:-1], word[-1] + "</w>"]
        while len(parts) > 1:
            pairs = {(a, b) for a, b in zip(parts, parts[1:])}
            best = min(pairs, key=lambda p: self.ranks.get(p, float("inf")))
            if best not in self.ranks:
                break
            merged, i = [], 0
            while i < len(parts):
                if i < len(parts) - 1 and (parts[i], parts[i + 1]) == best:
                    merged.append(parts[i] + parts[i + 1])
                    i += 2
                else:
                    merged.append(parts[i])
                    i += 1
            parts = merged
        self._cache[word] = parts
        return parts

    def encode(self, text: str) -> list[int]:
        ids = []
        for token in self.pattern.findall(clean(text)):
            word = "".join(self.byte_encoder[b] for b in token.encode("utf-8"))
            ids.extend(self.encoder[piece] for piece in self.bpe(word))
        return ids

    def decode(self, ids: list[int]) -> str:
        text = "".join(self.decoder[i] for i in ids if i not in (self.sot_id, self.eot_id))
        data = bytearray(self.byte_decoder[c] for c in text)
        return data.decode("utf-8", errors="replace").replace("</w>", " ").strip()

    prefix_length = 1  # tokens before a text's own: the start token (where a learnt prompt context begins)

    def pack(self, ids: list[int]) -> torch.Tensor:
        """One text's ids (``encode``'s, or prompt placeholders) → the model's input row ``(context_length,)``: the
        start token before them, the end token after them (kept when truncating), zeros after."""
        ids = [self.sot_id, *ids][: self.context_length - 1] + [self.eot_id]
        row = torch.zeros(self.context_length, dtype=torch.long)
        row[: len(ids)] = torch.tensor(ids)
        return row

    def __call__(self, texts: str | list[str]) -> torch.Tensor:
        if isinstance(texts, str):
            texts = [texts]
        return torch.stack([self.pack(self.encode(text)) for text in texts]).reshape(len(texts), self.context_length)
