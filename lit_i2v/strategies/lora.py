"""LoRA: low-rank updates of chosen weight matrices, mergeable into them after training.

Hu et al., *LoRA: Low-Rank Adaptation of Large Language Models*, ICLR 2022; used for image-to-video transfer by
DiscoVLA (survey, "modified features / LoRA"). Official code: github.com/microsoft/LoRA.

A target ``nn.Linear`` is replaced by :class:`LoRALinear`, which *is* an ``nn.Linear`` (same ``weight`` and ``bias``
names) with two more parameters: ``y = W x + b + (alpha / r) * B A dropout(x)``, ``A`` (r x in) Kaiming-uniform,
``B`` (out x r) zero, so the model is unchanged at step 0. ``merge`` folds ``(alpha / r) B A`` into ``W`` and puts
a plain ``nn.Linear`` back: no extra parameters or FLOPs at inference.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lit_i2v.backbones import CLIP
from lit_i2v.strategies.base import TransferStrategy


class LoRALinear(nn.Linear):
    """An ``nn.Linear`` holding the base layer's parameters plus ``lora_A``, ``lora_B``."""

    def __init__(self, base: nn.Linear, rank: int, alpha: float, dropout: float = 0.0) -> None:
        nn.Module.__init__(self)
        self.in_features, self.out_features = base.in_features, base.out_features
        self.weight, self.bias = base.weight, base.bias
        self.rank, self.scaling = rank, alpha / rank
        self.lora_A = nn.Parameter(torch.empty(rank, self.in_features, dtype=base.weight.dtype))
        self.lora_B = nn.Parameter(torch.zeros(self.out_features, rank, dtype=base.weight.dtype))
        nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))
        self.lora_dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        update = F.linear(F.linear(self.lora_dropout(x), self.lora_A), self.lora_B)  # (..., out)
        return F.linear(x, self.weight, self.bias) + self.scaling * update

    @torch.no_grad()
    def merged(self) -> nn.Linear:
        """A plain ``nn.Linear`` computing the same function."""
        linear = nn.Linear(self.in_features, self.out_features, bias=self.bias is not None)
        linear.to(self.weight.device, self.weight.dtype)
        linear.weight.copy_(self.weight + self.scaling * self.lora_B @ self.lora_A)
        if self.bias is not None:
            linear.bias.copy_(self.bias)
        linear.weight.requires_grad_(self.weight.requires_grad)
        return linear

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, rank={self.rank}, scaling={self.scaling:g}"


class LoRA(TransferStrategy):
    """Args:
    targets: suffixes of the linear layers to adapt within each block (``attn.qkv``, ``attn.proj``, ``mlp.fc1``,
        ``mlp.fc2``).
    rank: r.
    alpha: scaling numerator (the update is multiplied by alpha / r).
    dropout: dropout on the LoRA branch's input.
    towers: towers whose blocks are adapted (``visual``, ``text``).
    """

    prefix = "lora_"
    mergeable = True

    @classmethod
    def tiny(cls) -> LoRA:
        return cls(rank=4, targets=["attn.qkv", "attn.proj", "mlp.fc1", "mlp.fc2"])

    def __init__(
        self,
        targets: list[str] | None = None,
        rank: int = 8,
        alpha: float = 16.0,
        dropout: float = 0.0,
        towers: list[str] | None = None,
    ) -> None:
        super().__init__()
        self.targets = targets or ["attn.qkv", "attn.proj"]
        self.rank, self.alpha, self.dropout = rank, alpha, dropout
        self.towers = towers or ["visual"]

    def apply(self, backbone: CLIP) -> None:
        replaced = []
        for tower in self.towers:
            for name, module in list(getattr(backbone, tower).named_modules()):
                if isinstance(module, nn.Linear) and not isinstance(module, LoRALinear) and name.startswith("blocks.") \
                        and name.endswith(tuple(self.targets)):  # fmt: skip
                    parent_name, _, child = name.rpartition(".")
                    parent = getattr(backbone, tower).get_submodule(parent_name)
                    setattr(parent, child, LoRALinear(module, self.rank, self.alpha, self.dropout))
                    replaced.append(f"{tower}.{name}")
        if not replaced:
            linears = [n for n, m in backbone.visual.named_modules() if isinstance(m, nn.Linear)][:6]
            raise ValueError(
                f"transfer.targets {self.targets} match no linear layer in {self.towers}; "
                f"layers are named like {linears}"
            )

    def trainable(self, name: str) -> bool:
        return ".lora_" in name

    def owns(self, name: str) -> bool:
        return ".lora_" in name  # lora_A / lora_B beside each adapted layer's weight

    def merge(self, backbone: CLIP) -> None:
        for name, module in list(backbone.named_modules()):
            if isinstance(module, LoRALinear):
                parent_name, _, child = name.rpartition(".")
                setattr(backbone.get_submodule(parent_name), child, module.merged())

    def extra_repr(self) -> str:
        return f"targets={self.targets}, rank={self.rank}, alpha={self.alpha}, towers={self.towers}"
