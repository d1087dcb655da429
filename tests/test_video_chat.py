"""Generative video QA on a tiny LLaVA written by transformers: prompts, what trains, learning, generation, metrics."""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("transformers")

from lit_i2v.backbones.llava import LLaVA  # noqa: E402
from lit_i2v.backbones.llava_tiny import write_tiny_llava  # noqa: E402
from lit_i2v.heads.frame_tokens import NextVideoPool, PLLaVAPool, VideoChatGPTPool  # noqa: E402
from lit_i2v.metrics.answers import contains_match, exact_match, normalize_answer  # noqa: E402
from lit_i2v.strategies import EVL, MultimodalLLM, STAdapter  # noqa: E402
from lit_i2v.tasks import GenerativeVideoQA  # noqa: E402
from lit_i2v.tasks.video_chat import IGNORE  # noqa: E402

TEMPLATE = "user : {video} {question} assistant :"


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return write_tiny_llava(tmp_path_factory.mktemp("llava") / "tiny")


def task(folder, transfer=None, **kwargs) -> GenerativeVideoQA:
    torch.manual_seed(0)
    return GenerativeVideoQA(LLaVA(str(folder)), transfer, template=TEMPLATE, max_new_tokens=4, **kwargs)


def test_prompts_hold_the_placeholders_and_the_loss_reads_the_answer_only(folder):
    model = task(folder)
    tok = model.backbone.tokenizer
    ids, mask, labels = model.encode_prompts(
        ["what is the circle doing ?", "what colour ?"], 3, ["up", "left to right"]
    )
    assert ((ids == model.backbone.image_token_id).sum(1) == 3).all()
    answer = labels[1][labels[1] != IGNORE].tolist()
    assert answer[-1] == tok.eos_token_id and tok.decode(answer[:-1]) == "left to right"  # the answer and its end
    assert (labels[mask == 0] == IGNORE).all()
    left, left_mask, _ = model.encode_prompts(["what colour ?", "what is the circle doing ?"], 3, left=True)
    assert left_mask[:, -1].all() and not left_mask[0, 0]  # padded on the left, for generation


def test_the_answer_is_tokenised_as_it_follows_the_prompt(folder):
    """A byte-level BPE (Qwen2's kind) marks a word after a space (``Ġyes``) unlike one after a newline: the answer's
    labels are the tokens that follow the prompt's own end, ``assistant\n`` then ``yes``, not a lone " yes"."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    core = Tokenizer(models.BPE())
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    core.decoder = decoders.ByteLevel()
    corpus = ["user what is it doing", "assistant\nyes", "assistant\nno", "yes no up down", "say yes"] * 20
    core.train_from_iterator(
        corpus,
        trainers.BpeTrainer(
            vocab_size=300, special_tokens=["<eos>", "<image>"], initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
        ),
    )
    byte_level = PreTrainedTokenizerFast(tokenizer_object=core, eos_token="<eos>", pad_token="<eos>")
    model = GenerativeVideoQA(LLaVA(str(folder)), template="user {video} {question} assistant\n")
    model.backbone.tokenizer = byte_level
    model.backbone.image_token_id = byte_level.convert_tokens_to_ids("<image>")
    ids, _, labels = model.encode_prompts(["what is it doing"], 2, ["yes"])
    answer = labels[0][labels[0] != IGNORE].tolist()[:-1]
    whole = byte_level("assistant\nyes", add_special_tokens=False)["input_ids"]
    tail = byte_level("assistant\n", add_special_tokens=False)["input_ids"]
    assert answer == whole[len(tail) :] != byte_level(" yes", add_special_tokens=False)["input_ids"]


@pytest.mark.parametrize(
    ("transfer", "trains"),
    [
        (MultimodalLLM(), set()),
        (MultimodalLLM(projector=True), {"multi_modal_projector"}),
        (MultimodalLLM(llm_lora_rank=4), {"q_proj.lora_A", "q_proj.lora_B", "v_proj.lora_A", "v_proj.lora_B"}),
        (MultimodalLLM(STAdapter(channels=8), projector=True), {"st_adapter", "multi_modal_projector"}),
    ],
    ids=["training-free", "projector", "llm-lora", "st-adapter+projector"],
)
def test_one_predicate_decides_what_trains(folder, transfer, trains):
    model = task(folder, transfer)
    names = model.trainable_names()
    assert all(any(t in n for t in trains) for n in names)
    assert all(any(t in n for n in names) for t in trains)
    small = model.trainable_state_dict()
    assert set(small) == set(names)


def test_llm_lora_keeps_names_and_merges_to_the_same_outputs(folder):
    model = task(folder, MultimodalLLM(llm_lora_rank=4)).eval()
    assert model.transfer.mergeable and not MultimodalLLM(STAdapter(channels=8), llm_lora_rank=4).mergeable
    plain = set(LLaVA(str(folder)).state_dict())
    assert plain <= set(model.backbone.state_dict())  # pretrained names unchanged
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:
                p.normal_(0, 0.1)
        video = torch.randn(1, 2, 3, 32, 32)
        before = model(video)
        model.transfer.merge(model.backbone)
        assert set(model.backbone.state_dict()) == plain
        assert torch.allclose(model(video), before, atol=1e-5)


def test_a_network_beside_the_tower_is_refused(folder):
    with pytest.raises(ValueError, match="transfer.vision: EVL is a network beside the tower"):
        task(folder, MultimodalLLM(EVL(num_layers=1, heads=2)))


@pytest.mark.parametrize("frame_tokens", [None, NextVideoPool(), PLLaVAPool(shape=(2, 2, 2)), VideoChatGPTPool()],
                         ids=["frames", "next-video", "pllava", "video-chatgpt"])  # fmt: skip
def test_training_makes_the_model_answer_and_exact_match_counts_it(folder, frame_tokens):
    """Two clips with their own answers: untrained, the tiny LLM answers neither; after 40 steps that train the
    projector and the LLM (the tower frozen), it writes both answers, which exact match scores 100%."""
    model = task(folder, MultimodalLLM(projector=True, language_model=True), frame_tokens=frame_tokens)
    torch.manual_seed(3)
    video = torch.randint(0, 256, (2, 4, 3, 32, 32), dtype=torch.uint8)
    questions, answers = ["what is the circle doing ?"] * 2, ["left to right", "down"]
    before = model.generate(model.normalize(video), questions)
    assert not any(exact_match(a, r) for a, r in zip(before, answers, strict=True))
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=3e-3)
    batch = {"video": video, "question": questions, "answer": answers}
    for _ in range(40):
        optimizer.zero_grad()
        model.training_step(batch, 0).backward()
        optimizer.step()
    after = model.eval().generate(model.normalize(video), questions)
    assert after == answers


def test_batched_generation_equals_one_at_a_time(folder):
    """Left padding and the attention mask: a short and a long question together answer as they do alone."""
    model = task(folder, MultimodalLLM(projector=True)).eval()
    torch.manual_seed(4)
    with torch.no_grad():
        for p in model.backbone.language_model.parameters():
            p.add_(torch.randn_like(p) * 0.5)  # an LLM whose answers depend on its input
    video = model.normalize(torch.randint(0, 256, (2, 2, 3, 32, 32), dtype=torch.uint8))
    questions = ["what colour ?", "what is the red circle doing in the video ?"]
    together = model.generate(video, questions)
    alone = [model.generate(video[i : i + 1], [q])[0] for i, q in enumerate(questions)]
    assert together == alone


def test_answer_normalisation_and_matches():
    assert normalize_answer("The Cat, sat.") == "cat sat"
    assert exact_match("A dog!", "dog") and not exact_match("a dog runs", "dog")
    assert contains_match("the person is moving left to right", "left to right")
    assert not contains_match("leftover", "left") and not contains_match("anything", "")


def test_likelihood_ranks_the_answer_the_model_was_taught(folder):
    """After teaching each clip its answer, ranking a closed vocabulary (or the options of a multiple-choice
    question) by the answer's log-likelihood picks it; the scores are the summed log-probabilities of the answer's
    tokens and end of sequence, checked against the logits directly."""
    vocabulary = ["up", "down", "left to right", "red"]
    model = task(folder, MultimodalLLM(projector=True, language_model=True), answer_by="vocabulary", answers=vocabulary)
    torch.manual_seed(3)
    video = torch.randint(0, 256, (2, 4, 3, 32, 32), dtype=torch.uint8)
    batch = {"video": video, "question": ["what is the circle doing ?"] * 2, "answer": ["left to right", "down"]}
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=3e-3)
    for _ in range(40):
        optimizer.zero_grad()
        model.training_step(batch, 0).backward()
        optimizer.step()
    model.eval()
    clips = model.normalize(video)
    assert model.answer(clips, batch) == ["left to right", "down"]
    batch["candidates"] = [["red", "left to right", "up"], ["down", "up", "red"]]
    model.answer_by = "choice"
    assert model.answer(clips, batch) == ["left to right", "down"]
    (scores,) = model.likelihoods(clips[:1], ["what is the circle doing ?"], [["up"]])
    ids, mask, labels = model.encode_prompts(["what is the circle doing ?"], model.visual_tokens(clips[:1]).shape[1],
                                             ["up"])  # fmt: skip
    with torch.no_grad():
        logp = model.backbone(model.backbone.splice(ids, model.visual_tokens(clips[:1])), mask).log_softmax(-1)
    positions = (labels[0] != IGNORE).nonzero()[:, 0]
    expected = sum(logp[0, i - 1, labels[0, i]] for i in positions)
    assert torch.allclose(scores[0], expected, atol=1e-4)
    with pytest.raises(ValueError, match="answer_by 'vocabulary' ranks a closed list of answers"):
        task(folder, answer_by="vocabulary")


RECIPES = sorted((__import__("pathlib").Path(__file__).resolve().parents[1] / "configs").rglob("llava-*.yaml"))


@pytest.mark.parametrize("recipe", RECIPES, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_real_recipes_fail_in_seconds_naming_the_weights(recipe, monkeypatch, tmp_path):
    """Offline, each 7B recipe's backbone fails at once with the hub repository it needs and how to fetch it."""
    import time

    import huggingface_hub.constants as constants
    import yaml

    from lit_i2v.backbones.weights import WeightsError

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path))  # hermetic: an empty cache, whatever this machine has
    backbone = yaml.safe_load(recipe.read_text())["model"]["init_args"]["backbone"]
    assert backbone["class_path"] == "lit_i2v.backbones.LLaVA"
    repo = backbone["init_args"]["pretrained"]
    start = time.perf_counter()
    with pytest.raises(WeightsError, match=rf"{repo}: not in the Hugging Face cache .*huggingface-cli download"):
        LLaVA(**backbone["init_args"])
    assert time.perf_counter() - start < 10


def test_a_bf16_true_step_and_validation_run(folder, tmp_path):
    """The 7B evaluation recipes run in bf16-true: the tower, projector and LLM in bf16, the prompt spliced in bf16."""
    import lightning as L
    from torch.utils.data import DataLoader

    model = task(folder, MultimodalLLM(projector=True), question_types=["motion"])
    train, val = [model.example_batch(training=True)], [model.example_batch(training=False)]
    trainer = L.Trainer(accelerator="cpu", precision="bf16-true", max_steps=1, logger=False, enable_progress_bar=False,
                        enable_checkpointing=False, enable_model_summary=False, default_root_dir=tmp_path)  # fmt: skip
    trainer.fit(model, DataLoader(train, batch_size=None), DataLoader(val, batch_size=None))
    assert torch.isfinite(trainer.callback_metrics["train/loss"]) and trainer.callback_metrics["val/questions"] == 2
    assert next(model.backbone.language_model.parameters()).dtype == torch.bfloat16


@pytest.mark.parametrize("model_type", ["llava", "llava_onevision"])
@pytest.mark.parametrize("vision", ["STAdapter", "AIM", "LoRA"])
def test_vision_strategies_adapt_both_kinds_of_tower(model_type, vision, tmp_path):
    """CLIP's tower (LLaVA) and SigLIP's (OneVision: no class token) take the vision strategies as CLIP does: the
    answer's loss reaches the strategy's parameters through the LLM and the projector."""
    from lit_i2v.strategies import AIM, LoRA
    from lit_i2v.strategies import STAdapter as ST

    from .test_llava import write_llava

    make = {"STAdapter": lambda: ST(channels=8), "AIM": lambda: AIM(max_frames=4), "LoRA": lambda: LoRA(rank=2)}
    folder = write_llava(tmp_path / model_type, model_type=model_type)
    model = task(folder, MultimodalLLM(make[vision]())).train()
    trains = model.trainable_names()
    assert trains and all(n.startswith("backbone.visual.") for n in trains)
    model.training_step(model.example_batch(), 0).backward()
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)


def test_summary_counts_the_llm_and_the_visual_tokens(capsys):
    """``summary`` on the synthetic recipe (meta device: built from config.json): 8 frames of an 8x8 grid pooled 2x2
    are 128 visual tokens; the LLM's parameters include its output layer; what trains is the projector and LLM."""
    import json
    from pathlib import Path

    from lit_i2v.cli import main

    config = Path(__file__).resolve().parents[1] / "configs" / "qa" / "synthetic_llava.yaml"
    assert main(["summary", "--config", str(config), "--json"]) == 0
    s = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    model = LLaVA("synthetic")
    llm = sum(p.numel() for n, p in model.named_parameters() if n.startswith("mllm.") and "projector" not in n)
    projector = sum(p.numel() for p in model.projector.parameters())
    assert s["visual_tokens"] == 128 and s["language_model_params"] == llm
    assert s["trainable_params"] == llm + projector and s["gflops_per_view"] > 0


def test_an_mllm_learns_to_caption_and_is_scored_by_the_coco_code(folder, tmp_path):
    """GenerativeCaptioning: the caption is the answer to one prompt; after teaching two clips their captions it
    writes them, and a Lightning validation scores them with pycocoevalcap (CIDEr-D 10 on exact captions)."""
    import lightning as L
    from torch.utils.data import DataLoader

    from lit_i2v.tasks import GenerativeCaptioning

    pytest.importorskip("pycocoevalcap")
    torch.manual_seed(0)
    model = GenerativeCaptioning(LLaVA(str(folder)), MultimodalLLM(projector=True, language_model=True),
                                 template=TEMPLATE, prompt="what happens ?", max_new_tokens=6)  # fmt: skip
    video = torch.randint(0, 256, (2, 4, 3, 32, 32), dtype=torch.uint8)
    captions = ["a red circle moving left", "a blue square moving down"]
    batch = {"video": video, "caption": captions}
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=3e-3)
    for _ in range(40):
        optimizer.zero_grad()
        model.training_step(batch, 0).backward()
        optimizer.step()
    assert model.eval().generate(model.normalize(video), ["what happens ?"] * 2) == captions
    val = {"video": video[:, None], "captions": [[c] for c in captions], "video_id": ["a", "b"],
           "valid": torch.ones(2, dtype=torch.bool), "index": torch.arange(2), "skipped": torch.zeros(2)}  # fmt: skip
    trainer = L.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False, default_root_dir=tmp_path)
    (scores,) = trainer.validate(model, DataLoader([val], batch_size=None))
    assert scores["val/videos"] == 2 and scores["val/cider"] == pytest.approx(1000.0)  # 10, x100
