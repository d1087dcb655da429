"""CoOp: learnable text context around the class names, the text tower frozen.

Zhou et al., *Learning to Prompt for Vision-Language Models*, IJCV 2022 (CoOp). Official code:
github.com/KaiyangZhou/CoOp. Survey (arXiv 2510.10671), "modified features / prompt tuning", text side.

The hand-written template ("a video of a {}.") becomes M learnable context vectors in the token-embedding space:
``[SOS] v_1 ... v_M <class name> . [EOS]``. Every forward re-encodes the K class prompts through the frozen text
tower (gradients reach only the context) and classifies by cosine similarity scaled by CLIP's fixed logit scale.
Initialised from words (``context_init``), the head equals the hand-written prompt classifier at step 0.
One context shared by all classes, the class name at the end (the paper's default "unified context"), or, with
``class_specific``, one context per class (the paper's CSC; Vita-CLIP's text side uses it with M = 8).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lit_i2v.backbones import CLIP, scaled_logits
from lit_i2v.heads.classifier import Head


class CoOpHead(Head):
    """Args:
    context_init: words whose embeddings initialise the context (e.g. ``a video of a``); None for random.
    num_context: context length M when ``context_init`` is None (random N(0, 0.02), the paper's 16).
    class_specific: a context per class ``(K, M, W)`` instead of one shared ``(M, W)``.
    """

    needs_projection = True
    needs_class_names = True

    def __init__(
        self, context_init: str | None = "a video of a", num_context: int = 16, class_specific: bool = False
    ) -> None:
        super().__init__()
        self.context_init, self.num_context, self.class_specific = context_init, num_context, class_specific
        self.text: list[CLIP] = []  # the backbone, held outside the module tree: its parameters belong to the task
        self._cached: Tensor | None = None  # class embeddings during one evaluation pass

    def build(self, backbone: CLIP, num_classes: int, class_names: list[str] | None) -> None:
        if not class_names or len(class_names) != num_classes:
            raise ValueError(f"CoOpHead needs {num_classes} class names (model.class_names), got {class_names!r}")
        backbone.tokenize(class_names[:1])  # a backbone without a tokenizer says so here
        tokenizer = backbone.tokenizer
        if self.context_init:
            words = tokenizer.encode(self.context_init)
            self.num_context = len(words)
            with torch.no_grad():
                init = backbone.text.token_embedding(torch.tensor(words)).clone()  # (M, W)
        else:
            init = torch.empty(self.num_context, backbone.text.width).normal_(std=0.02)
        if self.class_specific:
            init = init.unsqueeze(0).repeat(num_classes, 1, 1)  # (K, M, W), from the same words
            if not self.context_init:
                init.normal_(std=0.02)
        self.context = nn.Parameter(init)  # (M, W) or (K, M, W): the only parameters this head trains
        # (K, L): M placeholders where the context goes (after CLIP's start token; first on SigLIP), then the name
        ids = torch.stack(
            [tokenizer.pack([0] * self.num_context + tokenizer.encode(f"{name}.")) for name in class_names]
        )
        self.start = tokenizer.prefix_length
        self.register_buffer("token_ids", ids, persistent=False)
        self.text = [backbone]

    def class_embeddings(self) -> Tensor:
        """The K prompts through the frozen text tower → normalised ``(K, E)``."""
        text = self.text[0].text
        embedded = text.token_embedding(self.token_ids)  # (K, L, W)
        k, m = embedded.shape[0], self.num_context
        context = self.context.to(embedded.dtype)
        if context.ndim == 2:
            context = context.unsqueeze(0).expand(k, -1, -1)  # (K, M, W)
        a = self.start
        prompts = torch.cat([embedded[:, :a], context, embedded[:, a + m :]], dim=1)  # (start), context, name, end
        return F.normalize(text.forward_embeddings(prompts, text.pool_index(self.token_ids)).float(), dim=-1)

    def train(self, mode: bool = True) -> CoOpHead:
        self._cached = None  # every switch (and so every evaluation pass, or a checkpoint loaded before one) re-encodes
        return super().train(mode)

    @torch.no_grad()
    def prepare_evaluation(self) -> None:
        """Encode the class prompts for the evaluation pass that follows (the cache ``forward`` reads)."""
        self._cached = self.class_embeddings()

    def forward(self, x: Tensor) -> Tensor:
        clip = self.text[0]
        bias = clip.logit_bias.detach() if clip.logit_bias is not None else None
        if self.training or torch.is_grad_enabled():
            weights = self.class_embeddings()  # the context is learning: encode the prompts every step
        else:
            # In evaluation the context is fixed: encode the K prompts once per pass, not once per batch.
            if self._cached is None:
                self._cached = self.class_embeddings()
            weights = self._cached
        return scaled_logits(F.normalize(x.float(), dim=-1) @ weights.t(), clip.logit_scale.detach(), bias)  # (B, K)

    def extra_repr(self) -> str:
        return (
            f"context_init={self.context_init!r}, num_context={self.num_context}, class_specific={self.class_specific}"
        )
