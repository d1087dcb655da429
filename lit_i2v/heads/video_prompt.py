"""X-CLIP's video-specific prompting: class text embeddings refined by attending to the clip's visual tokens.

Ni et al., *Expanding Language-Image Pretrained Models for General Video Recognition*, ECCV 2022, section 3.3.
Official code: github.com/microsoft/VideoX (``X-CLIP/models/prompt.py``: ``VideoSpecificPrompt``; ``xclip.py``).

The class prompts go once through the frozen text tower (the official code caches them; the text encoder does not
train). For each clip, the last block's patch tokens are normalised (LN), projected into the joint space by a new
``D x E`` matrix, averaged over frames, and normalised again; each class embedding then runs through ``layers``
decoder layers (``x + CrossAttn(LN x, visual)``, ``x + MLP(LN x)``) and the result, scaled per channel by ``alpha``
(initialised 0.1), is added to the class embedding. Logits are the cosine similarities between the video feature
and these video-conditioned class embeddings, times CLIP's logit scale (frozen with the text side).

The official projection is drawn from N(0, 1) (``torch.randn``), kept here; linear layers start from
truncated N(0, 0.02) with zero biases, as the official ``_init_weights``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lit_i2v.backbones import CLIP, scaled_logits
from lit_i2v.backbones.vit import LayerNormFp32, QuickGELU
from lit_i2v.heads.classifier import Head, encode_class_prompts


class CrossAttention(nn.Module):
    """Multi-head attention from queries ``(B, K, E)`` to keys/values ``(B, N, E)``; q/k/v without bias."""

    def __init__(self, width: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.q, self.k, self.v = (nn.Linear(width, width, bias=False) for _ in range(3))
        self.proj = nn.Linear(width, width)

    def forward(self, x: Tensor, memory: Tensor) -> Tensor:
        q = self.q(x).unflatten(-1, (self.heads, -1)).transpose(1, 2)  # (B, H, K, Dh)
        k = self.k(memory).unflatten(-1, (self.heads, -1)).transpose(1, 2)  # (B, H, N, Dh)
        v = self.v(memory).unflatten(-1, (self.heads, -1)).transpose(1, 2)
        out = F.scaled_dot_product_attention(q, k, v)  # (B, H, K, Dh)
        return self.proj(out.transpose(1, 2).flatten(2))


class PromptLayer(nn.Module):
    """``x + CrossAttn(LN x, visual)`` then ``x + MLP(LN x)``."""

    def __init__(self, width: int, heads: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.norm1, self.norm2 = LayerNormFp32(width), LayerNormFp32(width)
        self.attn = CrossAttention(width, heads)
        self.mlp = nn.Sequential(
            nn.Linear(width, 4 * width), QuickGELU(), nn.Dropout(dropout), nn.Linear(4 * width, width)
        )
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor, visual: Tensor) -> Tensor:
        x = x + self.attn(self.norm1(x), visual)
        return x + self.dropout(self.mlp(self.norm2(x)))


class VideoPromptHead(Head):
    """Cosine classifier over video-conditioned class prompts.

    Args:
        templates: prompt templates with ``{}`` for the class name (embeddings averaged over templates).
        layers: prompt-generator layers (2 in the paper).
        alpha: initial value of the per-channel scale of the generated prompt (0.1).
        dropout: dropout inside the generator layers.
    """

    needs_projection = True
    needs_class_names = True
    needs_tokens = True

    def __init__(
        self, templates: list[str] | None = None, layers: int = 2, alpha: float = 0.1, dropout: float = 0.0
    ) -> None:
        super().__init__()
        self.templates = templates or ["a video of {}."]
        self.num_layers, self.alpha_init, self.dropout = layers, alpha, dropout

    def build(self, backbone: CLIP, num_classes: int, class_names: list[str] | None) -> None:
        width, embed = backbone.visual.width, backbone.embed_dim
        text = encode_class_prompts(backbone, num_classes, class_names, self.templates).mean(1)  # (K, E)
        self.register_buffer("class_embeddings", text)
        self.register_buffer("logit_scale", backbone.logit_scale.detach().clone())
        bias = backbone.logit_bias.detach().clone() if backbone.logit_bias is not None else None
        self.register_buffer("logit_bias", bias)  # SigLIP's; None (and no state entry) for CLIP
        self.visual_norm = LayerNormFp32(width)
        self.visual_proj = nn.Parameter(torch.randn(width, embed))
        self.norm = LayerNormFp32(embed)
        self.layers = nn.ModuleList(
            PromptLayer(embed, max(embed // 64, 1), self.dropout) for _ in range(self.num_layers)
        )
        self.alpha = nn.Parameter(torch.full((embed,), self.alpha_init))
        for module in self.layers.modules():
            if isinstance(module, nn.Linear):
                nn.init.trunc_normal_(module.weight, std=0.02)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)

    def prompts(self, tokens: Tensor) -> Tensor:
        """Patch tokens ``(B, T, N, D)`` → video-conditioned class embeddings ``(B, K, E)``."""
        visual = (self.visual_norm(tokens) @ self.visual_proj.to(tokens.dtype)).mean(1)  # (B, N, E), frames averaged
        visual = self.norm(visual)
        text = self.class_embeddings.to(visual.dtype).expand(visual.shape[0], -1, -1)  # (B, K, E)
        generated = text
        for layer in self.layers:
            generated = layer(generated, visual)
        return text + self.alpha * generated

    def forward(self, x: Tensor, tokens: Tensor) -> Tensor:
        text = F.normalize(self.prompts(tokens).float(), dim=-1)  # (B, K, E)
        cosine = torch.einsum("be,bke->bk", F.normalize(x.float(), dim=-1), text)
        return scaled_logits(cosine, self.logit_scale, self.logit_bias)

    def extra_repr(self) -> str:
        return f"templates={len(self.templates)}, layers={self.num_layers}, alpha={self.alpha_init}"
