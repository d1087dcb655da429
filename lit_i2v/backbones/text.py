"""The text tower: CLIP's causal transformer read out at the end-of-text token, or SigLIP's bidirectional one read
out at the last position.

Radford et al. 2021 (CLIP), section 2.4: 12 layers, width 512 (B) or 768 (L), 77 tokens, causal self-attention,
the feature of the end-of-text token (the highest id, so ``argmax`` finds it) after a final LayerNorm, projected.
Zhai et al. 2023 (SigLIP): 64 tokens padded to the end, no attention mask, the last position's feature after the
final LayerNorm through a linear head with a bias. Blocks are the vision tower's blocks (with a causal mask for
CLIP), so both towers share one attention implementation (SDPA).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lit_i2v.backbones.vit import ACTIVATIONS, Block, LayerNormFp32


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
        mlp_ratio: MLP hidden width over the token width (SigLIP's SO400M: 3.7362, 4304 of 1152).
        embed_dim: output width E of the projection into the joint space.
        act: ``"quick_gelu"`` (OpenAI), ``"gelu"`` or ``"gelu_tanh"`` (SigLIP).
        causal: causal self-attention (CLIP); SigLIP's attends both ways.
        pool: ``eot`` (the end-of-text token, CLIP) or ``last`` (the last position, SigLIP).
        head_bias: a bias in the projection (SigLIP).
        eps: LayerNorm epsilon.
    """

    def __init__(
        self,
        context_length: int = 77,
        vocab_size: int = 49408,
        width: int = 512,
        layers: int = 12,
        heads: int = 8,
        mlp_ratio: float = 4.0,
        embed_dim: int = 512,
        act: str = "quick_gelu",
        causal: bool = True,
        pool: str = "eot",
        head_bias: bool = False,
        eps: float = 1e-5,
    ) -> None:
        super().__init__()
        if pool not in ("eot", "last"):
            raise ValueError(f"pool {pool!r}: 'eot' or 'last'")
        act_layer = ACTIVATIONS[act]
        self.context_length = context_length
        self.width = width
        self.embed_dim = embed_dim
        self.pool = pool
        self.token_embedding = nn.Embedding(vocab_size, width)
        self.pos_embed = nn.Parameter(torch.empty(1, context_length, width))
        block = CausalBlock if causal else Block
        self.blocks = nn.ModuleList(block(width, heads, mlp_ratio, act_layer, eps=eps) for _ in range(layers))
        self.norm = LayerNormFp32(width, eps=eps)
        self.head = nn.Linear(width, embed_dim, bias=head_bias)
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
            x = block(x, 1)
        x = self.norm(x)
        x = x[torch.arange(x.shape[0], device=x.device), eot_index]  # (B, W)
        return self.head(x) if project else x

    def pool_index(self, token_ids: Tensor) -> Tensor:
        """Where each text ``(B, L)`` is read: its end-of-text token (CLIP's has the largest id) or the last position
        (SigLIP)."""
        if self.pool == "eot":
            return token_ids.argmax(dim=-1)
        return torch.full((token_ids.shape[0],), token_ids.shape[1] - 1, device=token_ids.device)

    def forward(self, token_ids: Tensor) -> Tensor:
        """Token ids ``(B, L)`` → embeddings ``(B, E)``, read at ``pool_index``."""
        return self.forward_embeddings(self.token_embedding(token_ids), self.pool_index(token_ids))
