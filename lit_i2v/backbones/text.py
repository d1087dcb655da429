"""CLIP's text tower: a causal transformer read out at the end-of-text token.

Radford et al. 2021 (CLIP), section 2.4: 12 layers, width 512 (B) or 768 (L), 77 tokens, causal self-attention,
the feature of the end-of-text token (the highest id, so ``argmax`` finds it) after a final LayerNorm, projected.
Blocks are the vision tower's blocks with a causal mask, so both towers share one attention implementation (SDPA).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lit_i2v.backbones.vit import Block, LayerNormFp32, QuickGELU


class CausalBlock(Block):
    """A :class:`Block` whose attention only looks at earlier tokens."""

    def forward(self, x: Tensor, num_frames: int = 1) -> Tensor:
        q, k, v = self.attn.split_heads(self.norm1(x))
        x = x + self.drop_path1(self.attn.merge_heads(F.scaled_dot_product_attention(q, k, v, is_causal=True)))
        x = x + self.drop_path2(self.mlp(self.norm2(x)))
        return x


class TextTransformer(nn.Module):
    """Token ids ``(B, context_length)`` → text embeddings ``(B, E)``.

    Args:
        context_length: tokens per text, including start and end markers.
        vocab_size: size of the BPE vocabulary.
        width: token width.
        layers: number of blocks.
        heads: attention heads.
        embed_dim: output width E of the projection into the joint space.
        act: ``"quick_gelu"`` (OpenAI) or ``"gelu"``.
    """

    def __init__(
        self,
        context_length: int = 77,
        vocab_size: int = 49408,
        width: int = 512,
        layers: int = 12,
        heads: int = 8,
        embed_dim: int = 512,
        act: str = "quick_gelu",
    ) -> None:
        super().__init__()
        act_layer = {"quick_gelu": QuickGELU, "gelu": nn.GELU}[act]
        self.context_length = context_length
        self.width = width
        self.embed_dim = embed_dim
        self.token_embedding = nn.Embedding(vocab_size, width)
        self.pos_embed = nn.Parameter(torch.empty(1, context_length, width))
        self.blocks = nn.ModuleList(CausalBlock(width, heads, 4.0, act_layer) for _ in range(layers))
        self.norm = LayerNormFp32(width)
        self.head = nn.Linear(width, embed_dim, bias=False)
        self.init_weights()

    def init_weights(self) -> None:
        nn.init.normal_(self.token_embedding.weight, std=0.02)
        nn.init.normal_(self.pos_embed, std=0.01)
        nn.init.normal_(self.head.weight, std=self.width**-0.5)
        proj_std = self.width**-0.5 * (2 * len(self.blocks)) ** -0.5
        for block in self.blocks:
            nn.init.normal_(block.attn.qkv.weight, std=self.width**-0.5)
            nn.init.zeros_(block.attn.qkv.bias)
            nn.init.normal_(block.attn.proj.weight, std=proj_std)
            nn.init.normal_(block.mlp.fc1.weight, std=(2 * self.width) ** -0.5)
            nn.init.normal_(block.mlp.fc2.weight, std=proj_std)

    def no_weight_decay(self) -> set[str]:
        return {"pos_embed", "token_embedding.weight"}

    def forward_embeddings(self, x: Tensor, eot_index: Tensor, project: bool = True) -> Tensor:
        """Token embeddings ``(B, L, W)`` (learnable prompts may be spliced in) → features at ``eot_index``."""
        x = x + self.pos_embed[:, : x.shape[1]].to(x.dtype)
        for block in self.blocks:
            x = block(x)
        x = self.norm(x)
        x = x[torch.arange(x.shape[0], device=x.device), eot_index]  # (B, W)
        return self.head(x) if project else x

    def forward(self, token_ids: Tensor) -> Tensor:
        """Token ids ``(B, L)`` → embeddings ``(B, E)``; the end-of-text token has the largest id."""
        return self.forward_embeddings(self.token_embedding(token_ids), token_ids.argmax(dim=-1))
