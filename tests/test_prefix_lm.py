"""ClipCap's prefix captioner (``PrefixLM``) on tiny GPT-2 folders written by transformers: loading, the prefix's place
in the LM's input, decoding against transformers' own generation, what trains, ClipCap's parameter counts."""

from __future__ import annotations

import json
import os

import pytest
import torch

pytest.importorskip("transformers")

from lit_i2v.backbones import CLIP  # noqa: E402
from lit_i2v.backbones.causal_lm import load_causal_lm, write_tiny_gpt2  # noqa: E402
from lit_i2v.backbones.weights import WeightsError  # noqa: E402
from lit_i2v.heads import PrefixLM  # noqa: E402
from lit_i2v.strategies import Frozen  # noqa: E402
from lit_i2v.tasks import VideoCaptioning  # noqa: E402
from tests.conftest import hub_snapshot  # noqa: E402
from tests.test_captioning import learns_to_say  # noqa: E402


@pytest.fixture(scope="module")
def gpt2(tmp_path_factory):
    return write_tiny_gpt2(tmp_path_factory.mktemp("gpt2") / "tiny-gpt2")


def task(folder, backbone: str = "ViT-T-8-test", **kwargs) -> VideoCaptioning:
    torch.manual_seed(0)
    options = dict(mapping="transformer", mapping_layers=1, mapping_heads=2, prefix_length=4, clip_length=3,
                   max_length=12) | kwargs  # fmt: skip
    return VideoCaptioning(CLIP(backbone), Frozen(), PrefixLM(str(folder), **options))


def clips(seed: int = 1) -> torch.Tensor:
    torch.manual_seed(seed)
    return torch.randn(2, 4, 3, 32, 32)


def test_a_gpt2_folder_loads_with_its_tokenizer_and_the_hub_name_reads_the_cache(gpt2, tmp_path, monkeypatch):
    """The folder holds what GPT-2's repositories hold; its byte-level BPE round-trips captions (GPT-2's slow
    tokenizer from vocab.json and merges.txt agrees); ``hf-hub:`` finds it in the Hugging Face cache offline."""
    from transformers import GPT2LMHeadModel, GPT2Tokenizer

    assert {"config.json", "model.safetensors", "vocab.json", "merges.txt", "tokenizer.json"} <= {
        f.name for f in gpt2.iterdir()
    }
    model, tok, _ = load_causal_lm(str(gpt2))
    assert isinstance(model, GPT2LMHeadModel) and model.training
    text = "moving red circle from left to right"
    assert tok.decode(tok.encode(text)) == text
    slow = GPT2Tokenizer(str(gpt2 / "vocab.json"), str(gpt2 / "merges.txt"))
    assert slow.encode(text) == tok.encode(text) and slow.encode("a purple zebra") == tok.encode("a purple zebra")
    reference = GPT2LMHeadModel.from_pretrained(gpt2)
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), reference.state_dict().values(),
                                                 strict=True))  # fmt: skip
    snapshot = hub_snapshot(monkeypatch, tmp_path / "hub", "openai-community/tiny-gpt2", gpt2)
    assert load_causal_lm("hf-hub:openai-community/tiny-gpt2")[2] == snapshot


def test_bad_language_models_are_refused_in_one_line(gpt2, tmp_path, monkeypatch):
    with pytest.raises(WeightsError, match=r"decoder.init_args.pretrained: .*empty has no config.json"):
        load_causal_lm(str(tmp_path / "empty"))
    hub_snapshot(monkeypatch, tmp_path / "hub", "openai-community/other", {"config.json": "{}"})  # the hub offline
    with pytest.raises(WeightsError, match=r"hf-hub:openai-community/gpt2: not in the Hugging Face cache .* set "
                                           r"model.init_args.decoder.init_args.pretrained to that folder"):  # fmt: skip
        load_causal_lm("hf-hub:openai-community/gpt2")
    other = tmp_path / "other"
    other.mkdir()
    for f in gpt2.iterdir():
        (other / f.name).write_bytes(f.read_bytes())
    config = json.loads((other / "config.json").read_text())
    (other / "config.json").write_text(json.dumps(config | {"n_layer": 3}))
    with pytest.raises(WeightsError, match=r"other: the weights do not fit gpt2's config: missing \['transformer.h.2"):
        load_causal_lm(str(other))
    for kwargs, message in [
        (dict(mapping="conv"), "mapping 'conv': mlp or transformer"),
        (dict(mapping="mlp", memory="frames"), "memory 'frames' needs mapping: transformer"),
        (dict(prefix_length=40, max_length=30), "prefix_length \\+ max_length - 2 = 68, more than the 64 positions"),
        (dict(dtype="bfloat16"), "dtype 'bfloat16' with train_language_model: AdamW's updates"),
    ]:
        with pytest.raises(ValueError, match=message):
            PrefixLM(str(gpt2), **kwargs)


@pytest.mark.parametrize("mapping", ["mlp", "transformer"])
def test_the_prefix_takes_the_start_markers_place_in_the_lms_input(gpt2, mapping):
    """Logits at row position i are the LM's at prefix position k - 1 + i over [prefix, words]: the prefix's last
    embedding predicts the first word (ClipCap's ``logits[:, prefix_length - 1 : -1]``); right padding leaves a short
    caption's logits as they are alone."""
    model = task(gpt2, mapping=mapping).eval()
    decoder, k = model.decoder, model.decoder.prefix_length
    with torch.no_grad():
        prefix = model.memory(clips())
        assert prefix.shape == (2, k, decoder.width)
        ids, padding = model.tokenize(["a red circle", "moving blue square from left to right"])
        lm = decoder.language_model
        direct = lm(inputs_embeds=torch.cat([prefix, lm.get_input_embeddings()(ids[:, 1:])], 1)).logits[:, k - 1 :]
        assert torch.allclose(decoder(prefix, ids), direct, atol=1e-5)
        alone, _ = model.tokenize(["a red circle"])
        batched = decoder(prefix, ids, padding)[0, : alone.shape[1]]
        assert torch.allclose(batched, decoder(prefix[:1], alone)[0], atol=1e-5)
        assert torch.allclose(decoder(prefix, ids, last=True), direct[:, -1], atol=1e-5)


def perturb(model) -> None:
    torch.manual_seed(5)
    with torch.no_grad():
        for p in model.decoder.parameters():
            p.add_(torch.randn_like(p) * 0.3)


def test_greedy_decoding_equals_transformers_generate_from_the_prefix(gpt2):
    """The task's greedy loop (the whole row each step) picks the tokens transformers' ``generate`` picks from the
    same prefix with its key-value cache, and stops at GPT-2's end-of-text."""
    model = task(gpt2).eval()
    perturb(model)
    with torch.no_grad():
        prefix = model.memory(clips())
        ours = model.greedy(prefix)
        eos = model.decoder.end_id
        generated = model.decoder.language_model.generate(
            inputs_embeds=prefix, max_new_tokens=model.decoder.max_length - 1, do_sample=False, eos_token_id=eos,
            pad_token_id=eos, attention_mask=torch.ones(prefix.shape[:2], dtype=torch.long),
        )  # fmt: skip
    theirs = [row[: row.index(eos)] if eos in row else row for row in generated.tolist()]
    assert ours == theirs and any(len(row) > 2 for row in ours)


def test_frames_memory_sees_frame_order_and_mean_does_not(gpt2):
    for memory, blind in (("mean", True), ("frames", False)):
        model = task(gpt2, memory=memory).eval()
        perturb(model)
        with torch.no_grad():
            same = torch.allclose(model(clips()), model(clips().flip(1)), atol=1e-5)
        assert same == blind, memory


def test_a_frozen_lm_stays_in_eval_mode_and_only_the_mapping_trains(gpt2):
    """ClipCap's ``--only_prefix``: GPT-2 frozen (and without dropout); the mapping network gets every gradient.
    GPT-2's parameters count as pretrained (``new_lr_scale`` spares them), the mapping's as new."""
    model = task(gpt2, train_language_model=False).train()
    assert not model.decoder.language_model.training and model.decoder.mapper.training
    model.training_step(model.example_batch(), 0).backward()
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all(n.startswith("decoder.") and ".language_model." not in f".{n}" for n in trainable)
    assert all(p.grad is not None for n, p in model.named_parameters() if n in trainable)
    model._pretrained = model.pretrained_parameters()
    assert not model.is_new("decoder.language_model.transformer.h.0.attn.c_attn.weight")
    assert model.is_new("decoder.prefix_const")
    tuned = task(gpt2, mapping="mlp").train()
    tuned.training_step(tuned.example_batch(), 0).backward()
    assert tuned.decoder.language_model.training
    assert all(p.grad is not None for p in tuned.decoder.language_model.parameters())


@pytest.mark.parametrize("backbone", ["ViT-T-8-test", "SigLIP-T-8-test"])
def test_training_makes_the_prefix_captioner_say_each_videos_caption(gpt2, backbone):
    """Both towers caption through GPT-2's tokenizer (SigLIP has no start marker of its own: the prefix needs
    none); greedy and beam search then say the trained captions."""
    model = task(gpt2, backbone, mapping="mlp")
    video = torch.randint(0, 128, (2, 4, 3, 32, 32), dtype=torch.uint8)
    video[1] += 128  # a dark and a bright video: their average embeddings differ
    learns_to_say(model, video, ["moving red circle from left to right", "making blue square disappear"])


def test_clipcap_counts_on_gpt2_small_built_from_its_config(gpt2, tmp_path):
    """GPT-2 small's config (transformers' defaults), built on the meta device as ``summary`` builds it: ClipCap's
    MLP onto CLIP's 512-wide embedding and k = 10 adds 31.5M to GPT-2's 124.4M, the paper's 156M trainable."""
    from transformers import GPT2Config

    folder = tmp_path / "gpt2-small"
    folder.mkdir()
    GPT2Config().save_pretrained(folder)
    for name in ("vocab.json", "merges.txt", "tokenizer.json", "tokenizer_config.json"):
        (folder / name).write_bytes((gpt2 / name).read_bytes())
    with torch.device("meta"):
        decoder = PrefixLM(str(folder), mapping="mlp", prefix_length=10)
        decoder.build(512, None)
    lm = sum(p.numel() for p in decoder.language_model.parameters())
    mapping = sum(p.numel() for p in decoder.mapper.parameters())
    assert lm == 124_439_808 and mapping == 512 * 3840 + 3840 + 3840 * 7680 + 7680
    assert round((lm + mapping) / 1e6) == 156


@pytest.mark.slow
def test_the_synthetic_clipcap_recipe_fits_and_captions_offline(synth_root, tmp_path):
    """configs/captioning/synthetic_clipcap.yaml through the CLI (a tiny tower, a few steps): the synthetic GPT-2 is
    written on first use, and validation writes every video's caption with the four metrics."""
    import subprocess
    import sys
    from pathlib import Path

    from lit_i2v.data.synthetic import write_captions

    write_captions(synth_root)
    root = Path(__file__).resolve().parents[1]
    run = tmp_path / "run"
    args = [sys.executable, "-m", "lit_i2v", "fit", "--config", str(root / "configs/captioning/synthetic_clipcap.yaml"),
            "--model.init_args.backbone.init_args.arch=ViT-T-8-test",
            "--model.init_args.backbone.init_args.pretrained=null", "--data.synthetic=null",
            f"--data.train={synth_root / 'captions_train.json'}",
            f"--data.val={synth_root / 'captions_validation.json'}",
            f"--data.root={synth_root / 'videos'}", "--data.batch_size=8", "--data.num_workers=0",
            "--data.sampler.init_args.num_frames=4", "--data.train_transform=lit_i2v.data.TrainTransform",
            "--data.train_transform.size=32", "--data.eval_transform=lit_i2v.data.EvalTransform",
            "--data.eval_transform.size=32", "--trainer.max_epochs=1", "--trainer.check_val_every_n_epoch=1",
            "--trainer.limit_train_batches=2", f"--trainer.default_root_dir={run}",
            f"--trainer.logger.init_args.save_dir={run}", "--trainer.enable_progress_bar=false"]  # fmt: skip
    env = os.environ | {"LIT_I2V_CACHE": str(tmp_path / "cache")}  # the synthetic GPT-2 written here
    done = subprocess.run(args, cwd=tmp_path, capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    assert (tmp_path / "cache" / "gpt2-synthetic" / "model.safetensors").is_file()
    (written,) = run.rglob("captions_val_epoch0.json")
    result = json.loads(written.read_text())
    assert len(result["captions"]) == 16 and {"bleu4", "rouge_l", "cider"} <= set(result["metrics"])


def test_summary_writes_the_synthetic_gpt2_on_cpu_and_leaves_the_random_state(tmp_path, monkeypatch, capsys):
    """``summary`` builds on the meta device: the synthetic GPT-2 written on first use is still written with real
    weights (on the CPU), and writing it does not reseed the caller's generator."""
    from lit_i2v.cli import main

    monkeypatch.setenv("LIT_I2V_CACHE", str(tmp_path))
    torch.manual_seed(3)
    expected = torch.rand(3)
    torch.manual_seed(3)
    with pytest.warns(UserWarning, match="not on this machine"):
        assert main(["summary", "--config", "configs/captioning/synthetic_clipcap.yaml", "--json"]) == 0
    assert (tmp_path / "gpt2-synthetic" / "model.safetensors").is_file()
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["model"] == "VideoCaptioning" and summary["trainable_params"] > 0
    torch.manual_seed(3)
    write_tiny_gpt2(tmp_path / "again", seed=7)
    assert torch.equal(torch.rand(3), expected)


def test_the_output_layer_runs_in_fp32_under_bf16_autocast(gpt2):
    """Under bf16 autocast the LM's body runs in bf16 and its output layer in fp32: the logits are the fp32 product
    of the last hidden states and the tied embedding, not a bf16 product cast up."""
    model = task(gpt2).eval()
    lm = model.decoder.language_model
    with torch.no_grad():
        prefix = model.memory(clips())
        ids, _ = model.tokenize(["a red circle", "moving blue square up"])
        with torch.autocast("cpu", dtype=torch.bfloat16):
            mixed = model.decoder(prefix, ids)
            words = lm.get_input_embeddings()(ids[:, 1:])
            h = lm.base_model(inputs_embeds=torch.cat([prefix, words], 1), use_cache=False).last_hidden_state
        h, weight = h[:, -ids.shape[1] :].float(), lm.get_output_embeddings().weight.float()
        exact, rounded = h @ weight.t(), (h.bfloat16() @ weight.bfloat16().t()).float()
    assert not torch.allclose(rounded, exact, atol=1e-5)  # a bf16 output layer would be told apart
    assert mixed.dtype == torch.float32 and torch.allclose(mixed, exact, atol=1e-5)
