"""LLaVA-family folders written by transformers itself (tiny, random): lit_i2v's model equals transformers' own."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

transformers = pytest.importorskip("transformers")

from lit_i2v.backbones.llava import LLaVA  # noqa: E402
from lit_i2v.backbones.llava_tiny import write_tiny_llava  # noqa: E402
from lit_i2v.backbones.weights import WeightsError  # noqa: E402
from tests.conftest import hub_snapshot  # noqa: E402


def write_llava(folder: Path, model_type: str = "llava") -> Path:
    return write_tiny_llava(folder, model_type)


@pytest.fixture(scope="module")
def llava_folder(tmp_path_factory) -> Path:
    return write_llava(tmp_path_factory.mktemp("llava") / "tiny-llava-hf")


def reference(folder: Path):
    return transformers.AutoModelForImageTextToText.from_pretrained(folder).eval()


def prompt(tok, placeholders: int) -> torch.Tensor:
    text = "<s> what is the circle doing ? " + "<image> " * placeholders + "moving left"
    return torch.tensor([tok.convert_tokens_to_ids(text.split())])


def test_parameters_equal_transformers_less_what_llava_never_reads(llava_folder):
    ours, theirs = LLaVA(str(llava_folder)), reference(llava_folder)
    assert sum(p.numel() for p in ours.parameters()) + ours.dropped_params == sum(
        p.numel() for p in theirs.parameters()
    )
    assert len(ours.visual.blocks) == 2  # feature layer -2 of 3 blocks: the last one is never read
    unread = [p for n, p in theirs.model.vision_tower.named_parameters() if "layers.2." in n or "post_layernorm" in n]
    assert ours.dropped_params == sum(p.numel() for p in unread) > 0


def test_vision_features_projector_and_logits_equal_transformers(llava_folder):
    ours, theirs = LLaVA(str(llava_folder)).eval(), reference(llava_folder)
    torch.manual_seed(0)
    images = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        hidden = theirs.model.vision_tower(images, output_hidden_states=True).hidden_states[-2][:, 1:]  # (2, 16, 32)
        mine = ours.visual.forward_features(images)[:, 1:]
        assert torch.allclose(mine, hidden, atol=1e-5)
        projected = torch.stack(theirs.model.get_image_features(pixel_values=images).pooler_output)  # (2, 16, 48)
        assert torch.allclose(ours.project(mine), projected, atol=1e-5)
        ids = prompt(ours.tokenizer, 16).repeat(2, 1)
        logits = theirs(input_ids=ids, pixel_values=images).logits
        assert torch.allclose(ours(ours.splice(ids, ours.project(mine))), logits, atol=1e-4)


def test_both_key_layouts_load_the_same_model(llava_folder, tmp_path):
    """The hub's folders (and transformers' save_pretrained, still) name the LLM ``language_model.model.*`` and the
    tower ``vision_tower.*``; folders saved by transformers 4.52-4.5x name them ``model.language_model.*``: both
    load, through transformers' own key mapping, into the same model."""
    from safetensors.torch import load_file, save_file

    state = load_file(llava_folder / "model.safetensors")
    assert any(k.startswith("language_model.model.") for k in state)  # the hub's layout
    current = tmp_path / "current-layout"
    current.mkdir()
    for f in llava_folder.iterdir():
        if f.suffix != ".safetensors":
            (current / f.name).write_bytes(f.read_bytes())
    renames = [
        ("language_model.model.", "model.language_model."),
        ("language_model.lm_head.", "lm_head."),
        ("vision_tower.", "model.vision_tower."),
        ("multi_modal_projector.", "model.multi_modal_projector."),
    ]
    renamed = {}
    for key, value in state.items():
        for old, new in renames:
            if key.startswith(old):
                key = new + key.removeprefix(old)
                break
        renamed[key] = value
    save_file(renamed, current / "model.safetensors", metadata={"format": "pt"})
    hub, newer = LLaVA(str(llava_folder)), LLaVA(str(current))
    renamed["model.language_model.model.lm_head.weight"] = renamed.pop("lm_head.weight")  # a wrong name: refused
    save_file(renamed, current / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(WeightsError, match=r"do not fit llava's config: missing \['lm_head.weight'\] \(1\)"):
        LLaVA(str(current))
    assert hub.state_dict().keys() == newer.state_dict().keys()
    for key, value in hub.state_dict().items():
        assert torch.equal(value, newer.state_dict()[key]), key


def test_bad_folders_are_named_in_one_line(tmp_path):
    with pytest.raises(WeightsError, match="no config.json: not a llava-hf folder"):
        LLaVA(str(tmp_path))
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "qwen2_vl"}))
    with pytest.raises(WeightsError, match=r"config.json: model_type 'qwen2_vl'; lit_i2v reads llava, llava_next"):
        LLaVA(str(tmp_path))
    config = {"model_type": "llava", "vision_config": {"model_type": "dinov2"}}
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(WeightsError, match="vision_config.model_type 'dinov2'; clip_vision_model or siglip"):
        LLaVA(str(tmp_path))
    folder = write_tiny_llava(tmp_path / "no-weights")
    (folder / "model.safetensors").unlink()
    with pytest.raises(WeightsError, match=r"no-weights: .*model.safetensors"):
        LLaVA(str(folder))


def test_hub_names_read_the_hugging_face_cache_offline(llava_folder, tmp_path, monkeypatch):
    """``hf-hub:org/name``: the snapshot in the Hugging Face cache's layout loads with the hub unreachable; a name
    the cache lacks fails in one line that says how to fetch it."""
    snapshot = hub_snapshot(monkeypatch, tmp_path / "hub", "llava-hf/tiny-test", llava_folder)
    model = LLaVA("hf-hub:llava-hf/tiny-test")
    assert model.pretrained_cfg["source"] == str(snapshot)
    with pytest.raises(WeightsError, match=r"hf-hub:llava-hf/absent: not in the Hugging Face cache .*huggingface-cli"):
        LLaVA("hf-hub:llava-hf/absent")
