"""A caption decoder over video features, with the image-language model's own vocabulary.

Tang et al., *CLIP4Caption: CLIP for Video Caption*, ACM MM 2021: CLIP (CLIP4Clip-tuned) frame embeddings, a
2-layer transformer visual encoder over the frames, a 2-layer transformer caption decoder with cross-attention to
it. No official code is released: the layout follows the paper, and these choices are lit_i2v's (arguments):

- the vocabulary is the backbone's tokenizer (CLIP's BPE, shipped in the package); the decoder's token embedding
  and its output layer are one matrix (tied), initialised from the text tower's token embedding, and its position
  embedding from the text tower's (so no other tokenizer or weights are needed); the output layer has a bias (as
  BERT's LM head), which learns at once that most of the 49k tokens never occur in captions;
- ``memory``: what the decoder attends to: ``frames`` (the per-frame features in order, through the visual encoder
  with a learned frame position: the temporal captioner), ``mean`` (their average, one token: a frame-order-blind
  captioner, the baseline the synthetic set exposes), or ``tokens`` (every frame's patch tokens);
- pre-norm transformer layers (PyTorch's ``norm_first``), GELU, dropout 0.1.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


class CaptionHead(nn.Module):
    """What ``VideoCaptioning`` reads of a caption decoder (``CaptionDecoder``, ``PrefixLM``):

    - ``build(video_width, backbone)``: make the parameters that depend on the video features' width;
    - ``encode(features)``: frame features ``(B, T, C)`` (or patch tokens ``(B, T, N, C)`` where ``needs_tokens``) →
      the memory the decoder reads;
    - ``forward(memory, tokens, padding, last)``: token rows ``(B, L)``, ``start_id`` first → next-token logits;
    - ``encode_text``/``decode_text``: a caption's ids without markers, and back;
    - ``start_id``, ``end_id`` (a caption's last token, where decoding stops), ``banned`` (ids never generated),
      ``max_length`` (tokens a row may have, the markers included).
    """

    needs_tokens: bool = False
    start_id: int
    end_id: int
    banned: tuple[int, ...] = ()
    max_length: int

    def build(self, video_width: int, backbone: nn.Module) -> None:
        raise NotImplementedError

    def encode(self, features: Tensor) -> Tensor:
        raise NotImplementedError

    def encode_text(self, caption: str) -> list[int]:
        raise NotImplementedError

    def decode_text(self, ids: list[int]) -> str:
        raise NotImplementedError


class CaptionDecoder(CaptionHead):
    """Args:
    layers: decoder layers (CLIP4Caption: 2).
    visual_layers: visual-encoder layers over the memory (CLIP4Caption: 2; 0: none).
    heads: attention heads.
    memory: ``frames``, ``mean`` or ``tokens``.
    max_length: tokens a caption may have, start and end markers included.
    max_frames: frames the visual encoder's position embedding covers.
    dropout: dropout in the transformer layers.
    """

    def __init__(
        self,
        layers: int = 2,
        visual_layers: int = 2,
        heads: int = 8,
        memory: str = "frames",
        max_length: int = 32,
        max_frames: int = 64,
        dropout: float = 0.1,
    ) -> None:
        super().__init__()
        if memory not in ("frames", "mean", "tokens"):
            raise ValueError(f"model.init_args.decoder.memory {memory!r}: frames, mean or tokens")
        self.layers, self.visual_layers, self.heads, self.memory = layers, visual_layers, heads, memory
        self.max_length, self.max_frames, self.dropout = max_length, max_frames, dropout

    @property
    def needs_tokens(self) -> bool:
        return self.memory == "tokens"

    def build(self, video_width: int, backbone: nn.Module) -> None:
        """Sized from the video features' width and the text tower, whose token and position embeddings start it."""
        tok = backbone.tokenizer
        if not hasattr(tok, "sot_id"):
            raise ValueError(
                f"model.init_args.backbone: {backbone.arch}'s tokenizer has no start-of-text marker; CaptionDecoder "
                "uses CLIP's BPE (its start and end markers), so use a CLIP backbone, or decoder: PrefixLM"
            )
        self.tokenizer, self.start_id, self.end_id = tok, tok.sot_id, tok.eot_id
        self.banned = (tok.sot_id,)  # the start marker is never a word
        text = backbone.text
        vocab, width = text.token_embedding.weight.shape
        if self.max_length > text.pos_embed.shape[1]:
            raise ValueError(
                f"model.init_args.decoder.max_length {self.max_length}: the text tower has {text.pos_embed.shape[1]} "
                "positions to start from"
            )
        self.token_embedding = nn.Embedding(vocab, width)
        self.token_embedding.weight.data.copy_(text.token_embedding.weight.data)
        self.pos_embed = nn.Parameter(text.pos_embed.data[0, : self.max_length].clone())  # (max_length, W)
        self.output_bias = nn.Parameter(torch.zeros(vocab))
        self.video_in = nn.Linear(video_width, width)
        # frame positions, where the memory keeps frames apart (a parameter nothing reads would stall DDP)
        self.frame_embed = nn.Parameter(torch.zeros(self.max_frames, width)) if self.memory != "mean" else None
        layer = dict(d_model=width, nhead=self.heads, dim_feedforward=4 * width, dropout=self.dropout,
                     activation="gelu", batch_first=True, norm_first=True)  # fmt: skip
        self.visual = (  # pre-norm layers, then a final norm (as nn.Transformer's encoder): the memory is normalised
            nn.TransformerEncoder(nn.TransformerEncoderLayer(**layer), self.visual_layers, nn.LayerNorm(width),
                                  enable_nested_tensor=False)
            if self.visual_layers else nn.LayerNorm(width)
        )  # fmt: skip
        self.decoder = nn.TransformerDecoder(nn.TransformerDecoderLayer(**layer), self.layers)
        self.norm = nn.LayerNorm(width)

    def encode_text(self, caption: str) -> list[int]:
        """A caption's token ids (no markers; the task adds them)."""
        return self.tokenizer.encode(caption)

    def decode_text(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids).strip()

    def encode(self, features: Tensor) -> Tensor:
        """Video features ``(B, T, C)`` (``frames``/``mean``) or patch tokens ``(B, T, N, C)`` (``tokens``) → the
        memory the decoder attends to ``(B, S, W)``."""
        if self.memory == "mean":
            features = features.mean(1, keepdim=True)  # (B, 1, C): the order of frames is gone
        x = self.video_in(features)
        if self.memory != "mean" and x.shape[1] > self.max_frames:
            raise ValueError(f"{x.shape[1]} frames, more than model.init_args.decoder.max_frames={self.max_frames}")
        if self.memory == "frames":
            x = x + self.frame_embed[: x.shape[1]]
        elif self.memory == "tokens":
            x = (x + self.frame_embed[: x.shape[1], None]).flatten(1, 2)  # (B, T*N, W)
        return self.visual(x)

    def forward(self, memory: Tensor, tokens: Tensor, padding: Tensor | None = None, last: bool = False) -> Tensor:
        """Memory ``(B, S, W)`` and caption tokens ``(B, L)`` (start marker first) → next-token logits
        ``(B, L, vocab)``, or ``(B, vocab)`` at the last position only (``last``: decoding); ``padding`` ``(B, L)``
        is True at padded positions. The output layer runs in fp32 (under bf16 autocast too): beam scores and
        argmax ties over 49k tokens need its resolution."""
        length = tokens.shape[1]
        x = self.token_embedding(tokens) + self.pos_embed[:length]
        causal = torch.ones(length, length, dtype=torch.bool, device=x.device).triu(1)  # True: not attended
        h = self.norm(self.decoder(x, memory, tgt_mask=causal, tgt_key_padding_mask=padding, tgt_is_causal=True))
        if last:
            h = h[:, -1]
        device = h.device.type if h.device.type in ("cuda", "cpu") else "cpu"  # "meta" in summary: nothing to undo
        with torch.autocast(device, enabled=False):  # tied output layer
            return h.float() @ self.token_embedding.weight.float().t() + self.output_bias.float()

    def no_weight_decay(self) -> set[str]:
        """Embeddings and positions, as the towers' (the task reads this)."""
        return {"token_embedding.weight", "pos_embed", "frame_embed", "output_bias"}

    def extra_repr(self) -> str:
        return f"layers={self.layers}, visual_layers={self.visual_layers}, memory={self.memory!r}"
