"""The CLIP towers equal open_clip's, from every weight format; the video side folds time correctly."""

from __future__ import annotations

import importlib.util
import io
import json
import pickle
import random
import re
import zipfile

import pytest
import timm
import torch

from lit_i2v.backbones import CLIP, Tokenizer, WeightsError, create_clip, read_checkpoint
from lit_i2v.backbones.registry import ARCHS, PRETRAINED
from lit_i2v.backbones.torchscript import UnreadableArchive, read_torchscript_state_dict
from lit_i2v.backbones.weights import detect_format

from .conftest import timm_vit

TEXTS = [
    "a video of a person dancing",
    "Pushing [something] from left to right",
    "héllo   wörld! it's 2 &amp; 3",
    "word " * 90,
    "日本語 🎉",
]


@pytest.fixture(scope="module")
def inputs():
    torch.manual_seed(1)
    return torch.randn(3, 3, 32, 32)


@pytest.mark.parametrize("fmt", ["open_clip", "safetensors", "wrapped", "openai_jit", "lit_i2v"])
def test_towers_match_open_clip(fmt, weight_files, open_clip_model, inputs):
    open_clip = pytest.importorskip("open_clip")
    model = create_clip("ViT-T-8-test", str(weight_files[fmt])).eval()
    tokens = open_clip.get_tokenizer("ViT-B-32")(TEXTS)
    with torch.no_grad():
        ref_image, ref_text = open_clip_model.encode_image(inputs), open_clip_model.encode_text(tokens)
        image, text = model.encode_image(inputs), model.encode_text(model.tokenize(TEXTS))
    assert torch.allclose(image, ref_image, atol=1e-5, rtol=0), (image - ref_image).abs().max()
    assert torch.allclose(text, ref_text, atol=1e-5, rtol=0), (text - ref_text).abs().max()
    assert torch.allclose(model.logit_scale, open_clip_model.logit_scale)


def test_timm_checkpoint_loads_image_tower(weight_files, open_clip_model, inputs):
    timm_model = timm_vit()
    timm_model.load_state_dict(torch.load(weight_files["timm"], weights_only=True))
    model = create_clip("ViT-T-8-test", str(weight_files["timm"])).eval()
    with torch.no_grad():
        ours, theirs = model.encode_image(inputs), timm_model(inputs)
        ref = open_clip_model.encode_image(inputs)
    assert torch.allclose(ours, theirs, atol=1e-5, rtol=0)
    assert torch.allclose(ours, ref, atol=1e-5, rtol=0)


def test_tokenizer_matches_open_clip():
    open_clip = pytest.importorskip("open_clip")
    ours, theirs = Tokenizer()(TEXTS), open_clip.get_tokenizer("ViT-B-32")(TEXTS)
    assert torch.equal(ours, theirs)
    assert ours.shape == (len(TEXTS), 77) and ours[3, -1] == Tokenizer().eot_id  # long text cut, end marker kept


def test_torchscript_reader_equals_jit_load(weight_files):
    with pytest.warns(FutureWarning):
        ref = torch.jit.load(str(weight_files["openai_jit"])).state_dict()
    state = read_torchscript_state_dict(weight_files["openai_jit"])
    assert state.keys() == ref.keys()
    assert all(torch.equal(state[k], ref[k]) for k in ref)


def test_torchscript_reader_refuses_foreign_globals(tmp_path):
    """An archive whose pickle names anything but modules and tensors is refused, not executed."""
    path = tmp_path / "evil.pt"

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    with zipfile.ZipFile(path, "w") as z:
        z.writestr("evil/data.pkl", pickle.dumps(Evil()))
        z.writestr("evil/code/__torch__.py", "")
    with pytest.raises(UnreadableArchive, match="builtins.print"):
        read_checkpoint(path)


def test_mismatched_checkpoint_names_the_keys(weight_files, tmp_path):
    state = read_checkpoint(weight_files["open_clip"])
    del state["visual.ln_post.weight"]
    state["visual.extra"] = torch.zeros(1)
    bad = tmp_path / "bad.pt"
    torch.save(state, bad)
    with pytest.raises(WeightsError, match=r"missing \(1\): visual.norm.weight") as err:
        create_clip("ViT-T-8-test", str(bad))
    assert "unexpected (1): visual.extra" in str(err.value) and str(bad) in str(err.value)
    with pytest.raises(WeightsError, match="does not fit"):
        create_clip("ViT-S-8-tiny", str(weight_files["open_clip"]))  # other widths: shapes named


def test_missing_file_and_unknown_tag():
    with pytest.raises(FileNotFoundError, match="nowhere.pt does not exist; .* a tag of ViT-T-8-test .*hf-hub:"):
        create_clip("ViT-T-8-test", "/nowhere.pt")
    with pytest.raises(WeightsError, match="known tags for ViT-B-16: \\['ViT-B-16.openai'\\]"):
        CLIP("ViT-B-16", pretrained="laion9b")
    with pytest.raises(KeyError, match="unknown CLIP architecture"):
        CLIP("ViT-Z-99")


def test_pickled_objects_are_not_loaded(tmp_path):
    path = tmp_path / "obj.pt"
    torch.save({"state_dict": {"a": torch.zeros(1)}, "cfg": io.BytesIO()}, path)
    with pytest.raises(WeightsError, match="weights_only=True"):
        read_checkpoint(path)


def test_position_embedding_is_resampled(weight_files, tmp_path, caplog):
    state = read_checkpoint(weight_files["open_clip"])
    pos = state["visual.positional_embedding"]  # (1 + 4*4, 64)
    state["visual.positional_embedding"] = torch.cat([pos[:1], torch.randn(36, 64)])  # a 6x6 grid
    path = tmp_path / "grid6.pt"
    torch.save(state, path)
    model = create_clip("ViT-T-8-test", str(path))
    assert model.visual.pos_embed.shape == (1, 17, 64)
    assert "resampling visual.pos_embed" in caplog.text


def test_format_detection(weight_files):
    assert detect_format(read_checkpoint(weight_files["openai_jit"])) == "openai"
    assert detect_format(read_checkpoint(weight_files["timm"])) == "timm"
    assert detect_format(read_checkpoint(weight_files["lit_i2v"])) == "lit_i2v"
    with pytest.raises(WeightsError, match="unrecognised"):
        detect_format({"foo.weight": torch.zeros(1)})


@pytest.mark.parametrize("frames", [1, 8])
def test_video_folds_time_in_the_batch(frames):
    torch.manual_seed(0)
    model = create_clip("ViT-T-8-test").eval()
    video = torch.randn(2, frames, 3, 32, 32)
    with torch.no_grad():
        per_frame = model.encode_video(video)  # (B, T, E)
        images = model.encode_image(video.flatten(0, 1)).unflatten(0, (2, frames))
        tokens = model.visual.forward_video(video, project=False)
    assert per_frame.shape == (2, frames, 32) and tokens.shape == (2, frames, 64)
    assert torch.allclose(per_frame, images, atol=1e-6)


def test_intermediates_and_checkpointing_keep_outputs():
    torch.manual_seed(0)
    model = CLIP("ViT-T-8-test")
    x = torch.randn(4, 3, 32, 32)
    final, inter = model.visual.forward_intermediates(x, indices=2)
    assert len(inter) == 2 and inter[0].shape == (4, 17, 64)
    assert torch.allclose(model.visual.norm(inter[-1]), final)
    ref = model.visual(x)
    model.visual.set_grad_checkpointing(True)
    model.train()
    out = model.visual(x)
    out.sum().backward()
    assert torch.allclose(out, ref, atol=1e-6)
    assert model.visual.blocks[0].attn.qkv.weight.grad is not None


def test_bf16_autocast_forward_runs():
    """The bf16 code path on tiny shapes (this CPU has no fast bf16; GPU runs are in benchmarks/)."""
    model = CLIP("ViT-T-8-test")
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model.encode_video(torch.randn(1, 2, 3, 32, 32))
    assert out.dtype == torch.bfloat16 and torch.isfinite(out.float()).all()


@pytest.mark.parametrize("value", [None, "null", "None", ""])
def test_no_pretrained_weights_means_random_initialisation(value):
    """A command-line ``pretrained=null`` reaches the model as the string "None" in omegaconf mode: still random."""
    assert CLIP("ViT-T-8-test", pretrained=value).pretrained_cfg["source"] is None


# The tiny SigLIPs have no open_clip config of their sizes: SigLIP-T-8-test is tested against transformers' SiglipModel
# and an open_clip CustomTextCLIP of its size below; SigLIP-S-8-tiny differs from it in sizes only.
@pytest.mark.parametrize("arch", sorted(set(ARCHS) - {"SigLIP-T-8-test", "SigLIP-S-8-tiny"}))
def test_every_registered_architecture_has_open_clips_parameters(arch):
    """Each architecture of the registry, built on the meta device (shapes only), holds exactly the parameters
    open_clip builds for the same config, names mapped; its video forward gives one vector per frame. A new entry in
    the registry is tested here at once."""
    open_clip = pytest.importorskip("open_clip")
    spec = ARCHS[arch]
    with torch.device("meta"):
        ours = CLIP(arch)
        if arch.startswith("SigLIP"):  # open_clip's own config of the same model (timm's image tower inside)
            family, size, patch, resolution = re.fullmatch(r"(SigLIP2?)-(B|L|SO400M)-(\d+)(-\d+)?", arch).groups()
            name = f"ViT-{size}-{patch}-{family}{resolution or ''}"  # SigLIP2-L-16-384 -> ViT-L-16-SigLIP2-384
            reference = open_clip.create_model(name, pretrained=None, device="meta")
            assert open_clip.get_model_config(name)["text_cfg"]["context_length"] == spec.text["context_length"]
        else:
            vision = dict(spec.vision, head_width=spec.vision["width"] // spec.vision["heads"])
            vision.pop("heads")
            reference = open_clip.model.CLIP(embed_dim=spec.embed_dim, vision_cfg=vision, text_cfg=dict(spec.text),
                                             quick_gelu=True)  # fmt: skip
        frames = ours.encode_video(torch.empty(2, 3, 3, spec.vision["image_size"], spec.vision["image_size"]))
    count = lambda model: sum(p.numel() for p in model.parameters())  # noqa: E731
    assert count(ours) == count(reference)
    assert frames.shape == (2, 3, spec.embed_dim)
    assert all(tag.split(".")[0] in ARCHS for tag in PRETRAINED)  # every weights tag names a registered architecture


def test_timm_groups_the_tower_as_layer_decay_does():
    """timm's optimizer factories read ``group_matcher``: its groups are ``layer_id``'s layers, in order."""
    from timm.models import group_parameters

    visual = CLIP("ViT-T-8-test", None).visual
    groups = group_parameters(visual, visual.group_matcher())
    by_timm = {name: group for group, names in groups.items() for name in names}
    assert by_timm == {name: visual.layer_id(name) for name, _ in visual.named_parameters()}
    assert max(by_timm.values()) == len(visual.blocks) + 1


def perturb(model: torch.nn.Module, mlp_scale: float = 1.0) -> None:
    """Random weights made telling: norms and biases away from their initial values (a swapped or dropped one
    shows), and MLP inputs scaled by ``mlp_scale`` (of order 1, exact and tanh GELU differ)."""
    with torch.no_grad():
        for name, param in model.named_parameters():
            if name.endswith("bias") or "norm" in name or "ln_" in name:
                param.add_(torch.randn_like(param) * 0.1)
            if name.endswith(("fc1.weight", "c_fc.weight")):
                param.mul_(mlp_scale)


# ---- transformers' CLIP format -------------------------------------------------------------------------------------


def tiny_transformers_clip(act: str):
    """A random transformers ``CLIPModel`` of ``ViT-T-8-test``'s shape, written by transformers itself."""
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    tower = dict(hidden_size=64, intermediate_size=256, num_hidden_layers=2, num_attention_heads=2, hidden_act=act)
    config = transformers.CLIPConfig(
        text_config=dict(tower, vocab_size=49408, max_position_embeddings=77, projection_dim=32),
        vision_config=dict(tower, image_size=32, patch_size=8, projection_dim=32),
        projection_dim=32,
    )
    model = transformers.CLIPModel(config).eval()
    perturb(model)
    return model


def features(output) -> torch.Tensor:
    """transformers 5 returns the projected features as a tensor or, in some versions, inside an output object."""
    return output if isinstance(output, torch.Tensor) else output.pooler_output


@pytest.mark.parametrize(("act", "layout"), [("quick_gelu", "safetensors"), ("gelu", "shards"), ("quick_gelu", "bin")])
def test_a_transformers_clip_folder_loads_and_equals_transformers(tmp_path, act, layout):
    """``CLIPModel.save_pretrained`` output (one safetensors file, or shards with their index; ``bin``: the
    ``pytorch_model.bin`` that transformers 4 wrote, as in ``openai/clip-vit-base-patch16``): both towers equal
    transformers' ``get_image_features`` / ``get_text_features`` within 1e-5, the activation read from its
    config.json, the mean and std from its preprocessor_config.json."""
    reference = tiny_transformers_clip(act)
    folder = tmp_path / "clip"
    reference.save_pretrained(folder, max_shard_size="200KB" if layout == "shards" else "50GB")
    assert (folder / "model.safetensors.index.json").is_file() == (layout == "shards")
    if layout == "bin":
        (folder / "model.safetensors").unlink()
        torch.save(reference.state_dict(), folder / "pytorch_model.bin")
    (folder / "preprocessor_config.json").write_text(
        json.dumps({"image_mean": [0.5, 0.5, 0.5], "image_std": [0.25, 0.25, 0.25], "crop_size": {"height": 32}})
    )
    clip = create_clip("ViT-T-8-test", str(folder)).eval()
    assert clip.visual.blocks[0].mlp.act.__class__.__name__ == ("QuickGELU" if act == "quick_gelu" else "GELU")
    assert clip.pretrained_cfg["mean"] == (0.5, 0.5, 0.5) and clip.pretrained_cfg["std"] == (0.25, 0.25, 0.25)
    assert clip.pretrained_names == {k for k, _ in clip.named_parameters()}  # every parameter was loaded
    images = torch.randn(3, 3, 32, 32)
    tokens = clip.tokenize(["a red circle", "a photo of a dog moving left", ""])
    with torch.no_grad():
        ours_image, ours_text = clip.encode_image(images), clip.encode_text(tokens)
        theirs_image = features(reference.get_image_features(pixel_values=images))
        theirs_text = features(reference.get_text_features(input_ids=tokens))
    assert torch.allclose(ours_image, theirs_image, atol=1e-5), (ours_image - theirs_image).abs().max()
    assert torch.allclose(ours_text, theirs_text, atol=1e-5), (ours_text - theirs_text).abs().max()
    assert torch.allclose(clip.logit_scale, reference.logit_scale)


def test_a_transformers_folder_without_weights_is_named(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(WeightsError, match=r"a folder, but no model.safetensors or pytorch_model.bin"):
        create_clip("ViT-T-8-test", str(tmp_path))


def test_a_transformers_siglip_folder_loads_and_equals_transformers(tmp_path):
    """SigLIP (no class token, attention pooling, bidirectional text read at the last position, logit bias): a
    ``SiglipModel.save_pretrained`` folder loads into ``SigLIP-T-8-test`` and both towers equal transformers'
    ``get_image_features`` / ``get_text_features`` within 1e-5, the activation (tanh-GELU) from its config."""
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    tower = dict(hidden_size=64, intermediate_size=256, num_hidden_layers=2, num_attention_heads=2)
    config = transformers.SiglipConfig(
        text_config=dict(tower, vocab_size=1000, max_position_embeddings=64, bos_token_id=None, eos_token_id=None),
        vision_config=dict(tower, image_size=32, patch_size=8),
    )
    reference = transformers.SiglipModel(config).eval()
    perturb(reference, mlp_scale=20)
    reference.save_pretrained(tmp_path / "siglip")
    model = create_clip("SigLIP-T-8-test", str(tmp_path / "siglip")).eval()
    assert model.visual.num_prefix_tokens == 0 and model.visual.blocks[0].mlp.act.approximate == "tanh"
    assert model.pretrained_names == {k for k, _ in model.named_parameters()}
    assert model.pretrained_cfg["mean"] == (0.5, 0.5, 0.5)
    images, tokens = torch.randn(3, 3, 32, 32), torch.randint(0, 1000, (3, 64))
    with torch.no_grad():
        ours_image, ours_text = model.encode_image(images), model.encode_text(tokens)
        theirs_image = features(reference.get_image_features(pixel_values=images))
        theirs_text = features(reference.get_text_features(input_ids=tokens))
        frames = model.encode_video(images[None])  # (1, 3, E): the attention pool per frame
    assert torch.allclose(ours_image, theirs_image, atol=1e-5), (ours_image - theirs_image).abs().max()
    assert torch.allclose(ours_text, theirs_text, atol=1e-5), (ours_text - theirs_text).abs().max()
    assert torch.allclose(frames[0], ours_image, atol=1e-5)
    exact = create_clip("SigLIP-T-8-test", str(tmp_path / "siglip"), act="gelu").eval()
    with torch.no_grad():
        assert not torch.allclose(exact.encode_image(images), theirs_image, atol=1e-4)  # the activation matters
    assert float(model.logit_bias) == pytest.approx(float(reference.logit_bias))
    with pytest.raises(NotImplementedError, match="tokenizer .* comes from its weights' folder"):
        model.tokenize(["a dog"])
    if importlib.util.find_spec("sentencepiece"):  # google/siglip-* folders: spiece.model only
        write_tiny_sentencepiece(tmp_path / "siglip")
        with_spm = create_clip("SigLIP-T-8-test", str(tmp_path / "siglip"))
        reference_tokens = transformers.SiglipTokenizer(str(tmp_path / "siglip" / "spiece.model"))(
            ["A photo of a dog."], padding="max_length", max_length=64)["input_ids"]  # fmt: skip
        assert with_spm.tokenize(["A photo of a dog."]).tolist() == reference_tokens
        (tmp_path / "siglip" / "spiece.model").unlink()
    write_tiny_tokenizer(tmp_path / "siglip")  # as a processor's save_pretrained leaves it beside the weights
    model = create_clip("SigLIP-T-8-test", str(tmp_path / "siglip")).eval()
    tokens = model.tokenize(["A photo of a dog."])
    assert tokens.shape == (1, 64) and tokens[0, :6].tolist() == [3, 10, 11, 3, 12, 1]
    with torch.no_grad():
        text = features(reference.get_text_features(input_ids=tokens))
        assert torch.allclose(model.encode_text(tokens), text, atol=1e-5)


def test_a_timm_siglip_image_tower_loads_and_equals_timm(tmp_path):
    """timm's SigLIP layout (``vit_base_patch16_siglip_224``'s names: no class token, ``attn_pool``), saved as a
    safetensors state dict: the image tower equals timm's pooled features within 1e-5 (with timm's exact GELU),
    the text tower keeps its initialisation."""
    from functools import partial

    from safetensors.torch import save_file
    from timm.models.vision_transformer import VisionTransformer

    torch.manual_seed(0)
    reference = VisionTransformer(img_size=32, patch_size=8, embed_dim=64, depth=2, num_heads=2, class_token=False,
                                  global_pool="map", num_classes=0,
                                  norm_layer=partial(torch.nn.LayerNorm, eps=1e-6)).eval()  # fmt: skip
    perturb(reference, mlp_scale=50)
    save_file(reference.state_dict(), str(tmp_path / "siglip.safetensors"))
    model = create_clip("SigLIP-T-8-test", str(tmp_path / "siglip.safetensors"), act="gelu").eval()
    assert model.pretrained_names == {k for k, _ in model.visual.named_parameters(prefix="visual")}
    images = torch.randn(3, 3, 32, 32)
    tanh = create_clip("SigLIP-T-8-test", str(tmp_path / "siglip.safetensors")).eval()  # the family's default
    with torch.no_grad():
        ours, theirs = model.encode_image(images), reference(images)
        assert not torch.allclose(tanh.encode_image(images), theirs, atol=1e-4)  # the activation matters here
    assert torch.allclose(ours, theirs, atol=1e-5), (ours - theirs).abs().max()


def write_tiny_tokenizer(folder) -> None:
    """A word-level ``tokenizer.json`` with SigLIP's special tokens (``<pad>`` 0, ``</s>`` 1 appended) and config."""
    tokenizers = pytest.importorskip("tokenizers")
    words = ["<pad>", "</s>", "<unk>", "a", "red", "circle", "moving", "left", "to", "right", "photo", "of", "dog"]
    tok = tokenizers.Tokenizer(tokenizers.models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="<unk>"))
    tok.pre_tokenizer = tokenizers.pre_tokenizers.Whitespace()
    tok.post_processor = tokenizers.processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", 1)])
    tok.save(str(folder / "tokenizer.json"))
    (folder / "tokenizer_config.json").write_text(json.dumps(
        {"tokenizer_class": "PreTrainedTokenizerFast", "pad_token": "<pad>", "eos_token": "</s>", "unk_token": "<unk>"}
    ))  # fmt: skip


def test_a_siglip_folder_tokenizer_equals_open_clips(tmp_path):
    """SigLIP's tokenizer comes with its weights (``tokenizer.json``): texts canonicalised, the file's end token
    added, truncated and padded to 64, exactly as open_clip's ``HFTokenizer(clean="canonicalize")`` reads the same
    folder (a tiny word-level tokenizer built here; no download)."""
    open_clip = pytest.importorskip("open_clip")
    pytest.importorskip("transformers")
    folder = tmp_path / "siglip"
    folder.mkdir()
    write_tiny_tokenizer(folder)
    from lit_i2v.backbones.folder_tokenizer import FolderTokenizer

    ours = FolderTokenizer(folder, 64)
    theirs = open_clip.tokenizer.HFTokenizer(str(folder), context_length=64, clean="canonicalize")
    texts = ["A Red, circle moving LEFT_to right!", "a photo of a dog", " ".join(["dog"] * 100), "zebra"]
    ids = ours(texts)
    assert ids.shape == (4, 64) and ids[0, :7].tolist() == [3, 4, 5, 6, 7, 8, 9] and ids[0, 7] == 1
    assert ids[2, -1] == 1 and (ids[0, 8:] == 0).all()  # truncation keeps the end token; padding with <pad>
    assert torch.equal(ids, theirs(texts))


def write_tiny_sentencepiece(folder) -> None:
    """A tiny SentencePiece unigram model with SigLIP's ids (``<pad>`` 0, ``</s>`` 1, ``<unk>`` 2) as ``spiece.model``,
    trained here by sentencepiece itself on a few sentences."""
    sentencepiece = pytest.importorskip("sentencepiece")
    words = ["a", "red", "blue", "circle", "square", "moving", "left", "right", "up", "down", "photo", "of", "dog",
             "cat", "the", "is", "doing", "what", "colour"]  # fmt: skip
    rng = random.Random(0)
    sentences = [" ".join(rng.choice(words) for _ in range(6)) for _ in range(400)]
    sentencepiece.SentencePieceTrainer.train(
        sentence_iterator=iter(sentences), model_prefix=str(folder / "spiece"), vocab_size=40, model_type="unigram",
        pad_id=0, eos_id=1, unk_id=2, bos_id=-1, minloglevel=2,
    )  # fmt: skip
    (folder / "spiece.vocab").unlink()


def test_a_siglip_spiece_model_tokenizes_as_transformers_siglip_tokenizer(tmp_path):
    """``google/siglip-*`` folders hold ``spiece.model`` and no ``tokenizer.json``: read with sentencepiece, texts
    canonicalised, ``</s>`` appended, truncated and padded to 64 with the folder's pad token, exactly as transformers'
    ``SiglipTokenizer`` (``padding="max_length"``, ``truncation=True``) on the same file."""
    transformers = pytest.importorskip("transformers")
    from lit_i2v.backbones.folder_tokenizer import FolderTokenizer

    folder = tmp_path / "siglip"
    folder.mkdir()
    write_tiny_sentencepiece(folder)
    texts = ["A red circle, moving LEFT!", "a photo of a dog", " ".join(["cat"] * 100), "zebra", "  what   colour? "]
    for pad in (None, "<pad>"):  # transformers' default pad token (</s>), and the one a config names
        if pad:
            (folder / "tokenizer_config.json").write_text(json.dumps({"pad_token": pad}))
        reference = transformers.SiglipTokenizer(str(folder / "spiece.model"), **({"pad_token": pad} if pad else {}))
        theirs = reference(texts, padding="max_length", max_length=64, truncation=True)["input_ids"]
        ours = FolderTokenizer(folder, 64)(texts)
        assert ours.shape == (5, 64) and ours[2, -1] == 1 and ours[0, 0] not in (0, 1, 2)
        assert ours.tolist() == theirs, pad
    assert (ours[1] == 0).sum() > 0 and (FolderTokenizer(folder, 64).pad_id == 0)


def open_clip_tiny_siglip():
    """open_clip's SigLIP model (``CustomTextCLIP``: a timm trunk, a bidirectional text tower read at its last token,
    a biased text projection, a logit bias) at ``SigLIP-T-8-test``'s sizes, randomly initialised, in eval mode."""
    open_clip = pytest.importorskip("open_clip")
    from functools import partial

    from timm.models import register_model
    from timm.models.vision_transformer import VisionTransformer

    if "vit_siglip_lit_i2v_test" not in timm.list_models("vit_siglip_lit_i2v_test"):

        @register_model
        def vit_siglip_lit_i2v_test(pretrained=False, **kwargs):  # SigLIP-T-8-test's image tower, as timm builds it
            kept = {"global_pool": "map"} | {k: v for k, v in kwargs.items() if k in ("num_classes", "global_pool")}
            return VisionTransformer(img_size=32, patch_size=8, embed_dim=64, depth=2, num_heads=2, class_token=False,
                                     act_layer="gelu_tanh", norm_layer=partial(torch.nn.LayerNorm, eps=1e-6),
                                     **kept)  # fmt: skip

    return open_clip.model.CustomTextCLIP(
        embed_dim=64,
        vision_cfg=dict(timm_model_name="vit_siglip_lit_i2v_test", timm_pool="map", timm_proj="none", image_size=32),
        text_cfg=dict(context_length=64, vocab_size=1000, width=64, heads=2, layers=2, no_causal_mask=True,
                      proj_bias=True, pool_type="last", norm_kwargs={"eps": 1e-6}, act_kwargs={"approximate": "tanh"}),
        init_logit_bias=-10,
    ).eval()  # fmt: skip


def test_an_open_clip_siglip_hub_folder_loads_and_equals_open_clip(tmp_path):
    """open_clip's SigLIP layout (a timm trunk under ``visual.trunk``, OpenAI names in the text tower, a biased text
    projection, ``logit_bias``) as its hub folders hold it: ``open_clip_model.safetensors``, ``open_clip_config.json``
    (mean and std) and the tokenizer. Both towers equal open_clip's within 1e-5; tokens equal its tokenizer's."""
    open_clip = pytest.importorskip("open_clip")
    pytest.importorskip("transformers")
    from safetensors.torch import save_file

    torch.manual_seed(0)
    reference = open_clip_tiny_siglip()
    perturb(reference, mlp_scale=20)
    folder = tmp_path / "hub"
    folder.mkdir()
    save_file(
        {k: v.contiguous() for k, v in reference.state_dict().items()}, str(folder / "open_clip_model.safetensors")
    )
    (folder / "open_clip_config.json").write_text(json.dumps({"preprocess_cfg": {"mean": [0.5] * 3, "std": [0.5] * 3}}))
    write_tiny_tokenizer(folder)
    model = create_clip("SigLIP-T-8-test", str(folder)).eval()
    assert model.pretrained_names == {k for k, _ in model.named_parameters()}
    assert model.pretrained_cfg["mean"] == (0.5, 0.5, 0.5)
    texts = ["A photo of a dog.", "a red circle moving left to right"]
    tokens = model.tokenize(texts)
    assert torch.equal(tokens, open_clip.tokenizer.HFTokenizer(str(folder), context_length=64, clean="canonicalize")(
        texts))  # fmt: skip
    images = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        ours_image, theirs_image = model.encode_image(images), reference.encode_image(images)
        ours_text, theirs_text = model.encode_text(tokens), reference.encode_text(tokens)
    assert torch.allclose(ours_image, theirs_image, atol=1e-5), (ours_image - theirs_image).abs().max()
    assert torch.allclose(ours_text, theirs_text, atol=1e-5), (ours_text - theirs_text).abs().max()
    assert float(model.logit_bias) == pytest.approx(float(reference.logit_bias))
