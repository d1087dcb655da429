"""The synthetic tiny CLIP: trained by contrastive learning, saved in open_clip's format, loaded by tag."""

from __future__ import annotations

import functools
import random

import pytest
import torch

from lit_i2v.backbones import CLIP, WeightsError, create_clip
from lit_i2v.backbones.weights import convert_openai, to_openai
from lit_i2v.cli import main
from lit_i2v.pretrain import evaluate, pretrain, render_pair


def test_openai_export_round_trips_and_loads_in_open_clip():
    open_clip = pytest.importorskip("open_clip")
    model = CLIP("ViT-T-8-test")
    exported = to_openai(model.state_dict())
    back = convert_openai(exported)
    assert back.keys() == model.state_dict().keys() and all(
        torch.equal(back[k], v) for k, v in model.state_dict().items()
    )
    reference = open_clip.model.CLIP(
        embed_dim=32, quick_gelu=True, vision_cfg=dict(layers=2, width=64, head_width=32, patch_size=8, image_size=32),
        text_cfg=dict(context_length=77, vocab_size=49408, width=64, heads=2, layers=2),
    )  # fmt: skip
    reference.load_state_dict(exported, strict=True)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(reference.eval().encode_image(x), model.eval().encode_image(x), atol=1e-5)


def test_captions_describe_the_image():
    image, caption = render_pair(random.Random(3), 64)
    assert image.shape == (64, 64, 3) and image.dtype.name == "uint8"
    words = caption.split()
    assert words[0] == "a" and words[1] in ("small", "large") and words[2] in ("faint", "solid")


def test_pretraining_learns_and_saves_a_loadable_checkpoint(tmp_path, monkeypatch):
    monkeypatch.setenv("LIT_I2V_CACHE", str(tmp_path))
    torch.manual_seed(0)
    before = evaluate(CLIP("ViT-T-8-test"), random.Random(9), 32, batches=1)["heldout_image_to_text_top1"]
    path, figures = pretrain(
        "ViT-T-8-test", steps=120, batch_size=64, lr=2e-3, out=tmp_path / "ViT-T-8-test.synthetic.pt"
    )
    assert figures["heldout_image_to_text_top1"] > max(3 * before, 3 / 256)  # well above chance (1/256)
    model = create_clip("ViT-T-8-test", str(path))  # an ordinary open_clip-format file
    assert model.pretrained_cfg["source"] == str(path)


def test_pretrain_command_writes_the_tag(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("LIT_I2V_CACHE", str(tmp_path))
    assert main(["pretrain-synthetic", "--arch", "ViT-T-8-test", "--steps", "2", "--batch-size", "8"]) == 0
    assert (tmp_path / "ViT-T-8-test.synthetic.pt").is_file()
    assert "open_clip format" in capsys.readouterr().out


def test_synthetic_weights_are_made_on_first_use(tmp_path, monkeypatch):
    """``pretrained: synthetic`` on a machine without the file trains it once into the cache, then reads it."""
    monkeypatch.setenv("LIT_I2V_CACHE", str(tmp_path))
    monkeypatch.setattr("lit_i2v.pretrain.pretrain", functools.partial(pretrain, steps=3, batch_size=8))
    made = CLIP("ViT-T-8-test", pretrained="synthetic")
    path = tmp_path / "ViT-T-8-test.synthetic.pt"
    assert path.is_file() and made.pretrained_cfg["source"] == str(path)
    monkeypatch.setattr("lit_i2v.pretrain.pretrain", None)  # a second use must not train again
    again = CLIP("ViT-T-8-test", pretrained="synthetic")
    assert all(torch.equal(a, b) for a, b in zip(made.state_dict().values(), again.state_dict().values()))
    assert not list(tmp_path.glob("*.tmp"))  # written atomically: no temporary left behind
    with pytest.raises(WeightsError, match="no pretrained weights 'ViT-T-8-test.laion'"):
        CLIP("ViT-T-8-test", pretrained="laion")
