"""The SigLIP family end to end: the sigmoid losses as open_clip computes SigLIP's, sigmoid zero-shot scores, and the
synthetic-pretrained tiny SigLIP (a folder in open_clip's hub layout with its own tokenizer, trained by the sigmoid
loss) through the zero-shot recipes."""

from __future__ import annotations

import functools
import json
import math
import random
import re
import shutil

import pytest
import torch
import torch.nn.functional as F

from lit_i2v.backbones import CLIP, create_clip
from lit_i2v.backbones.folder_tokenizer import FolderTokenizer
from lit_i2v.cli import main
from lit_i2v.errors import ConfigError
from lit_i2v.heads import PromptEncoderHead, TextClassifierHead
from lit_i2v.pretrain import evaluate, pretrain
from lit_i2v.strategies import Frozen, FullFinetune
from lit_i2v.tasks import ActionRecognition, TextVideoRetrieval
from tests.test_backbone import open_clip_tiny_siglip
from tests.test_cli import ROOT, last_value, metrics

pytest.importorskip("tokenizers")


@pytest.fixture(scope="module")
def synthetic_siglip(tmp_path_factory):
    """``SigLIP-T-8-test`` pretrained on synthetic image-caption pairs by the code behind ``pretrained: synthetic``
    (fewer steps), and its held-out figures."""
    folder = tmp_path_factory.mktemp("siglip") / "SigLIP-T-8-test.synthetic"
    path, figures = pretrain("SigLIP-T-8-test", steps=300, batch_size=64, lr=3e-4, out=folder)
    torch.manual_seed(0)
    untrained = CLIP("SigLIP-T-8-test")
    untrained.tokenizer = FolderTokenizer(path, 64)
    return path, figures, evaluate(untrained, random.Random(9), 32, batches=1)


def test_the_synthetic_siglip_learns_and_is_an_open_clip_hub_folder(synthetic_siglip):
    """Trained by the sigmoid loss well above chance, saved as open_clip shares SigLIP models: open_clip's own model
    loads the weights strictly and equals lit_i2v's towers; its tokenizer reads the folder's tokenizer as ours."""
    open_clip = pytest.importorskip("open_clip")
    path, figures, before = synthetic_siglip
    assert {p.name for p in path.iterdir()} == {"open_clip_model.safetensors", "open_clip_config.json",
                                                "tokenizer.json", "tokenizer_config.json"}  # fmt: skip
    assert figures["heldout_image_to_text_top1"] > max(3 * before["heldout_image_to_text_top1"], 3 / 256)
    model = create_clip("SigLIP-T-8-test", str(path)).eval()
    assert model.pretrained_names == {k for k, _ in model.named_parameters()}
    assert model.pretrained_cfg["mean"] == (0.5, 0.5, 0.5)
    assert json.loads((path / "open_clip_config.json").read_text())["preprocess_cfg"]["resize_mode"] == "squash"
    from safetensors.torch import load_file

    reference = open_clip_tiny_siglip()
    reference.load_state_dict(load_file(str(path / "open_clip_model.safetensors")), strict=True)
    texts = ["a red circle moving from left to right", "Moving something up", "a zebra"]  # "zebra": characters
    tokens = model.tokenize(texts)
    theirs = open_clip.tokenizer.HFTokenizer(str(path), context_length=64, clean="canonicalize")(texts)
    assert torch.equal(tokens, theirs) and (tokens[:, 0] > 2).all()  # no <unk>: every word has pieces
    images = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(model.encode_image(images), reference.encode_image(images), atol=1e-5)
        assert torch.allclose(model.encode_text(tokens), reference.encode_text(tokens), atol=1e-5)
    assert float(model.logit_bias) == pytest.approx(float(reference.logit_bias)) != -10.0  # learnt


def test_the_synthetic_siglip_tag_is_made_once_into_a_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("LIT_I2V_CACHE", str(tmp_path))
    monkeypatch.setattr("lit_i2v.pretrain.pretrain", functools.partial(pretrain, steps=2, batch_size=8))
    made = CLIP("SigLIP-T-8-test", pretrained="synthetic")
    folder = tmp_path / "SigLIP-T-8-test.synthetic"
    assert (folder / "open_clip_model.safetensors").is_file() and made.pretrained_cfg["source"] == str(folder)
    assert made.tokenize("a red circle").shape == (1, 64)  # the tokenizer came with the weights
    monkeypatch.setattr("lit_i2v.pretrain.pretrain", None)  # a second use must not train again
    again = CLIP("SigLIP-T-8-test", pretrained="synthetic")
    assert all(torch.equal(a, b) for a, b in zip(made.state_dict().values(), again.state_dict().values()))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["SigLIP-T-8-test.synthetic",
                                                          "SigLIP-T-8-test.synthetic.lock"]  # fmt: skip


# ---- the sigmoid losses --------------------------------------------------------------------------------------------


def test_sigmoid_retrieval_loss_equals_open_clips_siglip_loss(synthetic_siglip):
    """``loss: sigmoid``: ``-Σ log σ(z·(t·cos + b)) / N`` over every text-video pair of the batch, equal to open_clip's
    ``SigLipLoss`` on the same embeddings, with gradients reaching the learnt scale and bias."""
    open_clip = pytest.importorskip("open_clip")
    backbone = create_clip("SigLIP-T-8-test", str(synthetic_siglip[0]))
    with torch.no_grad():
        backbone.logit_scale.fill_(math.log(120.0))  # a released SigLIP's scale is above CLIP's clamp at 100
    task = TextVideoRetrieval(backbone, transfer=FullFinetune(towers=["visual", "text"]), loss="sigmoid").eval()
    batch = task.example_batch(4)
    loss = task.training_step(batch, 0)
    videos = task.encode_videos(task.normalize(batch["video"]))  # normalised (4, E)
    texts = F.normalize(task.encode_texts(batch["caption"]), dim=-1)
    expected = open_clip.loss.SigLipLoss()(videos, texts, backbone.logit_scale.exp(), backbone.logit_bias)
    assert torch.allclose(loss, expected, atol=1e-5), (loss, expected)
    assert float(task.logit_scale()) == pytest.approx(120.0)
    loss.backward()
    assert backbone.logit_bias.grad is not None and backbone.logit_scale.grad is not None
    assert "backbone.logit_bias" in task.trainable_names()
    softmax = TextVideoRetrieval(backbone, transfer=FullFinetune(towers=["visual", "text"])).eval()
    assert not torch.allclose(softmax.training_step(batch, 0), expected, atol=1e-3)  # the option changes the loss
    assert "backbone.logit_bias" not in softmax.trainable_names()  # unread by the softmax loss: DDP would fail
    assert float(softmax.logit_scale()) == pytest.approx(100.0, rel=1e-4)  # CLIP's clamp under CLIP's loss


def test_sigmoid_loss_is_refused_by_name_where_no_bias_was_learnt():
    with pytest.raises(ConfigError, match=r"model.init_args.loss: sigmoid needs .* ViT-T-8-test"):
        TextVideoRetrieval(CLIP("ViT-T-8-test"), loss="sigmoid")
    head = TextClassifierHead(trainable=False)  # CLIP's cosines scaled by 100 would saturate every sigmoid
    with pytest.raises(ConfigError, match=r"model.init_args.loss: sigmoid with a text head .* ViT-T-8-test"):
        ActionRecognition(CLIP("ViT-T-8-test"), 2, head=head, class_names=["a", "b"], loss="sigmoid")
    assert ActionRecognition(CLIP("ViT-T-8-test"), 2, loss="sigmoid").loss == "sigmoid"  # a linear head: fine
    for task in (lambda: TextVideoRetrieval(CLIP("ViT-T-8-test"), loss="sigmoids"),
                 lambda: ActionRecognition(CLIP("ViT-T-8-test"), num_classes=2, loss="hinge")):  # fmt: skip
        with pytest.raises(ConfigError, match="model.init_args.loss: .*choose softmax"):
            task()


def test_sigmoid_zero_shot_scores_each_class_as_siglip(synthetic_siglip):
    """The text classifier on SigLIP gives ``t·cos + b`` (unclamped scale, the learnt bias); with ``loss: sigmoid``
    evaluation averages each class's sigmoid over the views and training is the per-class binary cross-entropy."""
    backbone = create_clip("SigLIP-T-8-test", str(synthetic_siglip[0])).eval()
    with torch.no_grad():
        backbone.logit_scale.fill_(math.log(120.0))  # above CLIP's clamp: SigLIP's scale is used as it is
    names = ["Moving something up", "Moving something down", "Making something appear"]
    head = TextClassifierHead(templates=["a video of {}."], trainable=False)
    task = ActionRecognition(backbone, 3, transfer=Frozen(), head=head, class_names=names, loss="sigmoid").eval()
    batch = task.example_batch(3, training=False, views=2)
    with torch.no_grad():
        scores = task.predict_views(batch["video"])
        video = task.normalize(batch["video"].flatten(0, 1))
        frames = backbone.encode_video(video, project=True).mean(1)  # Frozen + MeanPool: frames averaged
        text = backbone.encode_text(backbone.tokenize([f"a video of {n}." for n in names]))
        cosine = F.normalize(frames, dim=-1) @ F.normalize(text, dim=-1).t()
        logits = backbone.logit_scale.exp() * cosine + backbone.logit_bias  # SigLIP's zero-shot logits
    assert torch.allclose(task(video), logits, atol=1e-4)
    assert torch.allclose(scores, logits.sigmoid().unflatten(0, (3, 2)).mean(1), atol=1e-6)
    assert not torch.allclose(scores.sum(-1), torch.ones(3), atol=1e-3)  # per-class scores, not a distribution
    targets = F.one_hot(batch["label"], 3).float()
    signs = 2 * targets - 1
    expected = -F.logsigmoid(signs * logits[::2]).sum(-1).mean()
    assert torch.allclose(task.classification_loss(logits[::2], targets), expected, atol=1e-6)


def test_full_finetuning_of_the_text_tower_trains_siglips_bias(synthetic_siglip):
    backbone = create_clip("SigLIP-T-8-test", str(synthetic_siglip[0]))
    vifi = PromptEncoderHead(templates=["a video of {}."])  # the text tower on the training path (ViFi-CLIP)
    task = ActionRecognition(backbone, 2, transfer=FullFinetune(towers=["visual", "text"]), head=vifi,
                             class_names=["up", "down"])  # fmt: skip
    assert {"backbone.logit_scale", "backbone.logit_bias"} <= set(task.trainable_names())
    visual_only = ActionRecognition(CLIP("SigLIP-T-8-test"), 2, transfer=FullFinetune())
    assert "backbone.logit_bias" not in visual_only.trainable_names()


# ---- the zero-shot recipes on the synthetic data --------------------------------------------------------------------


@pytest.fixture(scope="module")
def caption_root(synth_root):
    from lit_i2v.data.synthetic import write_captions

    return write_captions(synth_root)


@pytest.mark.parametrize(
    ("recipe", "key", "count"),
    [("recognition/synthetic_siglip_zeroshot.yaml", "test/top1", "test/videos"),
     ("retrieval/synthetic_siglip_zeroshot.yaml", "test/t2v/R@1", "test/videos")],
)  # fmt: skip
def test_siglip_zero_shot_recipes_run_offline(recipe, key, count, synthetic_siglip, caption_root, tmp_path):
    """Both zero-shot recipes of the family run from the synthetic SigLIP's folder on the synthetic videos: every
    test video scored once, the metric within its range."""
    run = tmp_path / "run"
    code = main(["test", "--config", str(ROOT / "configs" / recipe),
                 "--model.init_args.backbone.init_args.arch=SigLIP-T-8-test",
                 f"--model.init_args.backbone.init_args.pretrained={synthetic_siglip[0]}",
                 f"--data.init_args.root={caption_root}", "--data.init_args.synthetic.video_size=32",
                 "--data.init_args.num_workers=0", "--data.init_args.batch_size=4",
                 f"--trainer.default_root_dir={run}", f"--trainer.logger.init_args.save_dir={run}",
                 "--trainer.enable_progress_bar=false"])  # fmt: skip
    assert code == 0
    rows = metrics(run)
    videos = len(json.loads((caption_root / "test.json").read_text()))
    assert last_value(rows, count) == videos
    assert 0 <= last_value(rows, key) <= 100 and not math.isnan(last_value(rows, key))  # R@1 in percent


# ---- open_clip's WebLI weights on the hub ---------------------------------------------------------------------------


def test_webli_tags_name_open_clips_hub_folders():
    """``pretrained: webli`` of every SigLIP size is the repository open_clip's own tag downloads."""
    open_clip = pytest.importorskip("open_clip")
    from lit_i2v.backbones.registry import PRETRAINED

    tags = {k: v for k, v in PRETRAINED.items() if k.endswith(".webli")}
    assert len(tags) >= 20
    for tag, cfg in tags.items():
        family, size, patch, resolution = re.fullmatch(r"(SigLIP2?)-(B|L|SO400M)-(\d+)(-\d+)?", tag[:-6]).groups()
        theirs = open_clip.get_pretrained_cfg(f"ViT-{size}-{patch}-{family}{resolution or ''}", "webli")["hf_hub"]
        assert cfg.folder and cfg.hf_hub == theirs.rstrip("/"), tag


def test_a_webli_tag_offline_reads_the_hub_cache_or_says_where_to_put_the_folder(synthetic_siglip, tmp_path,
                                                                                  monkeypatch):  # fmt: skip
    """Offline, a tag whose folder an earlier download left in the Hugging Face cache loads from it, tokenizer
    included; with nothing cached, one error names the repository and the folder to fill."""
    import huggingface_hub

    from lit_i2v.backbones.registry import PRETRAINED, PretrainedCfg
    from lit_i2v.backbones.weights import WeightsError

    monkeypatch.setitem(PRETRAINED, "SigLIP-T-8-test.webli", PretrainedCfg(hf_hub="timm/ViT-T-8-SigLIP-test",
                                                                           folder=True))  # fmt: skip
    monkeypatch.setenv("LIT_I2V_CACHE", str(tmp_path / "lit_i2v"))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(WeightsError) as error:
        CLIP("SigLIP-T-8-test", pretrained="webli")
    message = str(error.value)
    assert "\n" not in message and "hf-hub:timm/ViT-T-8-SigLIP-test" in message
    assert f"place the folder (weights, open_clip_config.json, tokenizer) at {tmp_path / 'lit_i2v'}" in message
    repo = tmp_path / "hub" / "models--timm--ViT-T-8-SigLIP-test"  # the Hugging Face cache's layout
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text("0" * 40)
    shutil.copytree(synthetic_siglip[0], repo / "snapshots" / ("0" * 40))
    model = CLIP("SigLIP-T-8-test", pretrained="webli")
    assert model.pretrained_cfg["source"] == "hf-hub:timm/ViT-T-8-SigLIP-test"
    assert torch.equal(
        model.tokenize("a red circle"),
        create_clip("SigLIP-T-8-test", str(synthetic_siglip[0])).tokenize("a red circle"),
    )


# ---- the SigLIP 2 recipes ------------------------------------------------------------------------------------------

SIGLIP_RECIPES = sorted((ROOT / "configs" / "recognition").glob("*/siglip2-b16-webli_*.yaml"))


def summary(config, capsys) -> dict:
    with pytest.warns(UserWarning, match="not on this machine"):
        assert main(["summary", "--config", str(config), "--json"]) == 0
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


@pytest.mark.parametrize("config", SIGLIP_RECIPES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_siglip_recipes_cost_what_their_clip_twins_do(config, capsys):
    """Each SigLIP 2 B/16 recipe summarises without its weights (the text head included, with no tokenizer on the
    machine); its heads and adapters are the size of its CLIP twin's (both read 768-wide frame features), full
    fine-tuning adds the MAP head, and a view costs at most the MAP head's 0.15 GFLOPs a frame more."""
    s = summary(config, capsys)
    assert s["backbone"] == "SigLIP2-B-16" and s["image_tower_params"] - s["extra_params"] == 92_884_224
    twin = config.with_name(config.name.replace("siglip2-b16-webli", "vit-b16-openai"))
    if not twin.is_file():  # SSv2 zero-shot: no CLIP twin
        assert s["trainable_params"] == 0 and s["strategy"] == "Frozen"
        return
    clip = summary(twin, capsys)
    assert (s["frames"], s["views"], s["strategy"]) == (clip["frames"], clip["views"], clip["strategy"])
    if s["strategy"] == "FullFinetune":  # SigLIP's whole tower against CLIP's without its (unused) projection
        assert s["trainable_params"] - clip["trainable_params"] == 92_884_224 - (86_192_640 - 768 * 512)
    else:
        assert s["trainable_params"] == clip["trainable_params"]
    assert 0 < s["gflops_per_view"] - clip["gflops_per_view"] < 0.15 * s["frames"]


def text_heads() -> dict:
    import lit_i2v.heads as heads

    found = {name: getattr(heads, name) for name in heads.__all__}
    return {n: c for n, c in found.items() if isinstance(c, type) and issubclass(c, heads.Head)
            and c is not heads.Head and c.needs_class_names}  # fmt: skip


@pytest.mark.parametrize("name", sorted(text_heads()))
def test_every_text_head_gives_siglips_logits(name, synthetic_siglip):
    """Every head scoring classes with the text tower adds SigLIP's learnt bias to its scaled cosines (a sigmoid of
    them is SigLIP's zero-shot score): backbones differing only in the bias give logits differing by it exactly."""
    out, scale = [], None
    for shift in (0.0, 5.0):
        backbone = create_clip("SigLIP-T-8-test", str(synthetic_siglip[0])).eval()
        with torch.no_grad():
            backbone.logit_bias.add_(shift)
        scale, bias = float(backbone.logit_scale.exp()), float(backbone.logit_bias) - shift
        torch.manual_seed(1)
        head = text_heads()[name].tiny()
        head.build(backbone, 3, ["Moving something up", "Moving something down", "a red circle"])
        torch.manual_seed(2)
        x = torch.randn(2, backbone.embed_dim if head.needs_projection else backbone.visual.width)
        tokens = torch.randn(2, 4, 16, backbone.visual.width)
        with torch.no_grad():
            out.append(head.eval()(x, tokens) if head.needs_tokens else head.eval()(x))
    assert torch.allclose(out[1] - out[0], torch.full_like(out[0], 5.0), atol=1e-4), name
    assert (out[0] < 0).all()  # the learnt bias (about -10) dominates cosines scaled by about 10
    backbone = create_clip("SigLIP-T-8-test", str(synthetic_siglip[0])).eval()
    with torch.no_grad():
        backbone.logit_scale.fill_(math.log(400.0))  # unclamped: cosines reach past CLIP's 100
    torch.manual_seed(1)
    head = text_heads()[name].tiny()
    head.build(backbone, 3, ["Moving something up", "Moving something down", "a red circle"])
    with torch.no_grad():
        wide = head.eval()(x, tokens) if head.needs_tokens else head.eval()(x)
    assert torch.allclose((wide - bias) / 400.0, (out[0] - bias) / scale, atol=1e-5)  # scaled by 400, not 100


def test_a_folder_tokenizer_packs_prompts_as_it_tokenizes_texts(synthetic_siglip, tmp_path):
    """``pack(encode(text))`` (what prompt learning splices its context into) is the tokenizer's own row for the text,
    for tokenizer.json (the file's special tokens found by probing it) and spiece.model alike."""
    from tests.test_backbone import write_tiny_sentencepiece

    write_tiny_sentencepiece(tmp_path)
    texts = ["A red circle, moving left!", "Moving something up", " ".join(["dog"] * 90)]
    for folder in (synthetic_siglip[0], tmp_path):
        tokenizer = FolderTokenizer(folder, 64)
        assert tokenizer.prefix_length == 0
        rows = torch.stack([tokenizer.pack(tokenizer.encode(t)) for t in texts])
        assert torch.equal(rows, tokenizer(texts)), folder


def test_siglip_weights_without_sentencepiece_still_load(tmp_path, monkeypatch, caplog):
    """A ``google/siglip-*`` folder (spiece.model only) on a machine without the sentencepiece extra: the towers
    load (vision-only use works), and ``tokenize`` says what to install."""
    transformers = pytest.importorskip("transformers")
    from tests.test_backbone import write_tiny_sentencepiece

    tower = dict(hidden_size=64, intermediate_size=256, num_hidden_layers=2, num_attention_heads=2)
    config = transformers.SiglipConfig(
        text_config=dict(tower, vocab_size=1000, max_position_embeddings=64, bos_token_id=None, eos_token_id=None),
        vision_config=dict(tower, image_size=32, patch_size=8),
    )
    transformers.SiglipModel(config).save_pretrained(tmp_path)
    write_tiny_sentencepiece(tmp_path)
    monkeypatch.setitem(__import__("sys").modules, "sentencepiece", None)  # as if not installed
    model = create_clip("SigLIP-T-8-test", str(tmp_path))
    assert model.encode_image(torch.randn(1, 3, 32, 32)).shape == (1, 64)
    assert "pip install sentencepiece" in caplog.text
    with pytest.raises(NotImplementedError, match="pip install sentencepiece"):
        model.tokenize("a dog")


def test_pretraining_never_replaces_a_folder_that_is_not_a_model(tmp_path):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    with pytest.raises(FileExistsError, match="is not a model folder"):
        pretrain("SigLIP-T-8-test", steps=1, batch_size=4, out=tmp_path / "mine")
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep me"
    path, _ = pretrain("SigLIP-T-8-test", steps=1, batch_size=4, out=tmp_path / "model")
    pretrain("SigLIP-T-8-test", steps=1, batch_size=4, out=path)  # an earlier model folder is replaced
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine", "model"]  # nothing temporary left


def test_checkpoints_written_before_siglips_bias_was_a_head_parameter_still_load(synthetic_siglip):
    backbone = create_clip("SigLIP-T-8-test", str(synthetic_siglip[0]))
    head = TextClassifierHead(trainable=True)
    task = ActionRecognition(backbone, 2, transfer=Frozen(), head=head, class_names=["up", "down"])
    state = {k: v for k, v in task.state_dict().items() if k != "head.logit_bias"}
    task.on_load_checkpoint({"state_dict": state})
    task.load_state_dict(state, strict=True)  # the bias it was built with fills in
    trainable = {k: v for k, v in task.trainable_state_dict().items() if k != "head.logit_bias"}
    checkpoint = {"state_dict": trainable, "trainable_only": True}
    task.on_load_checkpoint(checkpoint)  # checks the names, then loads


def test_qa_never_trains_siglips_bias(synthetic_siglip):
    from lit_i2v.tasks import VideoQuestionAnswering

    task = VideoQuestionAnswering(create_clip("SigLIP-T-8-test", str(synthetic_siglip[0])), mode="mc")
    assert "backbone.logit_bias" not in task.trainable_names() and "backbone.logit_scale" in task.trainable_names()
