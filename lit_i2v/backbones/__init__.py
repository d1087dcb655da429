"""Image-language backbones: CLIP towers, tokenizer, weight formats and the name registry; LLaVA-family multimodal
LLMs (their vision tower in lit_i2v, projector and LLM from transformers)."""

from lit_i2v.backbones.clip import CLIP, create_clip, scaled_logits, sigmoid_pair_loss
from lit_i2v.backbones.extractor import FeatureExtractor
from lit_i2v.backbones.llava import LLaVA
from lit_i2v.backbones.registry import ARCHS, PRETRAINED, list_pretrained
from lit_i2v.backbones.tokenizer import Tokenizer
from lit_i2v.backbones.weights import WeightsError, read_checkpoint

__all__ = [
    "ARCHS",
    "CLIP",
    "FeatureExtractor",
    "LLaVA",
    "PRETRAINED",
    "Tokenizer",
    "WeightsError",
    "create_clip",
    "list_pretrained",
    "read_checkpoint",
    "scaled_logits",
    "sigmoid_pair_loss",
]
