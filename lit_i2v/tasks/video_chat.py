"""Generative video question answering with a multimodal LLM: the answer is written, not chosen.

The clip passes through the vision tower (adapted by the strategy), the frame-token aggregator and the checkpoint's
projector, and enters the LLM as embeddings at the prompt's placeholder (no image processor in the data path:
decoding and normalisation stay lit_i2v's). Training: the prompt and the reference answer, the language-model loss
on the answer's tokens only (and the end-of-sequence token). Evaluation (``answer_by``): greedy or beam generation
from the prompt (``generate``), or the most likely answer under the model (the summed log-probability of its tokens
and end of sequence) among a closed vocabulary (``vocabulary``: the MSVD-QA/MSRVTT-QA answer lists) or among each
question's options (``choice``: MSRVTT-MC, NExT-QA); scored by normalised exact match against the reference and
contains-match (``lit_i2v.metrics.answers``), overall and per question type. For ``choice`` exact match is accuracy
(the chosen option is the right one).
Evaluation reads the first view of each video (the video LLMs' protocol: one clip of uniformly sampled frames).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torchmetrics import SumMetric

from lit_i2v.heads.frame_tokens import FrameTokens, TokenAggregator
from lit_i2v.metrics.answers import contains_match, exact_match
from lit_i2v.strategies import TransferStrategy
from lit_i2v.strategies.mllm import MultimodalLLM
from lit_i2v.tasks.args import Optimization, Runtime
from lit_i2v.tasks.base import VideoTask

IGNORE = -100  # label of the positions the loss skips (PyTorch's cross-entropy default)
LLAVA_15 = "USER: {video}\n{question} ASSISTANT:"  # LLaVA-1.5's conversation turns (conv_vicuna_v1), no system prompt
CHUNK = 16  # answers scored at once when ranking by likelihood


class GenerativeVideoQA(VideoTask):
    """Args:
    backbone: a multimodal LLM (``lit_i2v.backbones.LLaVA``).
    transfer: what trains (``lit_i2v.strategies.MultimodalLLM``: vision strategy, projector, LoRA on the LLM);
        default: nothing (training-free).
    frame_tokens: how the clip's frame tokens become the prompt's visual tokens (default: all of them).
    template: the prompt, with ``{video}`` where the visual tokens go and ``{question}``; default LLaVA-1.5's
        ``USER: {video}\\n{question} ASSISTANT:``.
    answer_by: ``generate``, ``vocabulary`` (rank ``answers`` by likelihood) or ``choice`` (rank each question's
        ``candidates``).
    answers: the closed vocabulary for ``vocabulary``.
    max_new_tokens: generation length in evaluation.
    num_beams: 1 for greedy decoding.
    question_types: types to report separately (``val/exact_<type>``).
    optim, runtime: as every task.
    """

    monitor = "val/exact"

    def __init__(
        self,
        backbone: nn.Module,
        transfer: TransferStrategy | None = None,
        frame_tokens: TokenAggregator | None = None,
        template: str = LLAVA_15,
        answer_by: str = "generate",
        answers: list[str] | None = None,
        max_new_tokens: int = 16,
        num_beams: int = 1,
        question_types: list[str] | None = None,
        optim: Optimization | None = None,
        runtime: Runtime | None = None,
    ) -> None:
        super().__init__(backbone, transfer or MultimodalLLM(), optim=optim, runtime=runtime)
        self.save_hyperparameters(ignore=["backbone", "transfer", "frame_tokens"])
        if "{video}" not in template or "{question}" not in template:
            raise ValueError(f"model.init_args.template {template!r}: it needs {{video}} and {{question}}")
        if answer_by not in ("generate", "vocabulary", "choice"):
            raise ValueError(f"model.init_args.answer_by {answer_by!r}: generate, vocabulary or choice")
        if answer_by == "vocabulary" and not answers:
            raise ValueError("model.init_args.answers: answer_by 'vocabulary' ranks a closed list of answers; give it")
        self.answer_by, self.answers = answer_by, list(answers or [])
        self.frame_tokens = frame_tokens or FrameTokens()
        if self.frame_tokens.appends_newline and getattr(backbone, "image_newline", None) is None:
            raise ValueError(
                f"model.init_args.frame_tokens: {type(self.frame_tokens).__name__} appends the model's learned "
                "newline, which this backbone has not (LLaVA-OneVision's has)"
            )
        self.template, self.max_new_tokens, self.num_beams = template, max_new_tokens, num_beams
        self.question_types = list(question_types or [])
        groups = ["all", *self.question_types]
        metrics = {f"{kind}_{g}": SumMetric() for g in groups for kind in ("exact", "contains", "asked")}
        self.val_metrics = nn.ModuleDict({k: v.clone() for k, v in metrics.items()})
        self.test_metrics = nn.ModuleDict({k: v.clone() for k, v in metrics.items()})

    @classmethod
    def tiny(cls) -> GenerativeVideoQA:
        """On a tiny LLaVA that transformers writes into lit_i2v's cache on first use (about a second)."""
        from lit_i2v.backbones.llava import LLaVA
        from lit_i2v.backbones.llava_tiny import write_tiny_llava
        from lit_i2v.backbones.weights import cache_dir

        folder = write_tiny_llava(cache_dir() / "llava-tiny-test")
        return cls(LLaVA(str(folder)), MultimodalLLM(projector=True), template="user : {video} {question} assistant :",
                   max_new_tokens=4, question_types=["motion"])  # fmt: skip

    def example_batch(self, size: int = 2, training: bool = True, frames: int = 4, views: int = 2) -> dict:
        """Clips, ``question``, ``qtype`` and ``answer`` (the reference answer's text)."""
        answers = ["up", "left to right", "down", "red"]
        return super().example_batch(size, training, frames, views) | {
            "question": ["what is the red circle doing ?"] * size,
            "qtype": ["motion"] * size,
            "answer": [answers[i % len(answers)] for i in range(size)],
            "label": torch.zeros(size, dtype=torch.long),
        }

    # ---- visual tokens ------------------------------------------------------------------------------------------

    def visual_tokens(self, video: Tensor) -> Tensor:
        """Normalised clips ``(B, T, 3, H, W)`` → the LLM's visual input embeddings ``(B, M, E)``."""
        video = self.frame_tokens.arrange(video)
        tokens = self.transfer.encode(self.backbone, video, tokens=True).tokens  # (B, T, N, D)
        tokens = self.backbone.visual_features(tokens)
        if self.frame_tokens.after_projector:
            visual = self.frame_tokens(self.backbone.project(tokens))
        else:
            visual = self.backbone.project(self.frame_tokens(tokens))
        if self.frame_tokens.appends_newline:  # LLaVA-OneVision: one learned newline after the video's tokens
            newline = self.backbone.image_newline.to(visual.dtype)
            visual = torch.cat([visual, newline.expand(visual.shape[0], 1, -1)], 1)  # (B, M + 1, E)
        return visual

    def forward(self, video: Tensor) -> Tensor:
        """Normalised clips → the LLM's next-token logits after the visual tokens alone (what ``summary`` counts per
        clip: the tower, the aggregator, the projector and the LLM's prefill of M visual tokens, ``lm_head`` at the
        last; a question adds its own)."""
        return self.backbone.lm_head(self.backbone.hidden(self.visual_tokens(video))[:, -1])

    # ---- prompts ------------------------------------------------------------------------------------------------

    def encode_prompts(
        self, questions: list[str], visual: int, answers: list[str] | None = None, left: bool = False
    ) -> tuple[Tensor, Tensor, Tensor]:
        """Token ids ``(B, L)`` of ``template`` with ``visual`` placeholders at ``{video}``, the attention mask and
        the labels (the answer's tokens and end of sequence; ``IGNORE`` elsewhere), padded right (training) or
        ``left`` (generation)."""
        tok = self.backbone.tokenizer
        before, _, after = self.template.partition("{video}")
        pad = self.pad_id
        rows, labels = [], []
        for i, question in enumerate(questions):
            head = tok(before.format(question=question), add_special_tokens=True)["input_ids"]
            tail_text = after.format(question=question)
            tail = tok(tail_text, add_special_tokens=False)["input_ids"]
            ids = head + [self.backbone.image_token_id] * visual + tail
            label = [IGNORE] * len(ids)
            if answers is not None:
                answer = self.answer_ids(tail_text, tail, answers[i]) + [tok.eos_token_id]
                ids, label = ids + answer, label + answer
            rows.append(ids)
            labels.append(label)
        width = max(len(r) for r in rows)
        out = torch.full((len(rows), width), pad, dtype=torch.long)
        mask = torch.zeros(len(rows), width, dtype=torch.long)
        target = torch.full((len(rows), width), IGNORE, dtype=torch.long)
        for i, (ids, label) in enumerate(zip(rows, labels, strict=True)):
            span = slice(width - len(ids), width) if left else slice(0, len(ids))
            out[i, span], mask[i, span], target[i, span] = torch.tensor(ids), 1, torch.tensor(label)
        return out.to(self.device), mask.to(self.device), target.to(self.device)

    @property
    def pad_id(self) -> int:
        tok = self.backbone.tokenizer
        return tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id

    def answer_ids(self, tail_text: str, tail: list[int], answer: str) -> list[int]:
        """The answer's tokens as they follow the prompt: the prompt's end and the answer are tokenised together
        (a space between them unless the prompt ends in whitespace: ``ASSISTANT: yes``, Qwen's ``assistant\nyes``),
        and the answer is what comes after the prompt's own tokens. So a byte-level BPE (Qwen2) gets ``yes``, not
        the ``Ġyes`` a lone " yes" would give; if the join merges across the boundary, the answer alone is used."""
        tok = self.backbone.tokenizer
        sep = "" if not tail_text or tail_text[-1].isspace() else " "
        joined = tok(tail_text + sep + answer.strip(), add_special_tokens=False)["input_ids"]
        if joined[: len(tail)] == tail:
            return joined[len(tail) :]
        return tok(sep + answer.strip(), add_special_tokens=False)["input_ids"]

    def answer_log_probs(self, embeds: Tensor, mask: Tensor, labels: Tensor) -> tuple[Tensor, Tensor]:
        """Log-probabilities of the labelled tokens ``(n,)`` and the row each belongs to ``(n,)``: ``lm_head`` and
        the softmax only where a label is (position t predicts token t+1), not over the vocabulary everywhere."""
        hidden = self.backbone.hidden(embeds, mask)[:, :-1]  # (B, L-1, H)
        target = labels[:, 1:]
        rows, cols = (target != IGNORE).nonzero(as_tuple=True)
        logp = self.backbone.lm_head(hidden[rows, cols]).float().log_softmax(-1)  # (n, vocab)
        return logp.gather(-1, target[rows, cols, None])[:, 0], rows

    # ---- training -----------------------------------------------------------------------------------------------

    def training_step(self, batch: dict, batch_idx: int) -> Tensor:
        visual = self.visual_tokens(self.normalize(batch["video"]))  # (B, M, E)
        ids, mask, labels = self.encode_prompts(batch["question"], visual.shape[1], batch["answer"])
        logp, _ = self.answer_log_probs(self.backbone.splice(ids, visual), mask, labels)
        loss = -logp.mean()  # cross-entropy over the answers' tokens
        self.log("train/loss", loss, prog_bar=True, batch_size=len(batch["question"]))
        return loss

    # ---- evaluation ---------------------------------------------------------------------------------------------

    @torch.no_grad()
    def generate(self, video: Tensor, questions: list[str]) -> list[str]:
        """Normalised clips ``(B, T, 3, H, W)`` and questions → the model's answers (special tokens removed)."""
        visual = self.visual_tokens(video)
        ids, mask, _ = self.encode_prompts(questions, visual.shape[1], left=True)
        tok = self.backbone.tokenizer
        out = self.backbone.mllm.generate(
            inputs_embeds=self.backbone.splice(ids, visual), attention_mask=mask, max_new_tokens=self.max_new_tokens,
            num_beams=self.num_beams, do_sample=False, pad_token_id=self.pad_id,
        )  # fmt: skip
        return [text.strip() for text in tok.batch_decode(out, skip_special_tokens=True)]

    @torch.no_grad()
    def likelihoods(self, video: Tensor, questions: list[str], options: list[list[str]]) -> list[Tensor]:
        """Normalised clips ``(B, T, 3, H, W)``, questions and each question's options → per question, the summed
        log-probability of each option's tokens and end of sequence after the prompt ``(K_b,)``."""
        visual = self.visual_tokens(video)  # (B, M, E)
        scores = []
        for b, (question, cands) in enumerate(zip(questions, options, strict=True)):
            parts = []
            for start in range(0, len(cands), CHUNK):  # a 1000-answer vocabulary: chunks, not 1000 prompts at once
                chunk = list(cands[start : start + CHUNK])
                ids, mask, labels = self.encode_prompts([question] * len(chunk), visual.shape[1], chunk)
                embeds = self.backbone.splice(ids, visual[b : b + 1].expand(len(chunk), -1, -1))
                logp, rows = self.answer_log_probs(embeds, mask, labels)
                parts.append(torch.zeros(len(chunk), device=logp.device).index_add_(0, rows, logp))
            scores.append(torch.cat(parts))
        return scores

    def answer(self, video: Tensor, batch: dict) -> list[str]:
        """The model's answers to the batch's questions, as ``answer_by`` says."""
        if self.answer_by == "generate":
            return self.generate(video, batch["question"])
        options = [self.answers] * len(batch["question"]) if self.answer_by == "vocabulary" else batch["candidates"]
        scores = self.likelihoods(video, batch["question"], options)
        return [opts[int(s.argmax())] for opts, s in zip(options, scores, strict=True)]

    def _evaluate(self, batch: dict, metrics: nn.ModuleDict, stage: str) -> None:
        video = batch["video"][:, 0]  # (B, T, 3, H, W): the first view
        answers = self.answer(self.normalize(video), batch)
        valid = batch["valid"].tolist()
        for answer, reference, qtype, ok in zip(answers, batch["answer"], batch["qtype"], valid, strict=True):
            if not ok:
                continue
            for group in ("all", qtype) if qtype in self.question_types else ("all",):
                metrics[f"exact_{group}"].update(float(exact_match(answer, reference)))
                metrics[f"contains_{group}"].update(float(contains_match(answer, reference)))
                metrics[f"asked_{group}"].update(1.0)
        self.log(f"{stage}/skipped", float(len(valid) - sum(valid)), reduce_fx="sum", batch_size=len(valid))

    def _log_epoch(self, metrics: nn.ModuleDict, stage: str) -> None:
        totals = {name: float(metric.compute()) for name, metric in metrics.items()}
        for metric in metrics.values():
            metric.reset()
        self.log(f"{stage}/questions", totals["asked_all"], rank_zero_only=True)
        for group in ["all", *self.question_types]:
            asked = totals[f"asked_{group}"]
            if asked:
                suffix = "" if group == "all" else f"_{group}"
                self.log(f"{stage}/exact{suffix}", 100 * totals[f"exact_{group}"] / asked, rank_zero_only=True)
                self.log(f"{stage}/contains{suffix}", 100 * totals[f"contains_{group}"] / asked, rank_zero_only=True)

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        self._evaluate(batch, self.val_metrics, "val")

    def test_step(self, batch: dict, batch_idx: int) -> None:
        self._evaluate(batch, self.test_metrics, "test")

    def on_validation_epoch_end(self) -> None:
        self._log_epoch(self.val_metrics, "val")

    def on_test_epoch_end(self) -> None:
        self._log_epoch(self.test_metrics, "test")


class GenerativeCaptioning(GenerativeVideoQA):
    """Video captioning with a multimodal LLM: the caption is the answer to one fixed ``prompt``.

    Everything of ``GenerativeVideoQA`` (strategies, frame-token aggregators, what trains, generation) with
    ``Captions`` data: training on one reference a video per epoch (``caption``), evaluation scored by the COCO caption
    code on every reference (``captions``) as ``VideoCaptioning`` scores its decoder's captions, each video once
    across ranks. With a CLIP tower and an MLP projector this is ClipCap's layout (Mokady et al. 2021: CLIP features
    mapped to a causal LM's prefix), with the LLaVA checkpoint's LLM as the LM.

    Args: as ``GenerativeVideoQA``, and ``prompt``: the question every video answers with its caption.
    """

    monitor = "val/cider"

    def __init__(
        self,
        backbone: nn.Module,
        transfer: TransferStrategy | None = None,
        frame_tokens: TokenAggregator | None = None,
        template: str = LLAVA_15,
        prompt: str = "Describe the video in one sentence.",
        max_new_tokens: int = 32,
        num_beams: int = 1,
        optim: Optimization | None = None,
        runtime: Runtime | None = None,
    ) -> None:
        super().__init__(backbone, transfer, frame_tokens, template, max_new_tokens=max_new_tokens,
                         num_beams=num_beams, optim=optim, runtime=runtime)  # fmt: skip
        self.prompt = prompt
        self._collected: dict = {}  # stage → lit_i2v.tasks.captioning.CaptionCollector

    @classmethod
    def tiny(cls) -> GenerativeCaptioning:
        from lit_i2v.backbones.llava import LLaVA
        from lit_i2v.backbones.llava_tiny import write_tiny_llava
        from lit_i2v.backbones.weights import cache_dir

        folder = write_tiny_llava(cache_dir() / "llava-tiny-test")
        return cls(LLaVA(str(folder)), MultimodalLLM(projector=True), template="user : {video} {question} assistant :",
                   prompt="what happens ?", max_new_tokens=4)  # fmt: skip

    def example_batch(self, size: int = 2, training: bool = True, frames: int = 4, views: int = 2) -> dict:
        """Clips and, in training, one ``caption`` per video; in evaluation every reference, ``captions``."""
        batch = VideoTask.example_batch(self, size, training, frames, views)
        words = ["a red circle moving left", "a blue square moving up", "a green diamond moving down"]
        if training:
            return batch | {"caption": [words[i % len(words)] for i in range(size)]}
        return batch | {"captions": [[words[i % len(words)], words[(i + 1) % len(words)]] for i in range(size)]}

    def training_step(self, batch: dict, batch_idx: int) -> Tensor:
        questions = [self.prompt] * len(batch["caption"])
        return super().training_step(batch | {"question": questions, "answer": batch["caption"]}, batch_idx)

    def _evaluate(self, batch: dict, metrics: nn.ModuleDict, stage: str) -> None:
        from lit_i2v.tasks.captioning import CaptionCollector

        captions = self.generate(self.normalize(batch["video"][:, 0]), [self.prompt] * len(batch["captions"]))
        self._collected.setdefault(stage, CaptionCollector()).add(self, batch, captions, stage)

    def _log_epoch(self, metrics: nn.ModuleDict, stage: str) -> None:
        from lit_i2v.tasks.captioning import CaptionCollector

        self._collected.pop(stage, CaptionCollector()).score(self, stage)
