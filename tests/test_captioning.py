"""Video captioning: tokens, the decoder's causality, order-blind and temporal memories, decoding, DDP counting,
formats."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from lit_i2v.backbones import CLIP
from lit_i2v.data.formats.annotations import AnnotationError
from lit_i2v.data.formats.captions import read_captions
from lit_i2v.heads import CaptionDecoder
from lit_i2v.strategies import Frozen
from lit_i2v.tasks import VideoCaptioning


def task(memory: str = "frames", **kwargs) -> VideoCaptioning:
    torch.manual_seed(0)
    decoder = CaptionDecoder(layers=1, visual_layers=1, heads=2, memory=memory, max_length=12, dropout=0.0)
    return VideoCaptioning(CLIP("ViT-T-8-test"), Frozen(), decoder, **kwargs)


def clips(seed: int = 1) -> torch.Tensor:
    torch.manual_seed(seed)
    return torch.randn(2, 4, 3, 32, 32)


def test_captions_become_start_words_end_and_are_cut_to_the_maximum():
    model = task()
    tok = model.backbone.tokenizer
    ids, padding = model.tokenize(["a red circle", "a " * 30])
    assert ids[0, 0] == tok.sot_id and tok.decode(ids[0, 1:4].tolist()).strip() == "a red circle"
    assert ids[0, 4] == tok.eot_id and padding[0, 5:].all() and not padding[0, :5].any()
    assert ids.shape[1] == 12 and ids[1, -1] == tok.eot_id  # cut to max_length, the end marker kept


def test_the_decoder_is_causal_and_its_output_layer_is_its_embedding():
    model = task().eval()
    decoder = model.decoder
    assert torch.equal(decoder.token_embedding.weight, model.backbone.text.token_embedding.weight)  # started from it
    with torch.no_grad():
        decoder.output_bias.normal_()
        memory = decoder.encode(torch.randn(1, 4, model.backbone.embed_dim))
        ids, _ = model.tokenize(["a red circle"])
        x = decoder.token_embedding(ids) + decoder.pos_embed[: ids.shape[1]]
        causal = torch.ones(ids.shape[1], ids.shape[1], dtype=torch.bool).triu(1)
        h = decoder.norm(decoder.decoder(x, memory, tgt_mask=causal, tgt_is_causal=True))
        tied = h @ decoder.token_embedding.weight.t() + decoder.output_bias  # the output layer is the embedding
        assert torch.allclose(decoder(memory, ids), tied, atol=1e-4)
    memory = decoder.encode(torch.randn(2, 4, model.backbone.embed_dim))
    ids, _ = model.tokenize(["a red circle moves left", "a blue square moves up"])
    changed = ids.clone()
    changed[:, 4:] = 7  # later tokens change
    with torch.no_grad():
        a, b = decoder(memory, ids), decoder(memory, changed)
    assert torch.allclose(a[:, :4], b[:, :4], atol=1e-5) and not torch.allclose(a[:, 4:], b[:, 4:])


def perturb(model) -> None:
    torch.manual_seed(5)
    with torch.no_grad():
        for p in model.decoder.parameters():
            p.add_(torch.randn_like(p) * 0.2)


def test_a_mean_memory_is_blind_to_frame_order_and_a_frame_memory_is_not():
    video = clips()
    reverse = video.flip(1)
    for memory, blind in (("mean", True), ("frames", False)):
        model = task(memory).eval()
        perturb(model)
        with torch.no_grad():
            same = torch.allclose(model(video), model(reverse), atol=1e-5)
        assert same == blind, memory


def test_training_makes_the_captioner_say_each_videos_caption():
    video = torch.randint(0, 256, (2, 4, 3, 32, 32), dtype=torch.uint8)
    learns_to_say(task(), video, ["a red circle moves left", "a blue square falls down"])


def learns_to_say(model: VideoCaptioning, video: torch.Tensor, captions: list[str]) -> None:
    """60 AdamW steps on the clips and their captions: greedy decoding and beam search then say the captions, which
    the untrained model did not."""
    batch = {"video": video, "caption": captions}
    assert model.eval().caption(model.normalize(video)) != batch["caption"]
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=3e-3)
    model.train()
    for _ in range(60):
        optimizer.zero_grad()
        model.training_step(batch, 0).backward()
        optimizer.step()
    model.eval()
    assert model.caption(model.normalize(video)) == batch["caption"]
    model.beam_size = 3
    assert model.caption(model.normalize(video)) == batch["caption"]


def sequence_log_prob(model, memory, words: list[int]) -> float:
    tok = model.backbone.tokenizer
    seq = torch.tensor([[tok.sot_id, *words, tok.eot_id]])
    logp = model.decoder(memory, seq[:, :-1]).log_softmax(-1)
    return float(logp[0].gather(-1, seq[0, 1:, None]).sum())


def test_beam_search_with_one_beam_is_greedy_and_wider_beams_score_their_pick():
    """With one beam (and no length penalty) beam search is greedy decoding; with four, on these inputs, its caption
    is at least as likely as greedy's (not guaranteed in general: greedy's prefix can be pruned)."""
    model = task(length_penalty=0.0).eval()
    perturb(model)
    with torch.no_grad():
        memory = model.memory(clips())
        greedy = model.greedy(memory)
        model.beam_size = 1
        assert model.beam_search(memory) == greedy
        model.beam_size = 4
        beams = model.beam_search(memory)
        for b in range(2):
            assert sequence_log_prob(model, memory[b : b + 1], beams[b]) >= (
                sequence_log_prob(model, memory[b : b + 1], greedy[b]) - 1e-4
            )


def test_each_video_is_scored_once_across_ranks(monkeypatch, tmp_path):
    """Two ranks that captioned overlapping videos (a padded sampler's repeats): the merged set counts each once."""
    import lit_i2v.tasks.captioning as captioning

    model = task()
    seen = {}
    monkeypatch.setattr(captioning.dist, "is_initialized", lambda: True)
    monkeypatch.setattr(captioning.dist, "get_world_size", lambda: 2)

    def gather(out, obj):
        out[0] = obj
        out[1] = ({"v2": "a cat", "v3": "a dog"}, {"v2": ["a cat"], "v3": ["a dog"]})

    monkeypatch.setattr(captioning.dist, "all_gather_object", gather)
    monkeypatch.setattr(captioning.dist, "broadcast_object_list", lambda objects, src: None)  # rank 0 scored
    monkeypatch.setattr(captioning, "caption_metrics", lambda refs, found: seen.update(found) or {"videos": len(found)})

    class TextLogger:  # W&B's log_text
        def log_text(self, key, columns, data):
            self.table = (key, columns, data)

    class Trainer:
        is_global_zero, default_root_dir, current_epoch, sanity_checking, loggers = True, str(tmp_path), 0, False, []
        logger = TextLogger()

    model._trainer = Trainer()
    monkeypatch.setattr(model, "log", lambda *a, **k: None)
    collector = model._collected["val"] = captioning.CaptionCollector()
    collector.found, collector.refs = {"v1": "a bird", "v2": "a cat"}, {"v1": ["a bird"], "v2": ["a cat"]}
    model._score("val")
    assert seen == {"v1": "a bird", "v2": "a cat", "v3": "a dog"}
    written = json.loads((tmp_path / "captions_val_epoch0.json").read_text())
    assert [c["video_id"] for c in written["captions"]] == ["v1", "v2", "v3"]
    key, columns, rows = Trainer.logger.table
    assert key == "val/captions" and rows[0] == ["v1", "a bird", "a bird"]


def test_a_table_logger_gets_each_sample_videos_frames_beside_its_captions(monkeypatch, tmp_path):
    """W&B's table: the first videos this rank captioned, each as a strip of 4 evenly spaced frames of the view it
    captioned (the first), in the clip's own pixels, with its caption and references; skipped videos are not shown."""
    import numpy as np

    from lit_i2v.tasks.captioning import CaptionCollector, frame_strip

    clip = torch.arange(8, dtype=torch.uint8).mul(30)[:, None, None, None].expand(8, 3, 2, 5)  # frame t is 30 t
    strip = frame_strip(clip)
    assert strip.shape == (2, 20, 3) and strip.dtype == np.uint8
    assert [int(strip[0, 5 * i, 0]) for i in range(4)] == [0, 60, 150, 210]  # frames 0, 2, 5, 7
    model = task()
    monkeypatch.setattr(model, "log", lambda *a, **k: None)

    class TableLogger:
        def log_table(self, key, columns, data):
            self.table = (key, columns, data)

    class Trainer:
        is_global_zero, default_root_dir, current_epoch, sanity_checking, loggers = True, str(tmp_path), 0, False, []
        global_rank, logger = 0, TableLogger()

    model._trainer = Trainer()
    video = torch.randint(0, 256, (3, 2, 4, 3, 8, 8), dtype=torch.uint8)  # (B, views, T, 3, H, W)
    batch = {"video": video, "video_id": ["a", "b", "c"], "captions": [["x a"], ["x b"], ["x c"]],
             "valid": torch.tensor([True, False, True])}  # fmt: skip
    collector = CaptionCollector()
    collector.add(model, batch, ["one", "two", "three"], "val")
    collector.score(model, "val")
    key, columns, rows = Trainer.logger.table
    assert key == "val/captions" and columns == ["video", "frames", "caption", "references"]
    assert [(r[0], r[2], r[3]) for r in rows] == [("a", "one", "x a"), ("c", "three", "x c")]
    shown = np.asarray(rows[1][1].image.convert("RGB"))
    assert np.array_equal(shown, frame_strip(video[2, 0])) and shown.shape == (8, 32, 3)
    Trainer.global_rank = 1  # another rank keeps its captions, not the frames it would never show
    other = CaptionCollector()
    other.add(model, batch, ["one", "two", "three"], "val")
    assert other.found == {"a": "one", "c": "three"} and other.frames == {}


def test_captioning_formats(tmp_path):
    data = {
        "videos": [{"video_id": "video0", "split": "train"}, {"video_id": "video1", "split": "validate"},
                   {"video_id": "video2", "split": "test"}],
        "sentences": [{"video_id": "video0", "caption": "a man sings"}, {"video_id": "video2", "caption": "a dog"},
                      {"video_id": "video0", "caption": "someone sings"}, {"video_id": "video1", "caption": "a car"}],
    }  # fmt: skip
    (tmp_path / "MSRVTT_data.json").write_text(json.dumps(data))
    for split, vid, caps in (("train", "video0", ["a man sings", "someone sings"]), ("val", "video1", ["a car"]),
                             ("test", "video2", ["a dog"])):  # fmt: skip
        records, captions = read_captions(tmp_path / "MSRVTT_data.json", "/v", "msrvtt_split", split=split)
        assert [r.video_id for r in records] == [vid] and captions == [caps]
    (tmp_path / "vatex.json").write_text(json.dumps([{"videoID": "abc_000010_000020", "enCap": ["x", "y"]}]))
    records, captions = read_captions(tmp_path / "vatex.json", "/v", "vatex")
    assert records[0].path == "/v/abc_000010_000020.mp4" and captions == [["x", "y"]]
    (tmp_path / "bad.json").write_text(json.dumps([{"videoID": "a"}]))
    with pytest.raises(AnnotationError, match="item 0 needs videoID and a non-empty enCap list"):
        read_captions(tmp_path / "bad.json", "/v", "vatex")


def test_a_backbone_without_clips_start_marker_is_refused():
    with pytest.raises(ValueError, match="no start-of-text marker; CaptionDecoder uses CLIP's BPE.*decoder: PrefixLM"):
        VideoCaptioning(CLIP("SigLIP-T-8-test"))


ROOT = Path(__file__).resolve().parents[1]


def test_two_ddp_ranks_caption_each_video_once_and_write_the_captions(synth_root, tmp_path):
    """A real 2-process DDP validation on CPU (gloo): 7 videos split between the ranks, gathered, scored once on
    rank 0 (Java started once) and shared; the captions file names each video once; nothing waits forever."""
    from lit_i2v.data.synthetic import write_captions

    write_captions(synth_root)
    items = json.loads((synth_root / "captions_validation.json").read_text())[:7]
    (tmp_path / "seven.json").write_text(json.dumps(items))
    run = tmp_path / "ddp"
    config = ROOT / "configs" / "captioning" / "synthetic.yaml"
    args = [sys.executable, "-m", "lit_i2v", "validate", "--config", str(config),
            "--model.init_args.backbone.init_args.arch=ViT-T-8-test",
            "--model.init_args.backbone.init_args.pretrained=null",
            "--model.init_args.decoder.init_args.heads=2", "--model.init_args.decoder.init_args.max_length=8",
            "--data.synthetic=null", f"--data.val={tmp_path / 'seven.json'}", f"--data.root={synth_root / 'videos'}",
            "--data.eval_batch_size=2", "--data.num_workers=0", "--data.sampler.init_args.num_frames=4",
            "--data.eval_transform=lit_i2v.data.EvalTransform", "--data.eval_transform.size=32",
            f"--trainer.default_root_dir={run}", f"--trainer.logger.init_args.save_dir={run}",
            "--trainer.devices=2", "--trainer.strategy=ddp", "--trainer.enable_progress_bar=false"]  # fmt: skip
    done = subprocess.run(args, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    (written,) = run.rglob("captions_val_epoch0.json")
    captions = json.loads(written.read_text())
    assert sorted(c["video_id"] for c in captions["captions"]) == sorted(str(i["video_id"]) for i in items)
    assert captions["metrics"]["videos"] == 7


def test_padding_does_not_change_a_short_captions_loss():
    """A caption's logits are the same alone and padded in a batch beside a longer one (the key padding mask)."""
    model = task().eval()
    memory = model.decoder.encode(torch.randn(2, 4, model.backbone.embed_dim)).detach()
    ids, padding = model.tokenize(["a cat", "a red circle moves slowly to the left"])
    alone, _ = model.tokenize(["a cat"])
    with torch.no_grad():
        batched = model.decoder(memory, ids, padding)[0, : alone.shape[1]]
        single = model.decoder(memory[:1], alone)[0]
    assert torch.allclose(batched, single, atol=1e-4)


@pytest.mark.parametrize("memory", ["frames", "mean", "tokens"])
def test_every_trainable_parameter_gets_a_gradient(memory):
    """What no loss reads never trains (DDP without find_unused_parameters stalls on it): full fine-tuning's text
    tower, the final norm and projection with a token memory, the frame positions of a mean memory."""
    from lit_i2v.strategies import FullFinetune

    torch.manual_seed(0)
    decoder = CaptionDecoder(layers=1, visual_layers=1, heads=2, memory=memory, max_length=12)
    model = VideoCaptioning(CLIP("ViT-T-8-test"), FullFinetune(), decoder).train()
    batch = model.example_batch()
    model.training_step(batch, 0).backward()
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert not any(n.startswith("backbone.text.") for n in trainable)
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)
