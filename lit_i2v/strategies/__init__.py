"""Transfer strategies of the survey, one file per method (paper cited at the top of each)."""

from lit_i2v.strategies.aim import AIM
from lit_i2v.strategies.base import TransferStrategy, VideoFeatures, freeze
from lit_i2v.strategies.bottleneck import AdaptFormer
from lit_i2v.strategies.compose import Compose
from lit_i2v.strategies.dist import DiST
from lit_i2v.strategies.evl import EVL
from lit_i2v.strategies.extra_model import ExtraModel, TimmImageModel, WithExtraModel
from lit_i2v.strategies.frozen import Frozen
from lit_i2v.strategies.full_finetune import FullFinetune
from lit_i2v.strategies.lora import LoRA
from lit_i2v.strategies.mllm import MultimodalLLM
from lit_i2v.strategies.moma import MoMa
from lit_i2v.strategies.partial import PartialFinetune
from lit_i2v.strategies.st_adapter import STAdapter
from lit_i2v.strategies.vita import VitaCLIP
from lit_i2v.strategies.vpt import VPT
from lit_i2v.strategies.xclip import XCLIP
from lit_i2v.strategies.zeroi2v import ZeroI2V

__all__ = [
    "AIM",
    "AdaptFormer",
    "Compose",
    "DiST",
    "EVL",
    "ExtraModel",
    "Frozen",
    "FullFinetune",
    "LoRA",
    "MoMa",
    "MultimodalLLM",
    "PartialFinetune",
    "STAdapter",
    "TransferStrategy",
    "TimmImageModel",
    "VPT",
    "VideoFeatures",
    "VitaCLIP",
    "WithExtraModel",
    "XCLIP",
    "ZeroI2V",
    "freeze",
]


def __getattr__(name: str):
    if name == "Strategy":  # its name until 2026-12, beside Lightning's own ``Strategy`` (``trainer.strategy``)
        import warnings

        warnings.warn("lit_i2v.strategies.Strategy is now TransferStrategy", DeprecationWarning, stacklevel=2)
        return TransferStrategy
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
