"""ClipCap: a mapping network turns CLIP's embedding into a prefix of a causal LM's input embeddings (GPT-2).

Mokady, Hertz and Bermano, *ClipCap: CLIP Prefix for Image Captioning*, 2021 (github.com/rmokady/CLIP_prefix_caption),
as its code builds it:

- ``mapping: mlp``: Linear(C, kD/2), tanh, Linear(kD/2, kD), reshaped to k prefix embeddings of the LM's width D
  (the paper's setting with GPT-2 fine-tuned, k = 10);
- ``mapping: transformer``: the embedding mapped to ``clip_length`` tokens, beside k learned constants (drawn from
  N(0, 1)), through an 8-layer pre-norm transformer (8 heads, MLP ratio 2, ReLU, no dropout); the constants' outputs
  are the prefix (the paper's setting with GPT-2 frozen, k = clip_length = 40 in its README);
- ``train_language_model``: GPT-2 fine-tuned with the mapper (ClipCap's default) or frozen (``--only_prefix``), and
  then kept in eval mode as ClipCap keeps it;
- ``normalize``: the embedding L2-normalised first (``--normalize_prefix``).

lit_i2v's choices, for video and for a framework (arguments where they are open):

- ``memory``: ``mean`` maps the frames' average embedding, as ClipCap maps one image's (order-blind); ``frames``
  (transformer mapping only) maps each frame to one token with a learned frame position, so the constants attend to
  the frames in order;
- a caption ends with the tokenizer's end-of-text token, learnt in training and where decoding stops (ClipCap
  stops at '.', which MSR-VTT's and VATEX's captions do not have); padding is masked from the loss, where ClipCap's
  ``ignore_index=0`` also ignores GPT-2's token 0 ("!");
- the transformer mapping's query, key and value projections have biases and PyTorch's initialisation (its layer;
  ClipCap's have none);
- the LM's embeddings are exempt from weight decay, as the towers' are (ClipCap's AdamW has no weight decay at all);
- the output layer runs in fp32, under bf16 autocast too, as ``CaptionDecoder``'s: beam scores and argmax ties need
  its resolution.

The decoder surface is ``CaptionDecoder``'s: token rows start with a marker that the prefix replaces, so
``VideoCaptioning``'s teacher forcing, greedy and beam search run on either decoder unchanged.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lit_i2v.backbones.causal_lm import load_causal_lm
from lit_i2v.heads.caption_decoder import CaptionHead


class PrefixLM(CaptionHead):
    """Args:
    pretrained: the causal LM: a transformers folder, ``hf-hub:<repo>`` (``hf-hub:openai-community/gpt2``) or
        ``synthetic`` (a tiny random GPT-2, ``lit_i2v.backbones.causal_lm``).
    mapping: ``mlp`` or ``transformer``.
    prefix_length: k, the prefix embeddings the LM reads.
    clip_length: tokens the embedding is mapped to before the transformer mapping (``memory: mean``).
    mapping_layers: layers of the transformer mapping (ClipCap: 8).
    mapping_heads: its heads (ClipCap: 8).
    memory: ``mean`` or ``frames`` (see above).
    max_frames: frames the frame positions cover (``memory: frames``).
    train_language_model: fine-tune the LM with the mapping (ClipCap's default) or keep it frozen.
    normalize: L2-normalise the video embedding before the mapping.
    max_length: tokens a caption may have, the start marker and the end token included.
    dtype: the LM's parameters' dtype.
    """

    def __init__(
        self,
        pretrained: str = "hf-hub:openai-community/gpt2",
        mapping: str = "mlp",
        prefix_length: int = 10,
        clip_length: int = 10,
        mapping_layers: int = 8,
        mapping_heads: int = 8,
        memory: str = "mean",
        max_frames: int = 64,
        train_language_model: bool = True,
        normalize: bool = False,
        max_length: int = 32,
        dtype: str = "float32",
    ) -> None:
        super().__init__()
        key = "model.init_args.decoder.init_args"
        if mapping not in ("mlp", "transformer"):
            raise ValueError(f"{key}.mapping {mapping!r}: mlp or transformer")
        if memory not in ("mean", "frames"):
            raise ValueError(f"{key}.memory {memory!r}: mean or frames")
        if memory == "frames" and mapping == "mlp":
            raise ValueError(f"{key}.memory 'frames' needs mapping: transformer (the MLP maps one embedding)")
        if min(prefix_length, clip_length, max_length - 1) < 1:
            raise ValueError(f"{key}: prefix_length, clip_length and max_length - 1 must be at least 1")
        self.pretrained, self.mapping, self.memory = pretrained, mapping, memory
        self.prefix_length, self.clip_length, self.max_frames = prefix_length, clip_length, max_frames
        self.mapping_layers, self.mapping_heads = mapping_layers, mapping_heads
        self.train_language_model, self.normalize, self.max_length = train_language_model, normalize, max_length
        self.language_model, self.tokenizer, folder = load_causal_lm(pretrained, dtype)
        positions = getattr(self.language_model.config, "max_position_embeddings", None) or getattr(
            self.language_model.config, "n_positions", None)  # fmt: skip
        longest = prefix_length + max_length - 2  # the prefix, then every token but the last is read
        if positions is not None and longest > positions:
            raise ValueError(f"{key}: prefix_length + max_length - 2 = {longest}, more than the {positions} positions "
                             f"of {folder}")  # fmt: skip
        if train_language_model and dtype != "float32":
            raise ValueError(
                f"{key}.dtype {dtype!r} with train_language_model: AdamW's updates of {dtype} weights round to zero "
                "at fine-tuning rates; keep float32 weights and train under trainer.precision: bf16-mixed"
            )
        self.language_model.requires_grad_(train_language_model)
        self.pretrained_names = frozenset(f"language_model.{n}" for n, _ in self.language_model.named_parameters())
        self.width = self.language_model.get_input_embeddings().weight.shape[1]
        self.start_id = self.end_id = self.tokenizer.eos_token_id  # the start marker is never read: the prefix is

    def build(self, video_width: int, backbone: nn.Module) -> None:
        """The mapping network, from the video features' width to the LM's."""
        width, k = self.width, self.prefix_length
        if self.mapping == "mlp":
            self.mapper = nn.Sequential(nn.Linear(video_width, k * width // 2), nn.Tanh(),
                                        nn.Linear(k * width // 2, k * width))  # fmt: skip
            return
        tokens = 1 if self.memory == "frames" else self.clip_length
        self.video_in = nn.Linear(video_width, tokens * width)
        self.prefix_const = nn.Parameter(torch.randn(k, width))
        self.frame_embed = nn.Parameter(torch.zeros(self.max_frames, width)) if self.memory == "frames" else None
        layer = nn.TransformerEncoderLayer(width, self.mapping_heads, 2 * width, dropout=0.0, activation="relu",
                                           batch_first=True, norm_first=True)  # fmt: skip
        self.mapper = nn.TransformerEncoder(layer, self.mapping_layers, enable_nested_tensor=False)

    def train(self, mode: bool = True) -> PrefixLM:
        super().train(mode)
        if not self.train_language_model:
            self.language_model.eval()  # frozen: no dropout, as ClipCap's prefix-only model
        return self

    # ---- the tokenizer ------------------------------------------------------------------------------------------

    def encode_text(self, caption: str) -> list[int]:
        """A caption's token ids (no special tokens; the task adds the start marker and the end token)."""
        return self.tokenizer.encode(caption, add_special_tokens=False)

    def decode_text(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=True).strip()

    # ---- forward ------------------------------------------------------------------------------------------------

    def encode(self, features: Tensor) -> Tensor:
        """Frame features ``(B, T, C)`` → the prefix ``(B, k, D)``."""
        if self.memory == "mean":
            features = features.mean(1)  # (B, C)
        if self.normalize:
            features = features / features.norm(dim=-1, keepdim=True)
        if self.mapping == "mlp":
            return self.mapper(features).view(features.shape[0], self.prefix_length, self.width)
        if self.memory == "frames":
            if features.shape[1] > self.max_frames:
                raise ValueError(f"{features.shape[1]} frames, more than model.init_args.decoder.init_args."
                                 f"max_frames={self.max_frames}")  # fmt: skip
            x = self.video_in(features) + self.frame_embed[: features.shape[1]]  # (B, T, D)
        else:
            x = self.video_in(features).view(features.shape[0], self.clip_length, self.width)
        const = self.prefix_const.expand(x.shape[0], -1, -1)
        return self.mapper(torch.cat([x, const], 1))[:, x.shape[1] :]

    def forward(self, memory: Tensor, tokens: Tensor, padding: Tensor | None = None, last: bool = False) -> Tensor:
        """Prefix ``(B, k, D)`` and token rows ``(B, L)`` (the start marker first, replaced by the prefix) →
        next-token logits ``(B, L, vocab)``, or ``(B, vocab)`` at the last position only (``last``); the output
        layer in fp32."""
        lm = self.language_model
        words = lm.get_input_embeddings()(tokens[:, 1:])
        x = torch.cat([memory.to(words.dtype), words], 1)  # (B, k + L - 1, D)
        mask = None
        if padding is not None:  # right padding: positions stay 0..n-1 for every row
            mask = torch.cat([padding.new_ones(len(tokens), self.prefix_length), ~padding[:, 1:]], 1).long()
        if x.is_meta:  # ``summary``: transformers' mask helpers read values; a causal 4D mask is taken as it is
            mask = torch.ones(x.shape[1], x.shape[1], dtype=torch.bool, device=x.device).tril()[None, None]
        keep = 1 if last else tokens.shape[1]
        h = lm.base_model(inputs_embeds=x, attention_mask=mask, use_cache=False).last_hidden_state[:, -keep:]
        head = lm.get_output_embeddings()
        device = h.device.type if h.device.type in ("cuda", "cpu") else "cpu"  # "meta" in summary: nothing to undo
        with torch.autocast(device, enabled=False):
            bias = head.bias.float() if head.bias is not None else None
            logits = F.linear(h.float(), head.weight.float(), bias)
        return logits[:, -1] if last else logits

    def no_weight_decay(self) -> set[str]:
        """The mapping's constants and frame positions, and the LM's token and position embeddings."""
        embeddings = {f"language_model.{n}.weight" for n, m in self.language_model.named_modules()
                      if isinstance(m, nn.Embedding)}  # fmt: skip
        return {"prefix_const", "frame_embed"} | embeddings

    def extra_repr(self) -> str:
        return (f"pretrained={self.pretrained!r}, mapping={self.mapping!r}, prefix_length={self.prefix_length}, "
                f"memory={self.memory!r}, train_language_model={self.train_language_model}")  # fmt: skip
