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
"""

from __future__ import annotations

import logging
import math
import os
import random
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from lit_i2v.backbones import CLIP
from lit_i2v.backbones.weights import cache_dir, to_openai
from lit_i2v.data.synthetic import COLOURS, SHAPES, shape_mask

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
    """CLIP's symmetric cross-entropy over in-batch pairs, and the image→text logits ``(n, n)``."""
    image_emb, text_emb, scale = model(images, tokens)
    logits = scale.clamp(max=100) * image_emb @ text_emb.t()
    target = torch.arange(len(images))
    return (F.cross_entropy(logits, target) + F.cross_entropy(logits.t(), target)) / 2, logits


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
