"""The CLIP image tower as a time-aware Vision Transformer.

Architecture: Radford et al., *Learning Transferable Visual Models From Natural Language Supervision* (ICML 2021),
the ViT of Dosovitskiy et al. (ICLR 2021) with a LayerNorm before the blocks (``norm_pre``) and QuickGELU.

Parameter names follow timm's ``VisionTransformer`` (``patch_embed.proj``, ``blocks.N.attn.qkv``, ``norm``,
``head``), so a timm CLIP state dict loads without renaming and OpenAI / open_clip state dicts convert with one table
(see ``weights.py``). timm's blocks are not used directly because their ``forward(x)`` has no way to carry the number
of frames, which every temporal strategy needs: here each block is called as ``block(x, num_frames)`` where ``x``
holds the frames of a clip folded into the batch, ``(B*T, L, D)``. Time is folded in exactly one place,
``VisionTransformer.forward_video``.

Seams for strategies: ``post_embed`` (after the position embedding) and, in each block, ``pre_attn`` and ``pre_mlp``
(:class:`Seam`): empty containers that strategies fill with named modules (``blocks.3.pre_mlp.st_adapter``), so
``print(model)`` shows the method and pretrained names never change. Methods that change the block's computation
itself replace the block, its attention or its MLP with a subclass that keeps the pretrained submodules.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint


class QuickGELU(nn.Module):
    """OpenAI CLIP's activation, ``x * sigmoid(1.702 x)``."""

    def forward(self, x: Tensor) -> Tensor:
        return x * torch.sigmoid(1.702 * x)


class GELUTanh(nn.GELU):
    """GELU with the tanh approximation (SigLIP's ``gelu_pytorch_tanh``)."""

    def __init__(self) -> None:
        super().__init__(approximate="tanh")


ACTIVATIONS: dict[str, type[nn.Module]] = {"quick_gelu": QuickGELU, "gelu": nn.GELU, "gelu_tanh": GELUTanh}


class LayerNormFp32(nn.LayerNorm):
    """LayerNorm computed in fp32 whatever the autocast dtype, cast back to the input dtype."""

    def forward(self, x: Tensor) -> Tensor:
        weight = self.weight.float() if self.weight is not None else None
        bias = self.bias.float() if self.bias is not None else None
        return F.layer_norm(x.float(), self.normalized_shape, weight, bias, self.eps).to(x.dtype)


class Seam(nn.ModuleDict):
    """A named insertion point in a block: applies its modules in order as ``x = m(x, num_frames)``.

    Empty by default (the identity). Strategies add modules under their own name, e.g.
    ``block.pre_mlp["st_adapter"] = STAdapter(...)``.
    """

    def forward(self, x: Tensor, num_frames: int) -> Tensor:
        for module in self.values():
            x = module(x, num_frames)
        return x


class Attention(nn.Module):
    """Multi-head self-attention with a fused ``qkv`` projection (timm's layout) and PyTorch SDPA."""

    def __init__(self, dim: int, num_heads: int) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"width {dim} is not divisible by {num_heads} heads")
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.qkv = nn.Linear(dim, dim * 3)
        self.proj = nn.Linear(dim, dim)

    def split_heads(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """``(N, L, D)`` → q, k, v each ``(N, heads, L, head_dim)``."""
        n, length, _ = x.shape
        qkv = self.qkv(x).reshape(n, length, 3, self.num_heads, self.head_dim)  # (N, L, 3, H, Dh)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # each (N, H, L, Dh)
        return q, k, v

    def merge_heads(self, x: Tensor) -> Tensor:
        """``(N, heads, L, head_dim)`` → projected ``(N, L, D)``."""
        x = x.transpose(1, 2).flatten(2)  # (N, L, D)
        return self.proj(x)

    def forward(self, x: Tensor, num_frames: int) -> Tensor:
        q, k, v = self.split_heads(x)
        return self.merge_heads(F.scaled_dot_product_attention(q, k, v))


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int, act_layer: type[nn.Module]) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = act_layer()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(self.act(self.fc1(x)))


class DropPath(nn.Module):
    """Stochastic depth per sample (Huang et al. 2016); the identity when ``p == 0`` or in eval."""

    def __init__(self, p: float = 0.0) -> None:
        super().__init__()
        self.p = p

    def forward(self, x: Tensor) -> Tensor:
        if self.p == 0.0 or not self.training:
            return x
        keep = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(1.0 - self.p)
        return x * keep / (1.0 - self.p)

    def extra_repr(self) -> str:
        return f"p={self.p}"


class Block(nn.Module):
    """Pre-norm transformer block: ``x + attn(norm1(x))`` then ``x + mlp(norm2(x))``, with seams before each."""

    def __init__(
        self,
        dim: int,
        num_heads: int,
        mlp_ratio: float,
        act_layer: type[nn.Module],
        drop_path: float = 0.0,
        eps: float = 1e-5,
    ) -> None:
        super().__init__()
        self.pre_attn = Seam()
        self.norm1 = LayerNormFp32(dim, eps=eps)
        self.attn = Attention(dim, num_heads)
        self.drop_path1 = DropPath(drop_path)
        self.pre_mlp = Seam()
        self.norm2 = LayerNormFp32(dim, eps=eps)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), act_layer)
        self.drop_path2 = DropPath(drop_path)

    def forward(self, x: Tensor, num_frames: int) -> Tensor:
        x = self.pre_attn(x, num_frames)
        x = x + self.drop_path1(self.attn(self.norm1(x), num_frames))
        x = self.pre_mlp(x, num_frames)
        x = x + self.drop_path2(self.mlp(self.norm2(x)))
        return x


class AttentionPool(nn.Module):
    """Multi-head attention pooling ("MAP", SigLIP's image head): a learned query attends to the tokens, then a
    residual MLP. Names follow timm's ``AttentionPoolLatent`` (``latent``, ``q``, ``kv``, ``proj``, ``norm``, ``mlp``).
    """

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float, act_layer: type[nn.Module], eps: float) -> None:
        super().__init__()
        self.num_heads, self.head_dim = num_heads, dim // num_heads
        self.latent = nn.Parameter(torch.zeros(1, 1, dim))
        self.q = nn.Linear(dim, dim)
        self.kv = nn.Linear(dim, 2 * dim)
        self.proj = nn.Linear(dim, dim)
        self.norm = LayerNormFp32(dim, eps=eps)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), act_layer)

    def forward(self, x: Tensor) -> Tensor:
        """Tokens ``(..., L, D)`` → one pooled feature ``(..., D)``."""
        lead, (length, dim) = x.shape[:-2], x.shape[-2:]
        x = x.reshape(-1, length, dim)  # (N, L, D)
        n = x.shape[0]
        # one query for every sample: projected once (the parameter itself enters the layer, not a view of it, which
        # PyTorch's FLOP counter cannot follow under no_grad), then broadcast
        q = self.q(self.latent).to(x.dtype).expand(n, -1, -1).view(n, 1, self.num_heads, self.head_dim).transpose(1, 2)
        k, v = self.kv(x).view(n, length, 2, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4).unbind(0)
        pooled = self.proj(F.scaled_dot_product_attention(q, k, v).transpose(1, 2).flatten(2))  # (N, 1, D)
        pooled = pooled + self.mlp(self.norm(pooled))
        return pooled[:, 0].reshape(*lead, dim)


class VisionTransformer(nn.Module):
    """CLIP's image tower with timm's feature API, taking images ``(N, 3, H, W)`` or videos ``(B, T, 3, H, W)``.

    Args:
        image_size: input resolution the position embedding is made for.
        patch_size: side of the square patches.
        width: token width D.
        layers: number of blocks.
        heads: attention heads.
        mlp_ratio: MLP hidden width over D.
        embed_dim: output width E of the projection ``head`` into the joint image-text space.
        act: ``"quick_gelu"`` (OpenAI CLIP), ``"gelu"`` (most open_clip LAION models) or ``"gelu_tanh"`` (SigLIP).
        drop_path_rate: stochastic depth at the last block, increasing linearly from 0 at the first.
        class_token: a class token before the patches (CLIP); without one (SigLIP) ``num_prefix_tokens`` is 0.
        patch_bias: a bias in the patch embedding (SigLIP).
        pre_norm: a LayerNorm before the blocks (``norm_pre``: CLIP; SigLIP has none).
        pool: ``token`` (the class token, CLIP), ``map`` (attention pooling, ``attn_pool``: SigLIP) or ``avg`` (the
            mean of the patch tokens: a tower whose pooling head was dropped, LLaVA-OneVision's SigLIP).
        eps: LayerNorm epsilon (1e-5 CLIP, 1e-6 SigLIP).
        project: a projection ``head`` into the joint space (CLIP); SigLIP's pooled feature is its embedding
            (``head`` is then the identity and ``embed_dim`` the width).
    """

    def __init__(
        self,
        image_size: int = 224,
        patch_size: int = 16,
        width: int = 768,
        layers: int = 12,
        heads: int = 12,
        mlp_ratio: float = 4.0,
        embed_dim: int = 512,
        act: str = "quick_gelu",
        drop_path_rate: float = 0.0,
        class_token: bool = True,
        patch_bias: bool = False,
        pre_norm: bool = True,
        pool: str = "token",
        eps: float = 1e-5,
        project: bool = True,
    ) -> None:
        super().__init__()
        # a size that is not a multiple of the patch (SigLIP SO400M/14 at 384 px: 27x27 patches) leaves the last
        # pixels unseen, as the released model's convolution (and timm's) does
        if pool not in ("token", "map", "avg") or (pool == "token" and not class_token):
            raise ValueError(f"pool {pool!r}: 'token' needs a class token; 'map' pools by attention; 'avg' averages")
        act_layer = ACTIVATIONS[act]
        self.image_size = image_size
        self.patch_size = patch_size
        self.grid_size = image_size // patch_size
        self.num_prefix_tokens = int(class_token)
        self.pool = pool
        self.width = self.num_features = width
        self.embed_dim = embed_dim if project else width
        self.grad_checkpointing = False

        self.patch_embed = nn.Module()
        self.patch_embed.proj = nn.Conv2d(3, width, kernel_size=patch_size, stride=patch_size, bias=patch_bias)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, width)) if class_token else None
        self.pos_embed = nn.Parameter(torch.zeros(1, self.num_prefix_tokens + self.grid_size**2, width))
        self.post_embed = Seam()  # after the position embedding: temporal embeddings, prompt tokens
        self.norm_pre = LayerNormFp32(width, eps=eps) if pre_norm else nn.Identity()
        rates = [drop_path_rate * i / max(layers - 1, 1) for i in range(layers)]
        self.blocks = nn.ModuleList(Block(width, heads, mlp_ratio, act_layer, rate, eps) for rate in rates)
        self.norm = LayerNormFp32(width, eps=eps)
        self.attn_pool = AttentionPool(width, heads, mlp_ratio, act_layer, eps) if pool == "map" else None
        self.head = nn.Linear(width, embed_dim, bias=False) if project else nn.Identity()
        self.init_weights()

    def init_weights(self) -> None:
        """OpenAI CLIP's initialisation, so that a tower built without weights is a sensible random model."""
        scale = self.width**-0.5
        if self.cls_token is not None:
            nn.init.normal_(self.cls_token, std=scale)
        if self.attn_pool is not None:
            nn.init.normal_(self.attn_pool.latent, std=scale)
        nn.init.normal_(self.pos_embed, std=scale)
        if isinstance(self.head, nn.Linear):
            nn.init.normal_(self.head.weight, std=scale)
        proj_std = scale * (2 * len(self.blocks)) ** -0.5
        for block in self.blocks:
            nn.init.normal_(block.attn.qkv.weight, std=scale)
            nn.init.zeros_(block.attn.qkv.bias)
            nn.init.normal_(block.attn.proj.weight, std=proj_std)
            nn.init.zeros_(block.attn.proj.bias)
            nn.init.normal_(block.mlp.fc1.weight, std=(2 * self.width) ** -0.5)
            nn.init.normal_(block.mlp.fc2.weight, std=proj_std)

    # ---- timm's feature API -----------------------------------------------------------------------------------

    def no_weight_decay(self) -> set[str]:
        """Parameters that AdamW should not decay (besides norms and biases, which the task excludes by shape)."""
        return {"cls_token", "pos_embed", "attn_pool.latent"}

    def layer_id(self, name: str) -> int:
        """Layer of a parameter for layer-wise lr decay: 0 embeddings, i+1 for block i, L+1 the final norm/head."""
        if name.startswith(("cls_token", "pos_embed", "patch_embed", "post_embed", "norm_pre")):
            return 0
        if name.startswith("blocks."):
            return int(name.split(".")[1]) + 1
        return len(self.blocks) + 1

    def group_matcher(self, coarse: bool = False) -> dict:
        """timm's parameter-group matcher (``timm.models.group_parameters``, ``timm.optim`` layer decay): the same
        layers as ``layer_id``, so timm's optimizer factories group this tower as lit_i2v does (``coarse`` changes
        nothing: one block is already one group)."""
        return {
            "stem": r"^cls_token|^pos_embed|^patch_embed|^post_embed|^norm_pre",
            "blocks": [(r"^blocks\.(\d+)", None), (r"^norm\.|^attn_pool\.|^head\.", (len(self.blocks),))],  # L+1
        }

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        self.grad_checkpointing = enable

    def embed(self, x: Tensor, num_frames: int = 1) -> Tensor:
        """Images ``(N, 3, H, W)`` → tokens ``(N, num_prefix_tokens + H/p * W/p, D)`` after ``norm_pre``."""
        if x.shape[-2:] != (self.image_size, self.image_size):
            raise ValueError(
                f"input is {tuple(x.shape[-2:])} pixels but this tower was built for {self.image_size}: set the "
                f"data's crop size to {self.image_size}"
            )
        x = self.patch_embed.proj(x).flatten(2).transpose(1, 2)  # (N, H/p * W/p, D)
        if self.cls_token is not None:
            x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1).to(x.dtype), x], dim=1)
        x = x + self.pos_embed.to(x.dtype)  # (N, L, D)
        return self.norm_pre(self.post_embed(x, num_frames))

    def run_block(self, index: int, x: Tensor, num_frames: int) -> Tensor:
        block = self.blocks[index]
        if self.grad_checkpointing and self.training and torch.is_grad_enabled():
            return checkpoint(block, x, num_frames, use_reentrant=False)
        return block(x, num_frames)

    def forward_features(self, x: Tensor, num_frames: int = 1) -> Tensor:
        """Images ``(N, 3, H, W)``, with ``N = B*T`` for video, → all tokens after the final norm ``(N, L, D)``."""
        x = self.embed(x, num_frames)
        for i in range(len(self.blocks)):
            x = self.run_block(i, x, num_frames)
        return self.norm(x)

    def forward_intermediates(
        self, x: Tensor, indices: int | Sequence[int] = 1, num_frames: int = 1, norm: bool = False
    ) -> tuple[Tensor, list[Tensor]]:
        """Final tokens and the outputs of chosen blocks (the last ``indices`` blocks if an int), each ``(N, L, D)``.

        ``norm=True`` applies the final norm to the intermediates too (EVL reads raw block outputs: the default).
        """
        depth = len(self.blocks)
        wanted = set(range(depth - indices, depth)) if isinstance(indices, int) else {i % depth for i in indices}
        x = self.embed(x, num_frames)
        intermediates = []
        for i in range(depth):
            x = self.run_block(i, x, num_frames)
            if i in wanted:
                intermediates.append(self.norm(x) if norm else x)
        return self.norm(x), intermediates

    def forward_head(self, tokens: Tensor, project: bool = True) -> Tensor:
        """Tokens ``(..., L, D)`` → the pooled feature (the class token, or attention pooling), projected into the
        joint space ``(..., E)`` if ``project``."""
        if self.pool == "avg":
            pooled = tokens[..., self.num_prefix_tokens :, :].mean(-2)
        else:
            pooled = tokens[..., 0, :] if self.pool == "token" else self.attn_pool(tokens)
        return self.head(pooled) if project else pooled

    def forward(self, x: Tensor) -> Tensor:
        """Images ``(N, 3, H, W)`` → image embeddings ``(N, E)``, as CLIP's ``encode_image``."""
        return self.forward_head(self.forward_features(x))

    # ---- time --------------------------------------------------------------------------------------------------

    def forward_video(self, video: Tensor, project: bool = False) -> Tensor:
        """Clips ``(B, T, 3, H, W)`` → per-frame features ``(B, T, D)`` (or ``(B, T, E)`` if ``project``).

        The one place where time is folded into the batch; blocks see ``(B*T, L, D)`` and ``num_frames=T``.
        """
        b, t = video.shape[:2]
        tokens = self.forward_features(video.flatten(0, 1), num_frames=t)  # (B*T, L, D)
        return self.forward_head(tokens, project=project).unflatten(0, (b, t))  # (B, T, D|E)


def resample_pos_embed(pos_embed: Tensor, grid_size: int, num_prefix_tokens: int = 1) -> Tensor:
    """Bicubically resize a ``(1, prefix + g*g, D)`` position embedding to a new grid, keeping the prefix positions
    (the class token's)."""
    cls, grid = pos_embed[:, :num_prefix_tokens], pos_embed[:, num_prefix_tokens:]
    old = math.isqrt(grid.shape[1])
    if old == grid_size:
        return pos_embed
    grid = grid.reshape(1, old, old, -1).permute(0, 3, 1, 2)  # (1, D, g, g)
    grid = F.interpolate(grid.float(), size=(grid_size, grid_size), mode="bicubic", align_corners=False)
    grid = grid.permute(0, 2, 3, 1).reshape(1, grid_size * grid_size, -1).to(pos_embed.dtype)
    return torch.cat([cls, grid], dim=1)
