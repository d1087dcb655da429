"""Video captioning: any strategy's frame features (or patch tokens) → a caption decoder → words.

Two decoders with one surface: CLIP4Caption's layout (Tang et al., ACM MM 2021; ``lit_i2v.heads.CaptionDecoder``,
over CLIP's BPE) and ClipCap's prefix onto a causal LM from transformers (Mokady et al., 2021;
``lit_i2v.heads.PrefixLM``, GPT-2 and its tokenizer). Training by teacher forcing with
label smoothing on one reference a video, drawn anew each epoch (the DataModule's ``Captions``); evaluation by greedy
or beam search (GNMT's length penalty ``((5 + n) / 6) ** length_penalty``), scored by the COCO caption code
(``lit_i2v.metrics.caption_metrics``: BLEU-4, METEOR, ROUGE-L, CIDEr-D, logged x100 as papers print them). Under DDP
each rank captions its share of the videos; the captions are gathered, each video counted once, and every rank
scores the same set. The captions are written, as ``{video_id, caption}`` JSON, beside the logs, and a few videos'
frames with their captions and references go to a logger that takes tables (W&B). Evaluation reads the first view
of each video. ``self_critical`` turns teacher forcing into self-critical sequence training with a CIDEr-D reward
after a given epoch (``SelfCritical``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor

from lit_i2v.backbones import CLIP
from lit_i2v.errors import ConfigError
from lit_i2v.heads.caption_decoder import CaptionDecoder, CaptionHead
from lit_i2v.metrics.captions import CiderD, caption_metrics, simple_tokenize
from lit_i2v.strategies import Frozen, TransferStrategy
from lit_i2v.tasks.args import Optimization, Runtime
from lit_i2v.tasks.base import VideoTask

IGNORE = -100


@dataclass
class SelfCritical:
    """Self-critical sequence training (Rennie et al., *Self-critical Sequence Training for Image Captioning*, CVPR
    2017), as its reference code (ruotianluo/self-critical.pytorch) runs it: after ``after_epoch`` epochs of teacher
    forcing, each video's captioner samples ``samples`` captions (multinomial, temperature 1, up to the decoder's
    ``max_length``), each scored by CIDEr-D against all the video's references, and the loss is
    ``-(reward - baseline) * log p`` of every sampled token (the end marker included), averaged over the tokens.

    lit_i2v's choices, where it differs from that code:

    - rewards are computed on lower-cased words without punctuation (``simple_tokenize``), and without an
      end-of-sentence token in the n-grams (the reference code counts one, so it rewards ending where the references
      end; here only CIDEr-D's length penalty weighs a caption that never ends);
    - the memory (visual encoder, and the strategy's tower where it trains) runs once, in training mode, and serves
      the samples, the greedy baseline and the gradient pass; the decoding steps that draw the samples and the greedy
      caption run without the decoder's dropout, and the samples' log-probabilities come from one teacher-forced pass
      over them with it (the reference code keeps the sampling pass's graph, and decodes the greedy baseline with the
      whole model in evaluation mode).

    Args:
        after_epoch: epochs of teacher forcing first (the reference code's ``self_critical_after``); 0: from the
            start.
        samples: captions sampled a video.
        baseline: ``greedy``: the video's greedy caption's reward (Rennie et al.); ``mean``: the mean reward of the
            video's other samples (Luo, *A Better Variant of Self-Critical Sequence Training*, 2020; no greedy pass).
        document_frequency: where CIDEr-D's IDF comes from: ``train``, every training video's references, read once
            (the reference code's cached training n-grams); ``batch``, the batch's references.
    """

    after_epoch: int = 0
    samples: int = 5
    baseline: str = "greedy"
    document_frequency: str = "train"

    def __post_init__(self) -> None:
        checks = [
            ("after_epoch", self.after_epoch >= 0, "at least 0"),
            ("samples", self.samples >= (2 if self.baseline == "mean" else 1),
             "at least 2 with baseline mean" if self.baseline == "mean" else "at least 1"),
            ("baseline", self.baseline in ("greedy", "mean"), "greedy or mean"),
            ("document_frequency", self.document_frequency in ("train", "batch"), "train or batch"),
        ]  # fmt: skip
        for key, ok, expected in checks:
            if not ok:
                raise ConfigError(
                    f"model.init_args.self_critical.{key}: must be {expected}, got {getattr(self, key)!r}"
                )


class VideoCaptioning(VideoTask):
    """Args:
    backbone, transfer, optim, runtime: as every task; the default strategy is ``Frozen`` (CLIP4Caption's frozen
        features).
    decoder: the caption decoder: ``CaptionDecoder`` (layers, memory, maximum length) or ``PrefixLM`` (ClipCap:
        the LM, its mapping network, whether the LM trains).
    project: the decoder reads CLIP's projected frame embeddings (CLIP4Caption) rather than the tower's features.
    label_smoothing: of the training cross-entropy.
    beam_size: 1 for greedy decoding.
    length_penalty: GNMT's exponent in beam search (0: none).
    self_critical: self-critical training with a CIDEr-D reward after some epochs of teacher forcing
        (``SelfCritical``); None: teacher forcing throughout.
    """

    monitor = "val/cider"

    def __init__(
        self,
        backbone: CLIP,
        transfer: TransferStrategy | None = None,
        decoder: CaptionHead | None = None,
        project: bool = True,
        label_smoothing: float = 0.1,
        beam_size: int = 1,
        length_penalty: float = 1.0,
        self_critical: SelfCritical | None = None,
        optim: Optimization | None = None,
        runtime: Runtime | None = None,
    ) -> None:
        super().__init__(backbone, transfer or Frozen(), optim=optim, runtime=runtime)
        self.save_hyperparameters(ignore=["backbone", "transfer", "decoder"])
        self.decoder = decoder or CaptionDecoder()
        self.project = project and not self.decoder.needs_tokens
        # parameters no loss reads never train (DDP would stall on them): the text tower, CLIP's scale and bias, and
        # with a token memory the tower's final norm and projection
        unread = ("text.", "logit_scale", "logit_bias") + (("visual.norm.", "visual.head.", "visual.attn_pool.")
                                                           if self.decoder.needs_tokens else ())  # fmt: skip
        for name, param in backbone.named_parameters():
            if name.startswith(unread):
                param.requires_grad_(False)
        width = backbone.embed_dim if self.project else backbone.visual.width
        self.decoder.build(width, backbone)
        self.label_smoothing, self.beam_size, self.length_penalty = label_smoothing, beam_size, length_penalty
        self.self_critical = self_critical
        self._cider: CiderD | None = None  # CIDEr-D over the training references, built at the first self-critical step
        self._collected: dict[str, CaptionCollector] = {}

    @classmethod
    def tiny(cls) -> VideoCaptioning:
        return cls(CLIP("ViT-T-8-test"), decoder=CaptionDecoder(layers=1, visual_layers=1, heads=2, max_length=12))

    def example_batch(self, size: int = 2, training: bool = True, frames: int = 4, views: int = 2) -> dict:
        """Clips, every reference of each video (``captions``) and, in training, the one to learn (``caption``)."""
        batch = super().example_batch(size, training, frames, views)
        words = ["a red circle moves left", "a blue square moves up", "a green diamond falls"]
        if training:  # one caption to learn, and every reference (self-critical training's reward reads them)
            captions = [words[i % len(words)] for i in range(size)]
            return batch | {"caption": captions, "captions": [[c] for c in captions]}
        return batch | {"captions": [[words[i % len(words)], words[(i + 1) % len(words)]] for i in range(size)]}

    # ---- features and tokens ------------------------------------------------------------------------------------

    def memory(self, video: Tensor) -> Tensor:
        """Normalised clips ``(B, T, 3, H, W)`` → what the decoder attends to ``(B, S, W)``."""
        tokens = self.decoder.needs_tokens
        features = self.transfer.encode(self.backbone, video, project=self.project, tokens=tokens)
        return self.decoder.encode((features.tokens if tokens else features.frames).float())

    def tokenize(self, captions: list[str]) -> tuple[Tensor, Tensor]:
        """Captions → ``(B, L)`` token ids (start, words, end; cut to ``max_length``) and the padding mask."""
        dec, limit = self.decoder, self.decoder.max_length
        rows = [[dec.start_id, *dec.encode_text(c)[: limit - 2], dec.end_id] for c in captions]
        width = max(len(r) for r in rows)
        ids = torch.zeros(len(rows), width, dtype=torch.long)
        padding = torch.ones(len(rows), width, dtype=torch.bool)
        for i, row in enumerate(rows):
            ids[i, : len(row)], padding[i, : len(row)] = torch.tensor(row), False
        return ids.to(self.device), padding.to(self.device)

    def forward(self, video: Tensor) -> Tensor:
        """Normalised clips → the first word's logits after the start marker (what ``summary`` counts per view: the
        tower, the visual encoder and one decoding step; a caption of n words takes n steps)."""
        start = torch.full((video.shape[0], 1), self.decoder.start_id, device=video.device)
        return self.decoder(self.memory(video), start, last=True)

    # ---- training -----------------------------------------------------------------------------------------------

    def training_step(self, batch: dict, batch_idx: int) -> Tensor:
        sc = self.self_critical
        if sc is not None and self.current_epoch >= sc.after_epoch:
            return self.self_critical_step(batch)
        memory = self.memory(self.normalize(batch["video"]))
        ids, padding = self.tokenize(batch["caption"])
        logits = self.decoder(memory, ids[:, :-1], padding[:, :-1])  # (B, L-1, vocab)
        target = ids[:, 1:].masked_fill(padding[:, 1:], IGNORE)
        loss = F.cross_entropy(logits.flatten(0, 1).float(), target.flatten(), ignore_index=IGNORE,
                               label_smoothing=self.label_smoothing)  # fmt: skip
        self.log("train/loss", loss, prog_bar=True, batch_size=len(batch["caption"]))
        return loss

    def self_critical_step(self, batch: dict) -> Tensor:
        """``SelfCritical``'s loss on a batch (its ``captions``: every reference of each video)."""
        sc, dec = self.self_critical, self.decoder
        if "captions" not in batch:
            raise ConfigError(
                "model.init_args.self_critical: the reward reads every reference of each training video "
                "(the batch's captions, which lit_i2v.data.Captions gives); this batch has none"
            )
        memory = self.memory(self.normalize(batch["video"]))
        references = [[simple_tokenize(c) for c in captions] for captions in batch["captions"]]
        cider = self._cider if sc.document_frequency == "train" else CiderD(references)
        if cider is None:
            datamodule = self.trainer.datamodule
            if not hasattr(datamodule, "references"):
                raise ConfigError(
                    "model.init_args.self_critical.document_frequency: train reads the training captions from a "
                    f"VideoDataModule with Captions, not {type(datamodule).__name__}; use batch"
                )
            corpus = datamodule.references("train")
            cider = self._cider = CiderD([[simple_tokenize(c) for c in captions] for captions in corpus])
        k = sc.samples
        training = dec.training
        dec.eval()  # the decoding steps without dropout (the memory keeps the training pass's; see SelfCritical)
        try:
            with torch.no_grad():
                sampled = self.sample(memory.detach().repeat_interleave(k, 0))  # (B*k, L), start marker first
                baseline = self.greedy(memory.detach()) if sc.baseline == "greedy" else None
        finally:
            dec.train(training)

        def rewards_of(rows: list[list[int]], per_video: int) -> Tensor:  # (videos, per_video)
            texts = [simple_tokenize(dec.decode_text(row)) for row in rows]
            return torch.tensor([cider.scores(texts[v * per_video : (v + 1) * per_video], refs)
                                 for v, refs in enumerate(references)])  # fmt: skip

        rewards = rewards_of([self._words(row) for row in sampled.tolist()], k)
        if baseline is not None:
            base = rewards_of(baseline, 1)
        else:  # the mean of the other samples
            base = (rewards.sum(1, keepdim=True) - rewards) / (k - 1)
        advantage = (rewards - base).flatten().to(memory.device)
        # the sampled tokens' log-probabilities, with gradients: one teacher-forced pass over the samples
        ended = sampled[:, 1:] == dec.end_id
        after_end = (ended.cumsum(1) - ended.long()) > 0  # past each row's first end marker
        padding = torch.cat([torch.zeros_like(after_end[:, :1]), after_end], 1)
        logits = dec(memory.repeat_interleave(k, 0), sampled[:, :-1], padding[:, :-1])
        logp = logits.float().log_softmax(-1).gather(-1, sampled[:, 1:, None])[..., 0]  # (B*k, L-1)
        mask = (~padding[:, 1:]).float()
        loss = -(advantage[:, None] * logp * mask).sum() / mask.sum()
        size = len(references)
        self.log("train/loss", loss, prog_bar=True, batch_size=size)
        self.log("train/reward", rewards.mean().item(), batch_size=size)
        if baseline is not None:
            self.log("train/reward_greedy", base.mean().item(), batch_size=size)
        return loss

    # ---- decoding -----------------------------------------------------------------------------------------------

    @torch.no_grad()
    def sample(self, memory: Tensor) -> Tensor:
        """A caption sampled for each memory row (multinomial over the next-token distribution, banned ids never
        drawn): ``(N, L)`` token ids, start marker first, each row ending at its first end marker and padded with end
        markers after it; rows reach ``max_length`` tokens when no end is drawn."""
        dec = self.decoder
        seq = torch.full((memory.shape[0], 1), dec.start_id, device=memory.device)
        done = torch.zeros(memory.shape[0], dtype=torch.bool, device=memory.device)
        for _ in range(dec.max_length - 1):
            logits = dec(memory, seq, last=True).float()
            logits[:, list(dec.banned)] = float("-inf")
            step = torch.multinomial(logits.softmax(-1), 1)[:, 0].masked_fill(done, dec.end_id)
            seq = torch.cat([seq, step[:, None]], 1)
            done |= step == dec.end_id
            if done.all():
                break
        return seq

    @torch.no_grad()
    def caption(self, video: Tensor) -> list[str]:
        """Normalised clips ``(B, T, 3, H, W)`` → one caption each (greedy, or beam search with ``beam_size``)."""
        memory = self.memory(video)
        ids = self.greedy(memory) if self.beam_size == 1 else self.beam_search(memory)
        return [self.decoder.decode_text(row) for row in ids]

    def greedy(self, memory: Tensor) -> list[list[int]]:
        dec = self.decoder
        seq = torch.full((memory.shape[0], 1), dec.start_id, device=memory.device)
        done = torch.zeros(memory.shape[0], dtype=torch.bool, device=memory.device)
        for _ in range(self.decoder.max_length - 1):
            logits = dec(memory, seq, last=True)  # (B, vocab)
            logits[:, list(dec.banned)] = float("-inf")
            step = logits.argmax(-1)  # (B,)
            step = step.masked_fill(done, dec.end_id)
            seq = torch.cat([seq, step[:, None]], 1)
            done |= step == dec.end_id
            if done.all():
                break
        return [self._words(row) for row in seq.tolist()]

    def beam_search(self, memory: Tensor) -> list[list[int]]:
        """Beam search per video: ``beam_size`` hypotheses extended by their best next tokens; a hypothesis that ends
        leaves the beam with its score ``log p / ((5 + n) / 6) ** length_penalty`` (n: its words). The search stops
        once ``beam_size`` hypotheses have ended (transformers' ``early_stopping=True``) and the best ended one wins;
        at ``max_length`` with none ended, the best unfinished one."""
        dec, k = self.decoder, self.beam_size
        results = []
        for b in range(memory.shape[0]):
            mem = memory[b : b + 1]
            beams = [([dec.start_id], 0.0)]
            finished: list[tuple[list[int], float]] = []
            for _ in range(self.decoder.max_length - 1):
                seqs = torch.tensor([s for s, _ in beams], device=memory.device)
                logits = dec(mem.expand(len(beams), -1, -1), seqs, last=True)
                logits[:, list(dec.banned)] = float("-inf")
                logp = logits.log_softmax(-1)
                total = torch.tensor([score for _, score in beams], device=memory.device)[:, None] + logp
                top, index = total.flatten().topk(2 * k)
                candidates = []
                for score, flat in zip(top.tolist(), index.tolist(), strict=True):
                    row, token = divmod(flat, logp.shape[1])
                    seq = beams[row][0] + [token]
                    if token == dec.end_id:
                        finished.append((seq, score / self._penalty(len(seq) - 2)))
                    else:
                        candidates.append((seq, score))
                    if len(candidates) == k:
                        break
                beams = candidates
                if len(finished) >= k or not beams:
                    break
            if not finished:
                finished = [(s, score / self._penalty(len(s) - 1)) for s, score in beams]
            results.append(self._words(max(finished, key=lambda f: f[1])[0]))
        return results

    def _penalty(self, words: int) -> float:
        return ((5 + max(words, 1)) / 6) ** self.length_penalty

    def _words(self, row: list[int]) -> list[int]:
        end = self.decoder.end_id
        row = row[1:]  # the start marker
        return row[: row.index(end)] if end in row else row

    # ---- evaluation ---------------------------------------------------------------------------------------------

    def _evaluate(self, batch: dict, stage: str) -> None:
        captions = self.caption(self.normalize(batch["video"][:, 0]))  # the first view
        self._collected.setdefault(stage, CaptionCollector()).add(self, batch, captions, stage)

    def _score(self, stage: str) -> None:
        self._collected.pop(stage, CaptionCollector()).score(self, stage)

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        self._evaluate(batch, "val")

    def test_step(self, batch: dict, batch_idx: int) -> None:
        self._evaluate(batch, "test")

    def on_validation_epoch_start(self) -> None:
        self._collected.pop("val", None)  # nothing from an interrupted pass

    def on_validation_epoch_end(self) -> None:
        self._score("val")

    def on_test_epoch_end(self) -> None:
        self._score("test")


SAMPLES = 8  # videos a logger that takes tables shows, each with a strip of its frames


def frame_strip(clip: Tensor, frames: int = 4) -> np.ndarray:
    """A clip ``(T, 3, H, W)`` in [0, 255] → ``frames`` evenly spaced frames side by side, ``(H, frames * W, 3)``
    uint8: what a table row shows of its video."""
    index = torch.linspace(0, clip.shape[0] - 1, min(frames, clip.shape[0])).round().long().to(clip.device)
    picked = clip.index_select(0, index).float().clamp(0, 255).round().to(torch.uint8)  # (F, 3, H, W)
    return picked.permute(2, 0, 3, 1).flatten(1, 2).cpu().numpy()  # (H, F * W, 3)


class CaptionCollector:
    """One evaluation pass's captions, by video id: each valid video's caption and references, and the frames of
    the first ``SAMPLES`` this rank saw; ``score`` then gathers, scores, writes and logs them."""

    def __init__(self) -> None:
        self.found: dict[str, str] = {}
        self.refs: dict[str, list[str]] = {}
        self.frames: dict[str, np.ndarray] = {}

    def add(self, module, batch: dict, captions: list[str], stage: str) -> None:
        """Keep each valid video's caption and references; log the skipped ones."""
        for i, (vid, text, references, ok) in enumerate(zip(batch["video_id"], captions, batch["captions"],
                                                             batch["valid"].tolist(), strict=True)):  # fmt: skip
            if ok:
                self.found[str(vid)], self.refs[str(vid)] = text, list(references)
                if module.global_rank == 0 and len(self.frames) < SAMPLES:  # only rank 0 shows them
                    self.frames[str(vid)] = frame_strip(batch["video"][i, 0])  # the first view, as captioned
        module.log(f"{stage}/skipped", float((~batch["valid"]).sum()), reduce_fx="sum", batch_size=len(captions))

    def score(self, module, stage: str) -> None:
        """Gather the ranks' captions (each video once, merged by id); score them with the COCO caption code on
        rank 0 alone (its Java processes once, not per rank) and share the scores; log them (x100) on every rank; on
        rank 0, write them with the captions beside the logs, and show a few videos' frames, captions and references
        to a logger that takes tables (W&B). Lightning's sanity check is not scored."""
        trainer = module.trainer
        if getattr(trainer, "sanity_checking", False):
            return
        found, refs = self.found, self.refs
        distributed = dist.is_available() and dist.is_initialized()
        if distributed:
            gathered: list = [None] * dist.get_world_size()
            dist.all_gather_object(gathered, (found, refs))
            found, refs = {}, {}
            for f, r in gathered:
                found.update(f)
                refs.update(r)
        if not found:
            return
        scores = [caption_metrics(refs, found) if trainer.is_global_zero else None]
        if distributed:
            dist.broadcast_object_list(scores, src=0)
        scores = scores[0]
        module.log(f"{stage}/videos", float(scores["videos"]), rank_zero_only=True)
        for name in ("bleu4", "meteor", "rouge_l", "cider"):
            if name in scores:
                module.log(f"{stage}/{name}", 100 * scores[name], rank_zero_only=True)
        if trainer.is_global_zero:
            from lit_i2v.reports import log_dir  # the run's folder without trainer.log_dir's broadcast (rank 0 here)

            folder = log_dir(trainer)
            folder.mkdir(parents=True, exist_ok=True)
            out = [{"video_id": vid, "caption": text} for vid, text in sorted(found.items())]
            path = folder / f"captions_{stage}_epoch{module.current_epoch}.json"
            path.write_text(json.dumps({"captions": out, "metrics": scores}, indent=1))
            self._show(module.logger, stage, found, refs)

    def _show(self, logger, stage: str, found: dict[str, str], refs: dict[str, list[str]]) -> None:
        if hasattr(logger, "log_table") and self.frames:  # W&B: frames, caption, references
            import wandb

            rows = [[vid, wandb.Image(strip), found[vid], " | ".join(refs[vid][:3])] for vid, strip in
                    self.frames.items()]  # fmt: skip
            logger.log_table(key=f"{stage}/captions", columns=["video", "frames", "caption", "references"], data=rows)
        elif hasattr(logger, "log_text"):
            rows = [[vid, text, " | ".join(refs[vid][:3])] for vid, text in sorted(found.items())[:SAMPLES]]
            logger.log_text(key=f"{stage}/captions", columns=["video", "caption", "references"], data=rows)
