"""How a multimodal LLM sees a clip: frame tokens ``(B, T, N, D)`` → the visual tokens its prompt holds, one method
per file (paper cited on top). Each declares whether it acts before the projector (on the vision tower's features)
or after it (on the LLM's input embeddings), as its method does."""

from lit_i2v.heads.frame_tokens.base import FrameTokens, TokenAggregator
from lit_i2v.heads.frame_tokens.ig_vlm import ImageGrid
from lit_i2v.heads.frame_tokens.next_video import NextVideoPool
from lit_i2v.heads.frame_tokens.onevision import OneVisionPool
from lit_i2v.heads.frame_tokens.pllava import PLLaVAPool
from lit_i2v.heads.frame_tokens.slowfast_llava import SlowFastPool
from lit_i2v.heads.frame_tokens.video_chatgpt import VideoChatGPTPool

__all__ = ["FrameTokens", "ImageGrid", "NextVideoPool", "OneVisionPool", "PLLaVAPool", "SlowFastPool",
           "TokenAggregator", "VideoChatGPTPool"]  # fmt: skip
