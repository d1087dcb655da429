"""X-CLIP's cross-frame communication: every block sees one message token per frame, exchanged across frames.

Ni et al., *Expanding Language-Image Pretrained Models for General Video Recognition*, ECCV 2022.
Official code: github.com/microsoft/VideoX (``X-CLIP/models/cct.py``: ``CrossFramelAttentionBlock``).

In each block, before attention: the frame's class token (the block's input) becomes a message through a linear
layer; the T messages of a clip attend to each other (``m + MSA(LN m)``); each frame's message is appended to that
frame's tokens, so the block's own (pretrained) attention reads it; after attention the message is dropped and the
MLP runs on the frame's tokens only. The message modules are new; the rest of the image tower is fine-tuned with it
(the paper trains the whole video encoder; the text encoder stays frozen, its class embeddings computed once).

The other two parts of X-CLIP are modules of their own, so they compose with other strategies:

- the multi-frame integration transformer is ``lit_i2v.heads.TemporalTransformer(layers=1, heads=E // 64)`` on
  CLIP-projected frame features (official ``mit.py``: position embedding, transformer, residual, mean);
- the video-specific prompting is ``lit_i2v.heads.VideoPromptHead``.

Messages add a token to every attention, so the output differs from the image model's at step 0 (not an identity-at-
init method). Difference: the official message attention has drop-path tied to the block's; here it has none.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from lit_i2v.backbones import CLIP
from lit_i2v.backbones.vit import LayerNormFp32
from lit_i2v.strategies.base import TransferStrategy, select_blocks


class CrossFrameMessage(nn.Module):
    """``pre_attn`` seam: appends to each frame's tokens its message, after the messages attend across frames."""

    def __init__(self, width: int, heads: int) -> None:
        super().__init__()
        self.fc = nn.Linear(width, width)
        self.norm = LayerNormFp32(width)
        self.attn = nn.MultiheadAttention(width, heads, batch_first=True)
        nn.init.trunc_normal_(self.fc.weight, std=0.02)
        nn.init.zeros_(self.fc.bias)

    def forward(self, x: Tensor, num_frames: int) -> Tensor:
        bt, _, width = x.shape
        message = self.fc(x[:, 0]).view(bt // num_frames, num_frames, width)  # (B, T, D) from the class tokens
        h = self.norm(message)
        message = message + self.attn(h, h, h, need_weights=False)[0]  # frames exchange information
        return torch.cat([x, message.reshape(bt, 1, width)], dim=1)  # (B*T, 1 + L + 1, D)


class DropMessage(nn.Module):
    """``pre_mlp`` seam: removes the message token again, so the MLP and the next block see the frame's tokens."""

    def forward(self, x: Tensor, num_frames: int) -> Tensor:
        return x[:, :-1]


class XCLIP(TransferStrategy):
    """Args:
    blocks: blocks that get message tokens (None: all, as the paper).
    train_tower: fine-tune the image tower with the messages (the paper); False trains the messages only.
    """

    prefix = "xclip"
    needs_class_token = True

    identity_at_init = False  # message tokens join every block's attention

    def __init__(self, blocks: list[int] | None = None, train_tower: bool = True) -> None:
        super().__init__()
        self.blocks, self.train_tower = blocks, train_tower

    def apply(self, backbone: CLIP) -> None:
        visual = backbone.visual
        heads = visual.blocks[0].attn.num_heads
        for block in select_blocks(visual, self.blocks):
            block.pre_attn[self.prefix] = CrossFrameMessage(visual.width, heads)
            block.pre_mlp[self.prefix] = DropMessage()

    def trainable(self, name: str) -> bool:
        if f".{self.prefix}." in name:
            return True
        return self.train_tower and name.startswith("visual.")

    def extra_repr(self) -> str:
        return f"blocks={self.blocks or 'all'}, train_tower={self.train_tower}"
