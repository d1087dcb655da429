"""Invariants of every head and temporal module ``lit_i2v.heads`` exports, each at its own ``tiny()`` configuration:
a new one is tested the moment it is exported."""

from __future__ import annotations

import pytest
import torch

import lit_i2v.heads as package
from lit_i2v.backbones import CLIP
from lit_i2v.heads import Head, Temporal

CLASSES = ["walking", "running", "jumping", "sitting", "waving"]


def exported(base: type) -> dict[str, type]:
    found = {name: getattr(package, name) for name in package.__all__}
    return {n: c for n, c in found.items() if isinstance(c, type) and issubclass(c, base) and c is not base}


@pytest.fixture(scope="module")
def clip() -> CLIP:
    torch.manual_seed(0)
    return CLIP("ViT-T-8-test")


@pytest.mark.parametrize("name", exported(Head))
def test_every_head_scores_every_class_and_trains_what_it_owns(name, clip):
    torch.manual_seed(1)
    head = exported(Head)[name].tiny()
    head.build(clip, len(CLASSES), CLASSES)
    width = clip.embed_dim if head.needs_projection else clip.visual.width
    x = torch.randn(3, width)
    tokens = torch.randn(3, 4, 16, clip.visual.width)  # (B, T, N, D): the last block's patch tokens
    logits = head(x, tokens) if head.needs_tokens else head(x)
    assert logits.shape == (3, len(CLASSES)) and torch.isfinite(logits).all()
    trainable = [(n, p) for n, p in head.named_parameters() if p.requires_grad]
    if trainable:
        logits.logsumexp(-1).sum().backward()
        assert all(p.grad is not None for _, p in trainable), [n for n, p in trainable if p.grad is None]
    if head.needs_class_names:
        with pytest.raises(ValueError, match="class"):
            exported(Head)[name].tiny().build(clip, len(CLASSES), None)


@pytest.mark.parametrize("name", exported(Temporal))
def test_every_temporal_module_pools_time_and_sees_order_as_it_declares(name):
    torch.manual_seed(2)
    module = exported(Temporal)[name].tiny()
    module.build(16)
    module.eval()
    frames = torch.randn(2, 6, 16)  # (B, T, C)
    with torch.no_grad():
        if module.text_conditioned:
            text = torch.randn(3, 16)
            out, reversed_ = module(text, frames), module(text, frames.flip(1))
            assert out.shape == (3, 2, 16)  # each caption pools each video its own way
        else:
            out, reversed_ = module(frames), module(frames.flip(1))
            assert out.shape == (2, 16)
    assert torch.isfinite(out).all()
    assert torch.allclose(out, reversed_, atol=1e-5) != module.order_aware  # mean pooling cannot tell the order
