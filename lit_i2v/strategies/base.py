"""What every transfer strategy is: a module that modifies a loaded backbone and says, by parameter name, what trains.

A strategy

1. ``apply(backbone)``: changes the backbone in place, once: inserts modules into block seams, replaces modules
   (keeping the pretrained parameter names), or nothing at all;
2. ``trainable(name)``: the one predicate over backbone parameter names (``visual.blocks.3.attn.qkv.weight``) that
   decides what trains, what the optimizer sees, and what a trainable-only checkpoint holds;
3. ``forward(backbone, video)``: turns normalised clips ``(B, T, 3, H, W)`` into per-frame features ``(B, T, C)``.
   The default runs the image tower frame by frame; side-tuning methods override it to run their own network;
4. ``encode(backbone, video, tokens=True)``: the same features and, beside them, the last block's patch tokens
   ``(B, T, N, D)`` (prefix tokens removed, by the tower's ``num_prefix_tokens``) in a ``VideoFeatures``: what
   heads that read patches (video-conditioned prompts, captioning decoders, multimodal LLMs) take. Side networks
   hand the frozen tower's tokens they read.

Parameters a strategy owns outside the backbone (a side network) are its own submodules and always train. When
no backbone parameter trains, the backbone runs under ``torch.no_grad()``, so no activations are kept for backward.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from lit_i2v.backbones import CLIP


@dataclass
class VideoFeatures:
    """What a strategy hands a task.

    Attributes:
        frames: ``(B, T', C)``, one vector per frame: tower width D, or E when projected; T' = 1 for a strategy
            that pools the clip itself (EVL's query, DiST).
        tokens: ``(B, T, N, D)``, the patch tokens of the last block before the final norm, without prefix tokens
            (class token, registers); None unless asked for. T is the frames the tower saw (DiST: every alpha-th).
    """

    frames: Tensor
    tokens: Tensor | None = None


class TransferStrategy(nn.Module):
    """Base class: the backbone unchanged; what trains is what the strategy adds (``owns``).

    ``prefix`` names the parameters a strategy adds (``visual.blocks.0.pre_mlp.st_adapter.down.weight``).
    ``mergeable`` strategies fold their parameters into the backbone's weights with ``merge``.

    Facts each strategy declares beside its code, which the tests read for every exported strategy
    (``tests/test_strategies.py``), so that a new method is tested the moment it is exported:

    - ``identity_at_init``: at step 0 the adapted model computes what ``reference_at_init()`` computes (the
      pretrained model, frozen), because what the method adds starts at zero; False for methods that add tokens or
      a side network whose output cannot start at zero (prompts, EVL's query);
    - ``needs_projection``: its features lie in CLIP's joint space only, so heads must read projected features;
    - ``needs_class_token``: it reads the tower's class token (messages, prompts or cues built on it), so a tower
      without one (SigLIP) is refused by name until a surrogate is built;
    - ``tiny()``: a configuration small enough for the test towers (``ViT-T-8-test``: width 64, 2 blocks, 2 heads).
    """

    prefix = ""
    mergeable = False
    identity_at_init = True
    needs_projection = False
    needs_class_token = False

    @classmethod
    def tiny(cls) -> TransferStrategy:
        """This strategy configured for the tiny test towers."""
        return cls()

    def reference_at_init(self) -> TransferStrategy:
        """The strategy whose model this one equals at step 0 when ``identity_at_init``: the frozen pretrained tower
        (ZeroI2V: its merged architecture, whose head shift has no parameters to start at zero)."""
        return TransferStrategy()

    def apply(self, backbone: CLIP) -> None:
        """Modify ``backbone`` in place. Called once, before the trainable set is decided."""

    def trainable(self, name: str) -> bool:
        """Whether the backbone parameter ``name`` trains: by default, exactly what the strategy added."""
        return self.owns(name)

    def owns(self, name: str) -> bool:
        """Whether the backbone parameter ``name`` was added by this strategy: a module named by the prefix
        (``blocks.0.pre_mlp.st_adapter.down``) or by the prefix and a role (``blocks.0.aim_mlp.down``)."""
        return bool(self.prefix) and (f".{self.prefix}." in name or f".{self.prefix}_" in name)

    def forward(self, backbone: CLIP, video: Tensor, project: bool = False) -> Tensor:
        """Normalised clips ``(B, T, 3, H, W)`` → per-frame features ``(B, T, D)``, or ``(B, T, E)`` if ``project``."""
        with self._tower_context(backbone):
            return backbone.encode_video(video, project=project)

    def encode(self, backbone: CLIP, video: Tensor, project: bool = False, tokens: bool = False) -> VideoFeatures:
        """``forward``'s per-frame features and, with ``tokens``, the last block's patch tokens ``(B, T, N, D)``."""
        if not tokens:
            return VideoFeatures(self(backbone, video, project=project))
        visual = backbone.visual
        b, t = video.shape[:2]
        with self._tower_context(backbone):
            final, (last,) = visual.forward_intermediates(video.flatten(0, 1), indices=1, num_frames=t)
            frames = visual.forward_head(final, project=project).unflatten(0, (b, t))  # (B, T, D|E)
        return VideoFeatures(frames, patch_tokens(last, visual, b, t))

    @staticmethod
    def _tower_context(backbone: CLIP) -> contextlib.AbstractContextManager:
        """``no_grad`` (and eval mode) when no image-tower parameter trains: frozen features keep no graph."""
        if any(p.requires_grad for p in backbone.visual.parameters()):
            return contextlib.nullcontext()
        backbone.visual.eval()  # frozen features: dropout/drop-path off
        return torch.no_grad()

    def merge(self, backbone: CLIP) -> None:
        """Fold the strategy's parameters into the backbone's weights (mergeable strategies only)."""
        raise NotImplementedError(f"{type(self).__name__} cannot be merged into the backbone's weights")


def patch_tokens(tokens: Tensor, visual: nn.Module, b: int, t: int) -> Tensor:
    """A block's output ``(B*T, L, D)`` → its patch tokens ``(B, T, N, D)``, without the tower's prefix tokens."""
    return tokens[:, visual.num_prefix_tokens :].unflatten(0, (b, t))


def select_blocks(visual: nn.Module, indices: list[int] | None) -> list[nn.Module]:
    """The image-tower blocks at ``indices`` (negative counts from the end; None: all), checked."""
    depth = len(visual.blocks)
    if indices is None:
        return list(visual.blocks)
    bad = [i for i in indices if not -depth <= i < depth]
    if bad:
        raise ValueError(f"transfer.blocks: {bad} out of range for a {depth}-block image tower")
    return [visual.blocks[i] for i in indices]


def freeze(backbone: CLIP, strategy: TransferStrategy) -> None:
    """Set ``requires_grad`` of every backbone parameter from the strategy's predicate."""
    for name, param in backbone.named_parameters():
        param.requires_grad_(strategy.trainable(name))
