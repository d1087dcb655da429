"""What trains in a multimodal LLM: a vision-side strategy on its tower, its projector, LoRA on its LLM.

The transfers of image LLaVA models to video differ mainly in this choice (the survey's post-network tuning and
LoRA families): nothing (training-free: SlowFast-LLaVA, IG-VLM), the projector (Video-ChatGPT), LoRA on the LLM's
attention (PLLaVA: rank 128, alpha 32 on q and v, Xu et al. 2024), a vision-side strategy (any of lit_i2v's:
ST-Adapter, AIM, LoRA, ...), or combinations. One predicate over parameter names decides it, as for CLIP:
``visual.*`` by the vision strategy, ``mllm.model.multi_modal_projector.*`` by ``projector``, the LLM's
``lora_A``/``lora_B`` (LoRA layers are :class:`LoRALinear`: names unchanged, mergeable) by ``llm_lora_rank``, and the
whole LLM (with its output layer) by ``language_model``.
"""

from __future__ import annotations

from torch import Tensor, nn

from lit_i2v.strategies.base import TransferStrategy, VideoFeatures
from lit_i2v.strategies.frozen import Frozen
from lit_i2v.strategies.lora import LoRALinear

PROJECTOR = "mllm.model.multi_modal_projector."
LLM = "mllm.model.language_model."


class MultimodalLLM(TransferStrategy):
    """Args:
    vision: the strategy for the vision tower (default: frozen).
    projector: train the projector.
    language_model: train the whole LLM (a tiny or randomly initialised one; for 7B models use LoRA).
    llm_lora_rank: rank of LoRA on the LLM's ``llm_lora_targets`` (0: none).
    llm_lora_alpha: LoRA's scaling numerator.
    llm_lora_targets: suffixes of the LLM's linear layers to adapt (``self_attn.q_proj``, ``self_attn.v_proj``).
    """

    identity_at_init = True

    def __init__(
        self,
        vision: TransferStrategy | None = None,
        projector: bool = False,
        language_model: bool = False,
        llm_lora_rank: int = 0,
        llm_lora_alpha: float = 32.0,
        llm_lora_targets: list[str] | None = None,
    ) -> None:
        super().__init__()
        self.vision = vision or Frozen()
        self.projector, self.language_model, self.llm_lora_rank = projector, language_model, llm_lora_rank
        self.llm_lora_alpha = llm_lora_alpha
        self.llm_lora_targets = list(llm_lora_targets or ["self_attn.q_proj", "self_attn.v_proj"])

    @property
    def needs_class_token(self) -> bool:  # type: ignore[override]
        return self.vision.needs_class_token

    @property
    def mergeable(self) -> bool:  # type: ignore[override]
        """LoRA on the LLM folds into its weights; a vision strategy must be mergeable too, or add nothing."""
        adds = not isinstance(self.vision, Frozen)
        return (self.llm_lora_rank > 0 or self.vision.mergeable) and (not adds or self.vision.mergeable)

    def reference_at_init(self) -> TransferStrategy:
        return MultimodalLLM(self.vision.reference_at_init())

    def apply(self, backbone: nn.Module) -> None:
        self.vision.apply(backbone)
        if any(True for _ in self.vision.parameters()):  # EVL, DiST, an extra model: parameters beside the tower
            raise ValueError(
                f"transfer.vision: {type(self.vision).__name__} is a network beside the tower, and the LLM reads the "
                "tower's own patch tokens, which it leaves unchanged; use a strategy that adapts the tower in place"
            )
        if not self.llm_lora_rank:
            return
        replaced = []
        llm = backbone.language_model
        for name, module in list(llm.named_modules()):
            if isinstance(module, nn.Linear) and not isinstance(module, LoRALinear) and \
                    name.endswith(tuple(self.llm_lora_targets)):  # fmt: skip
                parent, _, child = name.rpartition(".")
                setattr(llm.get_submodule(parent), child, LoRALinear(module, self.llm_lora_rank, self.llm_lora_alpha))
                replaced.append(name)
        if not replaced:
            linears = [n for n, m in llm.named_modules() if isinstance(m, nn.Linear)][:6]
            raise ValueError(
                f"transfer.llm_lora_targets {self.llm_lora_targets} match no linear layer of the LLM; its layers are "
                f"named like {linears}"
            )

    def trainable(self, name: str) -> bool:
        if name.startswith("visual."):
            return self.vision.trainable(name)
        if name.startswith(PROJECTOR):
            return self.projector
        if name.startswith(LLM) or name.startswith("mllm.lm_head."):
            return self.language_model or (bool(self.llm_lora_rank) and ".lora_" in name)
        return False

    def owns(self, name: str) -> bool:
        return self.vision.owns(name) or (name.startswith(LLM) and ".lora_" in name)

    def forward(self, backbone: nn.Module, video: Tensor, project: bool = False) -> Tensor:
        return self.vision(backbone, video, project=project)

    def encode(self, backbone: nn.Module, video: Tensor, project: bool = False, tokens: bool = False) -> VideoFeatures:
        return self.vision.encode(backbone, video, project=project, tokens=tokens)

    def merge(self, backbone: nn.Module) -> None:
        if not self.mergeable:
            raise NotImplementedError(f"{type(self.vision).__name__} cannot be merged into the tower's weights")
        for name, module in list(backbone.language_model.named_modules()):
            if isinstance(module, LoRALinear):
                parent, _, child = name.rpartition(".")
                setattr(backbone.language_model.get_submodule(parent), child, module.merged())
        if self.vision.mergeable:
            self.vision.merge(backbone)

    def extra_repr(self) -> str:
        return (
            f"projector={self.projector}, language_model={self.language_model}, llm_lora_rank={self.llm_lora_rank}, "
            f"targets={self.llm_lora_targets}"
        )
