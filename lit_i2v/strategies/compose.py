"""Several strategies on one backbone, where the papers combine them (prompts with adapters, LoRA with adapters).

Survey (arXiv 2510.10671): parameter-efficient methods are often stacked, e.g. visual prompts beside adapters
(Vita-CLIP's prompts on a frozen tower, DualPath's adapters with token grids) or LoRA beside temporal adapters.
``Compose`` applies its parts to the backbone in order; a parameter trains if any part trains it, and belongs to
the part whose prefix it carries. Parts must run the image tower themselves (side networks such as EVL and DiST
compute their own features and cannot be stacked), their prefixes must differ, and no part may replace a module
that an earlier part has already replaced (the earlier part's change would silently be lost). A composition is not
merged as a whole.
"""

from __future__ import annotations

from torch import nn

from lit_i2v.backbones import CLIP
from lit_i2v.strategies.base import TransferStrategy


class Compose(TransferStrategy):
    """Args: strategies: the parts, applied in this order."""

    @classmethod
    def tiny(cls) -> Compose:
        from lit_i2v.strategies.lora import LoRA
        from lit_i2v.strategies.st_adapter import STAdapter

        return cls([LoRA(rank=4, targets=["attn.qkv"]), STAdapter(channels=16)])  # low-rank updates beside adapters

    @property
    def identity_at_init(self) -> bool:
        return all(part.identity_at_init for part in self.parts)

    @property
    def needs_projection(self) -> bool:
        return any(part.needs_projection for part in self.parts)

    @property
    def needs_class_token(self) -> bool:
        return any(part.needs_class_token for part in self.parts)

    def reference_at_init(self) -> TransferStrategy:
        changed = [
            ref for ref in (part.reference_at_init() for part in self.parts) if type(ref) is not TransferStrategy
        ]
        return Compose(changed) if changed else TransferStrategy()

    def __init__(self, strategies: list[TransferStrategy]) -> None:
        super().__init__()
        if not strategies:
            raise ValueError("transfer.strategies: give at least one strategy")
        own_forward = [type(s).__name__ for s in strategies if type(s).forward is not TransferStrategy.forward]
        if own_forward:
            raise ValueError(
                f"transfer.strategies: {own_forward} compute their own features (a side network or their own "
                "pooling) and cannot be composed with others; use them alone"
            )
        prefixes = [s.prefix for s in strategies if s.prefix]
        if len(prefixes) != len(set(prefixes)):
            raise ValueError(f"transfer.strategies: two parts share a prefix ({prefixes}); compose different methods")
        self.parts = nn.ModuleList(strategies)

    def apply(self, backbone: CLIP) -> None:
        replaced: dict[str, str] = {}  # module name -> the part that replaced it
        for part in self.parts:
            before = dict(backbone.named_modules())
            part.apply(backbone)
            name = type(part).__name__
            for path, module in backbone.named_modules():
                if path in before and before[path] is not module:
                    if path in replaced:
                        raise ValueError(
                            f"transfer.strategies: {name} replaces {path}, which {replaced[path]} replaced before it; "
                            "these two methods modify the same module and cannot be composed"
                        )
                    replaced[path] = name

    def trainable(self, name: str) -> bool:
        return any(part.trainable(name) for part in self.parts)

    def owns(self, name: str) -> bool:
        return any(part.owns(name) for part in self.parts)

    def extra_repr(self) -> str:
        return " + ".join(type(p).__name__ for p in self.parts)
