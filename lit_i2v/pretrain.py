"""``python -m lit_i2v pretrain-synthetic``: a tiny CLIP trained on synthetic image-caption pairs.

No pretrained image-language model can be downloaded where lit_i2v is built and tested, yet image-to-video transfer
is only meaningful from a model that already knows images. This trains one in a few CPU minutes: images of one
shape (circle, square, triangle, diamond) in one of eight colours, small or large, faint or solid, at one of five
places, on a random dark background, captioned ``"a small faint red circle on the left"``; the loss is CLIP's
symmetric contrastive loss (Radford et al. 2021) over in-batch pairs. The images come from the same renderer as the
synthetic motion videos, so a frame of a video is an image this model has seen the like of, and the words it learns
(positions, sizes, faint/solid) are the ones a motion is made of.

The result is saved in open_clip's state-dict format under the tag ``synthetic`` of its architecture
(``~/.cache/lit_i2v/ViT-S-8-tiny.synthetic.pt``), so configs load it as ``pretrained: synthetic``, exactly as real
weights are loaded. A plain loop, readable top to bottom.

A SigLIP architecture (``SigLIP-S-8-tiny``) is trained the same way with SigLIP's sigmoid loss (Zhai et al. 2023:
every image-caption pair of the batch a binary decision, with a learnt scale and bias) and saved as SigLIP models
are shared, a folder in open_clip's hub layout (``open_clip_model.safetensors``, ``open_clip_config.json``) with its
own tokenizer: a SentencePiece-style Unigram model with SigLIP's special tokens, trained here on the synthetic
vocabulary (the pretraining captions, the motion datasets' labels, captions, questions and prompt templates), since
no SigLIP tokenizer can be downloaded.
"""

from __future__ import annotations

import json
import logging
import math
import os
import random
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from lit_i2v.backbones import CLIP, sigmoid_pair_loss
from lit_i2v.backbones.folder_tokenizer import FolderTokenizer, canonicalize
from lit_i2v.backbones.registry import get_arch
from lit_i2v.backbones.weights import cache_dir, to_open_clip_timm, to_openai
from lit_i2v.data.synthetic import CLASSES, COLOURS, MOTION_ANSWERS, SHAPES, label_key, shape_mask

log = logging.getLogger(__name__)

PLACES = {"on the left": (0.22, 0.5), "on the right": (0.78, 0.5), "at the top": (0.5, 0.22),
          "at the bottom": (0.5, 0.78), "in the middle": (0.5, 0.5)}  # fmt: skip
SIZES = {"small": (0.06, 0.11), "large": (0.15, 0.22)}
OPACITY = {"faint": (0.25, 0.5), "solid": (1.0, 1.0)}


def render_pair(rng: random.Random, size: int) -> tuple[np.ndarray, str]:
    """One image ``(S, S, 3)`` uint8 and its caption."""
    colour, shape = rng.choice(list(COLOURS)), rng.choice(SHAPES)
    place, scale, opacity = rng.choice(list(PLACES)), rng.choice(list(SIZES)), rng.choice(list(OPACITY))
    cx, cy = (c + rng.uniform(-0.07, 0.07) for c in PLACES[place])
    radius, alpha = rng.uniform(*SIZES[scale]), rng.uniform(*OPACITY[opacity])
    grid = np.mgrid[0:size, 0:size].astype(np.float32) / size
    image = np.broadcast_to(np.array([rng.randint(10, 90) for _ in range(3)], np.float32), (size, size, 3)).copy()
    mask = shape_mask(shape, cx, cy, radius, grid)
    image[mask] = image[mask] * (1 - alpha) + np.array(COLOURS[colour], np.float32) * alpha
    return image.astype(np.uint8), f"a {scale} {opacity} {colour} {shape} {place}"


def batch(rng: random.Random, n: int, size: int, model: CLIP) -> tuple[torch.Tensor, torch.Tensor]:
    """Normalised images ``(n, 3, S, S)`` and token ids ``(n, L)``."""
    images, captions = zip(*(render_pair(rng, size) for _ in range(n)))
    x = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float() / 255  # (n, 3, S, S)
    mean = torch.tensor(model.pretrained_cfg["mean"]).view(1, 3, 1, 1)
    std = torch.tensor(model.pretrained_cfg["std"]).view(1, 3, 1, 1)
    return (x - mean) / std, model.tokenize(list(captions))


def contrastive_loss(model: CLIP, images: torch.Tensor, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """CLIP's symmetric cross-entropy over in-batch pairs (SigLIP's sigmoid loss for a model with a logit bias), and
    the image→text logits ``(n, n)``."""
    image_emb, text_emb, scale = model(images, tokens)
    target = torch.arange(len(images))
    if model.logit_bias is not None:  # SigLIP: -Σ log σ(z·(t·cos + b)) / n, z = +1 for the pairs, -1 otherwise
        logits = scale * image_emb @ text_emb.t() + model.logit_bias
        return sigmoid_pair_loss(logits), logits
    logits = scale.clamp(max=100) * image_emb @ text_emb.t()
    return (F.cross_entropy(logits, target) + F.cross_entropy(logits.t(), target)) / 2, logits


def synthetic_corpus() -> list[str]:
    """Every text the synthetic data and recipes use: captions of the images above, the motion datasets' labels,
    captions, questions and answers, and the prompt templates of the zero-shot recipes."""
    things = [f"{colour} {shape}" for colour in COLOURS for shape in SHAPES]
    texts = [f"a {size} {opacity} {thing} {place}" for size in SIZES for opacity in OPACITY for thing in things
             for place in PLACES]  # fmt: skip
    for template, _, _ in CLASSES:
        texts += [label_key(template), *(template.replace("[something]", thing) for thing in things)]
    for thing in things:
        texts += [f"what is the {thing} doing?", f"what colour is the {thing.split()[1]}?", "what happens?"]
        texts += [f"the {thing} is {answer}" for answer in MOTION_ANSWERS]
    prompts = ["a video of {}.", "a photo of a {}.", "a video of a person {}.", "a {}."]
    return texts + [p.format(t) for p in prompts for t in [label_key(c) for c, _, _ in CLASSES] + things]


def write_synthetic_tokenizer(folder: Path, vocab_size: int) -> None:
    """A Unigram tokenizer (SentencePiece's model, as SigLIP's) with SigLIP's special tokens (``<pad>`` 0, ``</s>``
    1 appended to every text, ``<unk>`` 2), as ``tokenizer.json`` and ``tokenizer_config.json`` in ``folder``. Its
    pieces are every word of :func:`synthetic_corpus` (as SentencePiece writes them, ``▁red``) and single characters
    (a-z, 0-9, ``▁``) for any other word, words scored far above characters so that a known word is one token."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors

    words = sorted({word for text in synthetic_corpus() for word in canonicalize(text).split()})
    characters = ["▁", *"abcdefghijklmnopqrstuvwxyz0123456789"]
    pieces = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0)]
    pieces += [(f"▁{w}", -1.0) for w in words] + [(c, -10.0) for c in characters]
    if len(pieces) > vocab_size:
        raise ValueError(f"the synthetic vocabulary has {len(pieces)} pieces; the text tower holds {vocab_size}")
    tokenizer = Tokenizer(models.Unigram(pieces, unk_id=2))
    tokenizer.normalizer = normalizers.Lowercase()
    tokenizer.pre_tokenizer = pre_tokenizers.Metaspace()
    tokenizer.decoder = decoders.Metaspace()
    tokenizer.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", 1)])
    tokenizer.save(str(folder / "tokenizer.json"))
    (folder / "tokenizer_config.json").write_text(json.dumps(
        {"tokenizer_class": "PreTrainedTokenizerFast", "pad_token": "<pad>", "eos_token": "</s>", "unk_token": "<unk>"}
    ))  # fmt: skip


def save_open_clip_folder(model: CLIP, out: Path) -> None:
    """``out`` as open_clip's hub folders hold a SigLIP model, with the synthetic tokenizer, written atomically (a
    temporary folder renamed); an existing folder is replaced only if it holds a model."""
    from safetensors.torch import save_file

    if out.exists() and not (out / "open_clip_model.safetensors").is_file():
        raise FileExistsError(f"{out} exists and is not a model folder: give a new path to write the SigLIP folder to")
    tmp = out.with_name(f"{out.name}.{os.getpid()}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    write_synthetic_tokenizer(tmp, get_arch(model.arch).text["vocab_size"])
    save_file(to_open_clip_timm(model.state_dict()), str(tmp / "open_clip_model.safetensors"))
    spec = model.pretrained_cfg
    preprocess = {"mean": list(spec["mean"]), "std": list(spec["std"]), "resize_mode": "squash"}
    config = {"model_cfg": {"lit_i2v_arch": model.arch}, "preprocess_cfg": preprocess}
    (tmp / "open_clip_config.json").write_text(json.dumps(config, indent=1))
    if out.exists():  # an earlier model folder: replaced
        shutil.rmtree(out)
    tmp.replace(out)


def pretrain(
    arch: str = "ViT-S-8-tiny",
    steps: int = 500,
    batch_size: int = 64,
    lr: float = 1e-3,
    seed: int = 0,
    out: str | Path | None = None,
) -> tuple[Path, dict]:
    """Train and save; returns the file and held-out figures (image→text top-1 in batches of 256)."""
    torch.manual_seed(seed)
    rng = random.Random(seed)
    model = CLIP(arch)
    folder = Path(out) if out else None
    siglip = model.logit_bias is not None  # a family whose tokenizer is saved with its weights
    if siglip:
        folder = folder or cache_dir() / f"{arch}.synthetic"
        if folder.exists() and not (folder / "open_clip_model.safetensors").is_file():
            raise FileExistsError(f"{folder} exists and is not a model folder: give a new path for the SigLIP folder")
        with tempfile.TemporaryDirectory() as vocab:  # read into memory; written again beside the weights at the end
            write_synthetic_tokenizer(Path(vocab), get_arch(arch).text["vocab_size"])
            model.tokenizer = FolderTokenizer(vocab, get_arch(arch).text["context_length"])
    size = model.visual.image_size
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.1, betas=(0.9, 0.98))
    warmup = max(steps // 20, 1)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: min((s + 1) / warmup, 0.5 * (1 + math.cos(math.pi * s / steps)))
    )
    start = time.perf_counter()
    model.train()
    for step in range(steps):
        images, tokens = batch(rng, batch_size, size, model)
        loss, _ = contrastive_loss(model, images, tokens)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        schedule.step()
        if step % 50 == 0 or step == steps - 1:
            log.info("step %d/%d  loss %.3f  %.1f s", step, steps, loss.item(), time.perf_counter() - start)
    figures = evaluate(model, random.Random(seed + 1), size)
    figures.update(steps=steps, batch_size=batch_size, seconds=round(time.perf_counter() - start, 1))
    if siglip:
        save_open_clip_folder(model, folder)
        return folder, figures
    path = Path(out) if out else cache_dir() / f"{arch}.synthetic.pt"
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    torch.save(to_openai(model.state_dict()), tmp)
    tmp.replace(path)  # atomic: a half-written file never carries the final name
    return path, figures


@torch.no_grad()
def evaluate(model: CLIP, rng: random.Random, size: int, batches: int = 4) -> dict:
    """Held-out image→text top-1 among 256 in-batch captions (chance 1/256)."""
    model.eval()
    correct = total = 0
    for _ in range(batches):
        images, tokens = batch(rng, 256, size, model)
        _, logits = contrastive_loss(model, images, tokens)
        correct += int((logits.argmax(1) == torch.arange(256)).sum())
        total += 256
    return {"heldout_image_to_text_top1": round(correct / total, 4)}
