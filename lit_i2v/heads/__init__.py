"""Temporal modules and task heads; they always train (unless built frozen, as the zero-shot classifier)."""

from lit_i2v.heads.caption_decoder import CaptionDecoder
from lit_i2v.heads.classifier import Head, LinearHead, PromptEncoderHead, TextClassifierHead
from lit_i2v.heads.coop import CoOpHead
from lit_i2v.heads.prefix_lm import PrefixLM
from lit_i2v.heads.span import SpanHead
from lit_i2v.heads.temporal import LSTMPool, MeanPool, Temporal, TemporalConv1D, TemporalTransformer
from lit_i2v.heads.video_prompt import VideoPromptHead
from lit_i2v.heads.xpool import XPool

__all__ = [
    "CaptionDecoder",
    "CoOpHead",
    "Head",
    "LSTMPool",
    "LinearHead",
    "MeanPool",
    "PrefixLM",
    "PromptEncoderHead",
    "SpanHead",
    "Temporal",
    "TemporalConv1D",
    "TemporalTransformer",
    "TextClassifierHead",
    "VideoPromptHead",
    "XPool",
]
