"""Self-critical sequence training: the CIDEr-D reward against pycocoevalcap's, the loss by hand, its effect, the
references it reads, and its bad arguments."""

from __future__ import annotations

import math
import random

import pytest
import torch

from lit_i2v.errors import ConfigError
from lit_i2v.metrics.captions import CiderD, simple_tokenize
from lit_i2v.tasks import SelfCritical
from tests.test_captioning import task


def test_cider_d_with_the_scored_sets_corpus_equals_pycocoevalcap():
    from pycocoevalcap.cider.cider import Cider

    rng = random.Random(0)
    words = ["a", "red", "circle", "moves", "left", "right", "up", "down", "the", "square", "blue", "from", "to"]
    refs = {str(i): [" ".join(rng.choices(words, k=rng.randint(1, 9))) for _ in range(rng.randint(1, 4))]
            for i in range(40)}  # fmt: skip
    res = {k: [" ".join(rng.choices(words, k=rng.randint(1, 9)))] for k in refs}
    res["3"], res["4"] = [refs["3"][0]], ["up"]  # a reference itself, one word
    mean, per_video = Cider().compute_score(refs, res)
    cider = CiderD(list(refs.values()))
    ours = [cider.score(res[k][0], refs[k]) for k in refs]
    assert ours == pytest.approx(list(per_video), abs=1e-12) and sum(ours) / len(ours) == pytest.approx(mean)


def test_cider_d_on_hand_checked_cases():
    """Two documents, every n-gram in one: each weighs log 2. A caption equal to its one reference matches its
    unigrams and bigram (cosine 1) and has no 3- or 4-grams: (1 + 1 + 0 + 0) / 4 x 10 = 5. Reversed, only the
    unigrams match: 2.5. Against two references, the mean over them: "a b" scores 5 and 0, so 2.5; "c" against "c d"
    has unigram cosine 1/sqrt 2, no bigram, and one bigram less (exp(-1/72)): 10 x (1/sqrt 2) / 4 x exp(-1/72) / 2."""
    cider = CiderD([["a b"], ["c d"]])
    assert cider.score("a b", ["a b"]) == pytest.approx(5.0)
    assert cider.score("b a", ["a b"]) == pytest.approx(2.5)
    c_against_c_d = 10 / math.sqrt(2) / 4 * math.exp(-1 / 72)
    assert cider.scores(["a b", "c"], ["a b", "c d"]) == pytest.approx([2.5, c_against_c_d / 2])
    # an n-gram in every document has IDF 0 and counts for nothing
    assert CiderD([["a b"], ["a d"]]).score("a", ["a"]) == 0.0


def batch_of(model, video, captions, references):
    return {"video": video, "caption": captions, "captions": references}


def test_the_loss_is_each_sampled_tokens_log_probability_weighted_by_its_advantage(monkeypatch):
    """Samples of different lengths (one ended early, one never ended), a greedy baseline: the loss equals
    -(reward - greedy reward) x log p summed over each sample's tokens up to its end marker, over all those tokens."""
    model = task(self_critical=SelfCritical(samples=2, document_frequency="batch"))
    tok = model.backbone.tokenizer
    video = torch.randint(0, 256, (2, 4, 3, 32, 32), dtype=torch.uint8)
    references = [["a red circle moves left", "a red circle"], ["a blue square falls down"]]
    words = [tok.encode(t) for t in ("a red circle", "a red", "a blue square falls", "blue")]
    length = model.decoder.max_length
    rows = [[tok.sot_id, *w, tok.eot_id] for w in words[:3]] + [[tok.sot_id, *(words[3] * length)][:length]]
    width = max(len(r) for r in rows)
    sampled = torch.tensor([r + [tok.eot_id] * (width - len(r)) for r in rows])
    greedy = [tok.encode("a red circle moves"), tok.encode("a blue")]
    monkeypatch.setattr(model, "sample", lambda memory: sampled)
    monkeypatch.setattr(model, "greedy", lambda memory: greedy)
    model.train()
    torch.manual_seed(0)
    loss = model.training_step(batch_of(model, video, ["x", "y"], references), 0)

    model.eval()  # dropout is 0: the same memory
    with torch.no_grad():
        memory = model.memory(model.normalize(video))
    cider = CiderD([[simple_tokenize(c) for c in refs] for refs in references])
    total, tokens = 0.0, 0
    for i, row in enumerate(rows):
        v = i // 2
        reward = cider.score(tok.decode(row[1:-1] if row[-1] == tok.eot_id else row[1:]).strip(), references[v])
        advantage = reward - cider.score(tok.decode(greedy[v]).strip(), references[v])
        seq = torch.tensor([row])
        with torch.no_grad():
            logp = model.decoder(memory[v : v + 1], seq[:, :-1]).log_softmax(-1)[0].gather(-1, seq[0, 1:, None])
        total += advantage * float(logp.sum())
        tokens += len(row) - 1
    assert float(loss.detach()) == pytest.approx(-total / tokens, rel=1e-5)


def test_self_critical_steps_raise_the_expected_reward():
    """A captioner taught two captions for one video by teacher forcing, then 16 self-critical steps (the mean
    baseline) whose references hold one of them: the mean CIDEr-D of 64 sampled captions rises from about 4 to
    above 6, and more samples are that caption. (With a greedy baseline that already says it, every advantage is at
    most 0 and these steps only push samples down: ``docs/tasks.md``.)"""
    torch.manual_seed(3)
    video = torch.randint(0, 256, (1, 4, 3, 32, 32), dtype=torch.uint8)
    wanted, other = "a red circle moves left", "a blue square falls down"
    cider = CiderD([[wanted], [other]])  # "a", in both, weighs nothing

    def expected_reward(n: int = 64) -> tuple[float, int]:
        model.eval()
        torch.manual_seed(1)
        with torch.no_grad():
            rows = model.sample(model.memory(model.normalize(video)).repeat_interleave(n, 0))
        texts = [model.decoder.decode_text(model._words(row)) for row in rows.tolist()]
        return sum(cider.scores(texts, [wanted])) / n, texts.count(wanted)

    model = task(label_smoothing=0.0)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=3e-3)
    torch.manual_seed(0)
    model.train()
    for _ in range(60):  # teacher forcing on both captions
        optimizer.zero_grad()
        model.training_step({"video": torch.cat([video, video]), "caption": [wanted, other]}, 0).backward()
        optimizer.step()
    before, said_before = expected_reward()
    assert 3 < before < 5
    model.self_critical, model._cider = SelfCritical(samples=8, baseline="mean"), cider
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    for _ in range(16):
        model.train()
        optimizer.zero_grad()
        model.training_step(batch_of(model, torch.cat([video, video]), [wanted] * 2, [[wanted]] * 2), 0).backward()
        optimizer.step()
    after, said_after = expected_reward()
    assert after > before + 2 and said_after > said_before + 5, (before, after, said_before, said_after)


def test_teacher_forcing_until_after_epoch(monkeypatch):
    model = task(self_critical=SelfCritical(after_epoch=2, document_frequency="batch"))
    called = []
    monkeypatch.setattr(model, "self_critical_step", lambda batch: called.append(True) or torch.zeros(()))
    video = torch.randint(0, 256, (2, 4, 3, 32, 32), dtype=torch.uint8)
    batch = batch_of(model, video, ["a cat", "a dog"], [["a cat"], ["a dog"]])
    for epoch, critical in ((0, False), (1, False), (2, True), (3, True)):
        monkeypatch.setattr(type(model), "current_epoch", property(lambda self, e=epoch: e))
        called.clear()
        loss = model.training_step(batch, 0)
        assert bool(called) == critical and (critical or loss > 0)


def test_training_samples_carry_every_reference_and_the_corpus_is_the_training_captions(synth_root):
    from lit_i2v.data import Captions, VideoDataModule
    from lit_i2v.data.synthetic import write_captions

    write_captions(synth_root)
    dm = VideoDataModule(annotations=Captions(), train=str(synth_root / "captions_train.json"),
                         val=str(synth_root / "captions_validation.json"), root=str(synth_root / "videos"),
                         batch_size=2, num_workers=0)  # fmt: skip
    import json

    written = json.loads((synth_root / "captions_train.json").read_text())
    assert dm.references("train") == [item["captions"] for item in written]
    dm.setup("fit")
    sample = dm.datasets["train"][0]
    assert sample["caption"] in sample["captions"] and sample["captions"] == written[0]["captions"]


def test_self_critical_fits_with_the_training_corpus(synth_root, tmp_path):
    """A Trainer fit, teacher forcing for one epoch then self-critical: the reward is logged and CIDEr-D's corpus is
    the training split's captions."""
    import lightning as L

    from lit_i2v.data import Captions, EvalTransform, TrainTransform, UniformSampler, VideoDataModule
    from lit_i2v.data.synthetic import write_captions

    write_captions(synth_root)
    dm = VideoDataModule(annotations=Captions(), train=str(synth_root / "captions_train.json"),
                         val=str(synth_root / "captions_validation.json"), root=str(synth_root / "videos"),
                         sampler=UniformSampler(4), train_transform=TrainTransform(size=32),
                         eval_transform=EvalTransform(size=32), batch_size=8, num_workers=0)  # fmt: skip
    model = task(self_critical=SelfCritical(after_epoch=1, samples=2))
    trainer = L.Trainer(max_epochs=2, limit_train_batches=2, limit_val_batches=0, logger=False,
                        enable_checkpointing=False, enable_progress_bar=False, default_root_dir=tmp_path)  # fmt: skip
    trainer.fit(model, dm)
    assert "train/reward" in trainer.logged_metrics and "train/reward_greedy" in trainer.logged_metrics
    assert model._cider is not None and len(model._cider.frequency) > 0
    assert math.exp(model._cider.log_size) == pytest.approx(len(dm.references("train")))


@pytest.mark.parametrize(
    "kwargs, key",
    [
        ({"samples": 1, "baseline": "mean"}, "samples"),
        ({"samples": 0}, "samples"),
        ({"baseline": "beam"}, "baseline"),
        ({"document_frequency": "val"}, "document_frequency"),
        ({"after_epoch": -1}, "after_epoch"),
    ],
)
def test_bad_self_critical_arguments_name_their_key(kwargs, key):
    with pytest.raises(ConfigError, match=rf"^model\.init_args\.self_critical\.{key}: must be"):
        SelfCritical(**kwargs)


def test_references_of_labels_are_refused_in_one_line(synth_root):
    from lit_i2v.data import Labels, VideoDataModule

    dm = VideoDataModule(train=str(synth_root / "train.json"), root=str(synth_root / "videos"),
                         annotations=Labels(str(synth_root / "labels.json")), num_workers=0)  # fmt: skip
    with pytest.raises(ConfigError, match=r"^data\.annotations: Labels gives no captions to read \(train\)$"):
        dm.references("train")


def test_a_batch_without_every_reference_is_refused_in_one_line():
    model = task(self_critical=SelfCritical(document_frequency="batch"))
    video = torch.randint(0, 256, (2, 4, 3, 32, 32), dtype=torch.uint8)
    with pytest.raises(ConfigError, match=r"^model\.init_args\.self_critical: the reward reads every reference"):
        model.training_step({"video": video, "caption": ["a cat", "a dog"]}, 0)


def test_a_self_critical_step_on_the_tasks_own_example_batch_reaches_every_trainable_parameter():
    """The example batch carries every reference, as the DataModule's do, and every trainable parameter is in the
    self-critical loss's graph (an untrained model's advantages may all be 0, so not the gradients' values)."""
    model = task(self_critical=SelfCritical(samples=3, document_frequency="batch"))
    loss = model.training_step(model.example_batch(size=3), 0)
    loss.backward()
    assert torch.isfinite(loss)
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)
