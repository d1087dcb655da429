"""Text-video retrieval: videos and captions embedded into CLIP's joint space, trained with symmetric InfoNCE.

CLIP4Clip (Luo et al., Neurocomputing 2022; official code github.com/ArrowLuo/CLIP4Clip): frames through the image
tower (with any strategy), projected, pooled over time by the temporal module (``MeanPool`` = meanP,
``TemporalTransformer(init_from_text: true)`` = seqTransf), L2-normalised; captions through the text tower.
With ``XPool`` (Gorti et al. 2022) the pooling is conditioned on the caption: every caption pools every video's
frames its own way, and the similarity of caption i and video j is the cosine of ``text_i`` and ``XPool(text_i,
frames_j)``. The loss is the symmetric cross-entropy over the batch's text x video similarities scaled by CLIP's
logit scale (clamped at 100), or with ``loss: sigmoid`` SigLIP's (Zhai et al. 2023): every text-video pair a binary
decision, ``-Σ log σ(z·(t·cos + b)) / N`` with z = +1 on the diagonal and -1 elsewhere, the backbone's learnt scale
and bias. Rankings, and so the evaluation, are the same either way (``t·cos + b`` is increasing in cos). Under DDP
the video and text embeddings of every rank are gathered *with* their gradients, so every rank's texts are
contrasted against every rank's videos (as the official code's ``AllGather``).

Evaluation embeds each video once (views averaged), gathers them from all ranks (each video exactly once), embeds
every caption of the split, and scores the full text x video similarity matrix in chunks: R@1/5/10, median and
mean rank in both directions (``lit_i2v.metrics.retrieval``), optionally after dual-softmax re-ranking. Where
videos have several captions, video→text follows ``v2t``: ``group`` (CLIP4Clip, X-Pool: the convention of the
CLIP-based papers on MSVD and MSR-VTT) or ``caption`` (collaborative experts); the log says which.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.distributed as dist
import torch.nn.functional as F
from lightning.pytorch.utilities import rank_zero_info
from torch import Tensor

from lit_i2v.backbones import CLIP, scaled_logits, sigmoid_pair_loss
from lit_i2v.errors import ConfigError
from lit_i2v.heads import MeanPool, Temporal
from lit_i2v.metrics import chunked_similarity, dual_softmax, retrieval_metrics
from lit_i2v.metrics.retrieval import V2T
from lit_i2v.strategies import TransferStrategy
from lit_i2v.tasks.args import Optimization, Runtime
from lit_i2v.tasks.base import VideoTask

V2T_CONVENTIONS = {
    "group": "each video's caption group by its best caption (CLIP4Clip, X-Pool)",
    "caption": "each video's best caption among all captions (collaborative experts)",
}


def gather_with_grad(x: Tensor) -> Tensor:
    """All ranks' ``x`` concatenated, gradients flowing back to each rank's own part (one process: ``x``)."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return x
    from torch.distributed.nn.functional import all_gather

    return torch.cat(all_gather(x), dim=0)


class TextVideoRetrieval(VideoTask):
    """Args:
    backbone, transfer, optim, runtime: as ``ActionRecognition``.
    temporal: pools projected frame embeddings over time (default ``MeanPool``: CLIP4Clip's meanP; ``XPool``:
        text-conditioned).
    dual_softmax: re-rank the evaluation similarities with a dual softmax (inference only).
    text_batch_size: captions encoded at a time in evaluation.
    v2t: video→text ranking where a video has several captions: ``group`` ranks each video's caption group,
        scored by its best caption, among all videos' groups (CLIP4Clip, X-Pool; what the CLIP-based papers report
        on MSVD and MSR-VTT); ``caption`` ranks the video's best caption among all captions (collaborative
        experts). Identical with one caption per video (MSR-VTT 1k-A, DiDeMo, ActivityNet paragraphs).
    loss: ``softmax`` (symmetric InfoNCE, CLIP's) or ``sigmoid`` (SigLIP's pairwise loss; needs a backbone with a
        learnt logit bias: the SigLIP family).
    """

    monitor = "val/t2v/R@1"  # the validation metric that chooses the best checkpoint

    def __init__(
        self,
        backbone: CLIP,
        transfer: TransferStrategy | None = None,
        temporal: Temporal | None = None,
        optim: Optimization | None = None,
        runtime: Runtime | None = None,
        dual_softmax: bool = False,
        text_batch_size: int = 256,
        v2t: V2T = "group",
        loss: Literal["softmax", "sigmoid"] = "softmax",
    ) -> None:
        if loss not in ("softmax", "sigmoid"):
            raise ConfigError(f"model.init_args.loss: {loss!r}; choose softmax (CLIP's) or sigmoid (SigLIP's)")
        if loss == "sigmoid" and backbone.logit_bias is None:
            raise ConfigError(f"model.init_args.loss: sigmoid needs a backbone with a learnt logit bias (the SigLIP "
                              f"family); {backbone.arch} was trained with softmax")  # fmt: skip
        super().__init__(backbone, transfer, optim=optim, runtime=runtime)
        self.save_hyperparameters(ignore=["backbone", "transfer", "temporal"])
        if loss == "softmax" and backbone.logit_bias is not None:
            backbone.logit_bias.requires_grad_(
                False
            )  # SigLIP's bias, which the softmax loss never reads (DDP rejects it)
        self.temporal = temporal or MeanPool()
        self.temporal.build(backbone.embed_dim, backbone)
        self.conditioned = getattr(self.temporal, "text_conditioned", False)
        self.dual_softmax, self.text_batch_size, self.v2t, self.loss = dual_softmax, text_batch_size, v2t, loss
        self._eval: dict[str, list[Tensor]] = {"index": [], "embedding": []}
        self._captions: list[tuple[int, str]] = []  # (video index, caption) of the videos evaluated here
        self._skipped = 0

    def example_batch(self, size: int = 2, training: bool = True, frames: int = 4, views: int = 2) -> dict:
        """Clips and, in training, one ``caption`` per video (a list of strings); in evaluation every caption of each
        video, ``captions`` (a list of lists)."""
        batch = super().example_batch(size, training, frames, views)
        words = ["a red circle", "a blue square", "moving left", "moving right"]
        if training:
            return batch | {"caption": [words[i % len(words)] for i in range(size)]}
        return batch | {
            "captions": [[words[i % len(words)], f"{words[(i + 1) % len(words)]} again"] for i in range(size)]
        }

    # ---- embeddings ----------------------------------------------------------------------------------------------

    def encode_videos(self, video: Tensor) -> Tensor:
        """Normalised clips ``(B, T, 3, H, W)`` → L2-normalised video embeddings ``(B, E)``; with a text-conditioned
        pooling, the frame embeddings ``(B, T, E)`` it pools per caption."""
        frames = self.transfer(self.backbone, video, project=True).float()  # (B, T, E)
        return frames if self.conditioned else F.normalize(self.temporal(frames).float(), dim=-1)

    def encode_texts(self, texts: list[str]) -> Tensor:
        """Captions → text embeddings ``(N, E)`` (not normalised: a text-conditioned pooling reads them as they are)."""
        tokens = self.backbone.tokenize(texts).to(self.device)
        return self.backbone.encode_text(tokens).float()

    def similarity(self, texts: Tensor, videos: Tensor) -> Tensor:
        """Cosine similarities ``(Nt, Nv)`` of text embeddings and ``encode_videos``' output."""
        t = F.normalize(texts, dim=-1)
        if not self.conditioned:
            return chunked_similarity(t, videos)
        rows, step = [], max(1, 2**26 // max(videos.numel(), 1))  # at most 2^26 pooled values at a time
        for start in range(0, len(t), step):
            pooled = F.normalize(self.temporal(texts[start : start + step], videos).float(), dim=-1)  # (n, Nv, E)
            rows.append(torch.einsum("ae,abe->ab", t[start : start + step], pooled))
        return torch.cat(rows)

    def forward(self, video: Tensor) -> Tensor:
        """Normalised clips → video embeddings (what ``summary`` counts per view)."""
        return self.encode_videos(video)

    def logit_scale(self) -> Tensor:
        """The scale the loss multiplies similarities by: clamped at 100 under the softmax loss, as CLIP's; as it is
        under the sigmoid loss (SigLIP's)."""
        scale = self.backbone.logit_scale.float()
        return scale.exp() if self.loss == "sigmoid" else scale.clamp(max=4.6052).exp()

    # ---- training ------------------------------------------------------------------------------------------------

    def training_step(self, batch: dict, batch_idx: int) -> Tensor:
        videos = gather_with_grad(self.encode_videos(self.normalize(batch["video"])))  # (N, E) over all ranks
        texts = gather_with_grad(self.encode_texts(list(batch["caption"])))
        backbone = self.backbone
        bias = backbone.logit_bias if self.loss == "sigmoid" else None
        logits = scaled_logits(self.similarity(texts, videos), backbone.logit_scale, bias)  # (N, N): text i, video i
        if self.loss == "sigmoid":
            loss = sigmoid_pair_loss(logits)
        else:
            target = torch.arange(logits.shape[0], device=logits.device)
            loss = (F.cross_entropy(logits, target) + F.cross_entropy(logits.t(), target)) / 2
        batch_size = batch["video"].shape[0]
        self.log("train/loss", loss, prog_bar=True, batch_size=batch_size)
        self.log("train/logit_scale", self.logit_scale(), batch_size=batch_size)
        if bias is not None:
            self.log("train/logit_bias", bias.detach().float(), batch_size=batch_size)
        self.log("train/skipped", batch["skipped"].sum().float(), reduce_fx="sum", batch_size=batch_size)
        return loss

    # ---- evaluation ----------------------------------------------------------------------------------------------

    def _eval_step(self, batch: dict) -> None:
        b, v = batch["video"].shape[:2]
        with torch.no_grad():
            views = self.encode_videos(self.normalize(batch["video"].flatten(0, 1))).unflatten(0, (b, v))
        embedding = views.mean(1)  # views averaged: frame embeddings (conditioned pooling) or video embeddings
        if not self.conditioned:
            embedding = F.normalize(embedding, dim=-1)
        valid = batch["valid"]
        self._eval["index"].append(batch["index"][valid])
        self._eval["embedding"].append(embedding[valid])
        # every caption of each decoded video (a video that failed to decode cannot be scored, nor its captions);
        # encoded at the epoch's end, all of them on every rank, so that sharded (FSDP) towers meet in step
        for i, ok, captions in zip(batch["index"].tolist(), valid.tolist(), batch["captions"], strict=True):
            if ok:
                self._captions += [(i, c) for c in captions]
        self._skipped += int((~valid).sum())

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        self._eval_step(batch)

    def test_step(self, batch: dict, batch_idx: int) -> None:
        self._eval_step(batch)

    def _distributed(self) -> bool:
        return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1

    def _gather_videos(self) -> tuple[Tensor, Tensor]:
        """Indices and embeddings of the evaluated videos from every rank, sorted by index. Ranks hold different
        numbers of videos (one may hold none): the shape is agreed on, rows are padded, gathered, then trimmed."""
        e = self._eval
        shape = tuple(e["embedding"][0].shape[1:]) if e["embedding"] else None  # (E,) or (T, E) with X-Pool
        if self._distributed():
            shapes = [None] * dist.get_world_size()
            dist.all_gather_object(shapes, shape)
            shape = next((s for s in shapes if s is not None), None)
        shape = shape or (self.backbone.embed_dim,)
        index = torch.cat(e["index"]) if e["index"] else torch.zeros(0, dtype=torch.long)
        emb = torch.cat(e["embedding"]) if e["embedding"] else torch.zeros(0, *shape)
        index, emb = index.to(self.device), emb.flatten(1).to(self.device)  # (N, E) or (N, T * E)
        if self._distributed():
            counts = self.all_gather(torch.tensor(len(index), device=self.device)).view(-1)
            most, width = int(counts.max()), emb.shape[1]
            if most:
                pad = most - len(index)
                index_all = self.all_gather(F.pad(index, (0, pad), value=-1)).view(-1, most)
                emb_all = self.all_gather(F.pad(emb, (0, 0, 0, pad))).view(-1, most, width)
                index = torch.cat([index_all[r, : int(c)] for r, c in enumerate(counts)])
                emb = torch.cat([emb_all[r, : int(c)] for r, c in enumerate(counts)])
        order = index.argsort()
        return index[order], emb[order].unflatten(1, shape)

    def _gather_captions(self) -> list[tuple[int, str]]:
        """(video index, caption) of every rank's decoded videos, in the order of the split."""
        captions = self._captions
        if self._distributed():
            parts = [None] * dist.get_world_size()
            dist.all_gather_object(parts, captions)
            captions = [c for part in parts for c in part]
        return sorted(captions, key=lambda c: c[0])  # stable: a video's captions keep their order

    def _eval_epoch_end(self, stage: str) -> None:
        index, videos = self._gather_videos()
        captions = self._gather_captions()
        texts = [c for _, c in captions]
        with torch.no_grad():  # every rank encodes every caption, in the same chunks
            step = self.text_batch_size
            chunks = [self.encode_texts(texts[i : i + step]) for i in range(0, len(texts), step)]
            text_emb = torch.cat(chunks) if chunks else torch.zeros(0, self.backbone.embed_dim, device=self.device)
        position = {int(i): row for row, i in enumerate(index.tolist())}
        owner = torch.tensor([position[i] for i, _ in captions], dtype=torch.long, device=self.device)  # its row
        with torch.no_grad():
            sim = self.similarity(text_emb, videos)
        if self.dual_softmax:
            sim = dual_softmax(sim)
        metrics = retrieval_metrics(sim, owner.to(sim.device), v2t=self.v2t)
        if len(owner) > len(index) and not self.trainer.sanity_checking:
            how = V2T_CONVENTIONS[self.v2t]
            rank_zero_info(f"{stage}: {len(owner)} captions of {len(index)} videos; video->text ranks {how} "
                           "(model.init_args.v2t); median ranks as NumPy's median")  # fmt: skip
        for name, value in metrics.items():
            self.log(f"{stage}/{name}", value, sync_dist=False, rank_zero_only=True)
        self.log(f"{stage}/videos", float(len(index)), rank_zero_only=True)
        self.log(f"{stage}/captions", float(len(owner)), rank_zero_only=True)
        skipped = self.all_gather(torch.tensor(self._skipped, device=self.device)).sum()
        self.log(f"{stage}/skipped", skipped.float(), rank_zero_only=True)
        self._eval = {"index": [], "embedding": []}
        self._captions = []
        self._skipped = 0

    def on_validation_epoch_end(self) -> None:
        self._eval_epoch_end("val")

    def on_test_epoch_end(self) -> None:
        self._eval_epoch_end("test")
