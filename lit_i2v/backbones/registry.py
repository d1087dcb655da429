"""The one name registry: architectures by name, and pretrained weights as ``arch.tag`` (timm's convention).

Each tag carries its own preprocessing (mean, std, input size) and where the weights live: a local file that the
user names, an HTTPS address (OpenAI's release), or a Hugging Face hub repository holding an open_clip state dict.
A new model is usually just an entry here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)


SIGLIP_MEAN = SIGLIP_STD = (0.5, 0.5, 0.5)


@dataclass(frozen=True)
class Arch:
    """Hyperparameters of both towers (see ``VisionTransformer`` and ``TextTransformer``), the activation both use,
    the preprocessing the family was trained with, and whether its loss has a learnt bias (SigLIP's sigmoid loss)."""

    embed_dim: int
    vision: dict
    text: dict
    act: str = "quick_gelu"
    mean: tuple[float, float, float] = OPENAI_MEAN
    std: tuple[float, float, float] = OPENAI_STD
    logit_bias: bool = False


@dataclass(frozen=True)
class PretrainedCfg:
    """Where one set of weights comes from and how its images were normalised."""

    url: str | None = None
    hf_hub: str | None = None
    hf_filename: str = "open_clip_pytorch_model.bin"
    mean: tuple[float, float, float] | None = None  # None: the architecture's (OpenAI's for CLIP, 0.5 for SigLIP)
    std: tuple[float, float, float] | None = None
    notes: str = ""
    # Made locally on first use instead of downloaded, by this function ("module:function", called as
    # ``function(arch, out=path)``): named by import path so that backbones import no training code.
    make: str | None = None
    # Kept as a folder (weights, open_clip_config.json, tokenizer.json: open_clip's hub layout) rather than one file:
    # a family whose tokenizer comes with its weights (SigLIP).
    folder: bool = False
    extra: dict = field(default_factory=dict)


SYNTHETIC_MAKER = "lit_i2v.pretrain:pretrain"  # trains a tiny CLIP on synthetic image-caption pairs


def _text(width: int, heads: int, layers: int = 12, context_length: int = 77) -> dict:
    return dict(context_length=context_length, vocab_size=49408, width=width, heads=heads, layers=layers)


def _siglip(
    image_size: int,
    patch_size: int,
    width: int,
    layers: int,
    heads: int,
    vocab_size: int = 32000,
    text_cfg: dict | None = None,
    mlp_ratio: float = 4.0,
) -> Arch:
    """SigLIP (Zhai et al. 2023) and SigLIP 2 (Tschannen et al. 2025): no class token, a biased patch embedding, no
    pre-norm, attention pooling, tanh-GELU, LayerNorm eps 1e-6; a bidirectional 64-token text tower read at its last
    position, projected with a bias; image and text embeddings of the tower width; mean and std 0.5. ``text_cfg``
    overrides the text tower's (the tiny sizes)."""
    vision = dict(
        image_size=image_size,
        patch_size=patch_size,
        width=width,
        layers=layers,
        heads=heads,
        mlp_ratio=mlp_ratio,
        class_token=False,
        patch_bias=True,
        pre_norm=False,
        pool="map",
        eps=1e-6,
        project=False,
    )
    text = dict(context_length=64, vocab_size=vocab_size, width=width, heads=heads, layers=layers, causal=False,
                pool="last", head_bias=True, eps=1e-6, mlp_ratio=mlp_ratio) | (text_cfg or {})  # fmt: skip
    return Arch(width, vision, text, act="gelu_tanh", mean=SIGLIP_MEAN, std=SIGLIP_STD, logit_bias=True)


ARCHS: dict[str, Arch] = {
    "ViT-B-32": Arch(512, dict(image_size=224, patch_size=32, width=768, layers=12, heads=12), _text(512, 8)),
    "ViT-B-16": Arch(512, dict(image_size=224, patch_size=16, width=768, layers=12, heads=12), _text(512, 8)),
    "ViT-L-14": Arch(768, dict(image_size=224, patch_size=14, width=1024, layers=24, heads=16), _text(768, 12)),
    "ViT-L-14-336": Arch(768, dict(image_size=336, patch_size=14, width=1024, layers=24, heads=16), _text(768, 12)),
    # Tiny sizes for tests and the CPU quickstart; same code paths, real tokenizer.
    "ViT-T-8-test": Arch(32, dict(image_size=32, patch_size=8, width=64, layers=2, heads=2), _text(64, 2, 2)),
    # The built-in default's backbone; 32 text tokens are plenty for its synthetic captions.
    "ViT-S-8-tiny": Arch(64, dict(image_size=64, patch_size=8, width=96, layers=4, heads=3), _text(64, 2, 2, 32)),
    # SigLIP (vocabulary 32k) and SigLIP 2 (Gemma's 256k) at the sizes of google/siglip*-patch16-*
    **{f"SigLIP-B-16{'' if s == 224 else f'-{s}'}": _siglip(s, 16, 768, 12, 12) for s in (224, 256, 384, 512)},
    **{f"SigLIP-L-16-{s}": _siglip(s, 16, 1024, 24, 16) for s in (256, 384)},
    **{f"SigLIP2-B-16{'' if s == 224 else f'-{s}'}": _siglip(s, 16, 768, 12, 12, 256000) for s in (224, 256, 384, 512)},
    **{f"SigLIP2-L-16-{s}": _siglip(s, 16, 1024, 24, 16, 256000) for s in (256, 384, 512)},
    # SO400M, the shape-optimised 400M tower (Alabdulmohsin et al. 2023): width 1152, 27 blocks, MLP 4304, in both
    # towers; SigLIP's at patch 14 (224 px with 16 text tokens, as released; 378, 384), SigLIP 2's at 14 (224, 378) and
    # 16 (256, 384, 512)
    "SigLIP-SO400M-14": _siglip(224, 14, 1152, 27, 16, text_cfg=dict(context_length=16), mlp_ratio=3.7362),
    **{f"SigLIP-SO400M-14-{s}": _siglip(s, 14, 1152, 27, 16, mlp_ratio=3.7362) for s in (378, 384)},
    **{
        f"SigLIP2-SO400M-14{'' if s == 224 else f'-{s}'}": _siglip(s, 14, 1152, 27, 16, 256000, mlp_ratio=3.7362)
        for s in (224, 378)
    },  # fmt: skip
    **{f"SigLIP2-SO400M-16-{s}": _siglip(s, 16, 1152, 27, 16, 256000, mlp_ratio=3.7362) for s in (256, 384, 512)},
    "SigLIP-T-8-test": _siglip(32, 8, 64, 2, 2, 1000),  # tests: the family's code paths at CLIP's tiny test size
    # ViT-S-8-tiny's sizes in the SigLIP family: the synthetic-pretrained tiny SigLIP (sigmoid loss)
    "SigLIP-S-8-tiny": _siglip(64, 8, 96, 4, 3, 256, dict(layers=2, context_length=32)),
}

_OPENAI = "https://openaipublic.azureedge.net/clip/models"
PRETRAINED: dict[str, PretrainedCfg] = {
    "ViT-B-32.openai": PretrainedCfg(
        url=f"{_OPENAI}/40d365715913c9da98579312b702a82c18be219cc2a73407c4526f58eba950af/ViT-B-32.pt",
        hf_hub="timm/vit_base_patch32_clip_224.openai",
    ),
    "ViT-B-16.openai": PretrainedCfg(
        url=f"{_OPENAI}/5806e77cd80f8b59890b7e101eabd078d9fb84e6937f9e85e4ecb61988df416f/ViT-B-16.pt",
        hf_hub="timm/vit_base_patch16_clip_224.openai",
    ),
    "ViT-L-14.openai": PretrainedCfg(
        url=f"{_OPENAI}/b8cca3fd41ae0c99ba7e8951adf17d267cdb84cd88be6f7c2e0eca1737a03836/ViT-L-14.pt",
        hf_hub="timm/vit_large_patch14_clip_224.openai",
    ),
    # Made on this machine by `python -m lit_i2v pretrain-synthetic` (no download exists), on first use if absent.
    "ViT-S-8-tiny.synthetic": PretrainedCfg(notes="python -m lit_i2v pretrain-synthetic", make=SYNTHETIC_MAKER),
    "ViT-T-8-test.synthetic": PretrainedCfg(
        notes="python -m lit_i2v pretrain-synthetic --arch ViT-T-8-test", make=SYNTHETIC_MAKER
    ),
    # The same in the SigLIP family, trained with the sigmoid loss; a folder in open_clip's hub layout with its own
    # SentencePiece-style (Unigram) tokenizer, trained on the synthetic vocabulary.
    "SigLIP-S-8-tiny.synthetic": PretrainedCfg(
        notes="python -m lit_i2v pretrain-synthetic --arch SigLIP-S-8-tiny", make=SYNTHETIC_MAKER, folder=True
    ),
    "SigLIP-T-8-test.synthetic": PretrainedCfg(
        notes="python -m lit_i2v pretrain-synthetic --arch SigLIP-T-8-test", make=SYNTHETIC_MAKER, folder=True
    ),
    "ViT-L-14-336.openai": PretrainedCfg(
        url=f"{_OPENAI}/3035c92b350959924f9f00213499208652fc7ea050643e8b385c2dac08641f02/ViT-L-14-336px.pt",
        hf_hub="timm/vit_large_patch14_clip_336.openai",
    ),
}


def _webli(arch: str) -> PretrainedCfg:
    """SigLIP and SigLIP 2 trained on WebLI, as open_clip shares them on the Hugging Face hub: a folder holding
    ``open_clip_model.safetensors``, ``open_clip_config.json`` (mean, std) and the tokenizer (``pretrained: webli``;
    ``SigLIP2-B-16-384`` is ``timm/ViT-B-16-SigLIP2-384``). open_clip's SO400M/14 at 378 px reads the 384-px weights
    (the same 27x27 patches: 378 is 27 x 14)."""
    family, size, patch, resolution = re.fullmatch(r"(SigLIP2?)-(B|L|SO400M)-(\d+)(-\d+)?", arch).groups()
    repo = f"timm/ViT-{size}-{patch}-{family}{resolution or ''}"  # SigLIP2-B-16-384 -> timm/ViT-B-16-SigLIP2-384
    if arch == "SigLIP-SO400M-14-378":
        repo = "timm/ViT-SO400M-14-SigLIP-384"
    return PretrainedCfg(hf_hub=repo, folder=True, notes="open_clip's WebLI weights")


PRETRAINED.update(
    {f"{a}.webli": _webli(a) for a in ARCHS if a.startswith("SigLIP") and a.split("-")[1] in ("B", "L", "SO400M")}
)


def get_arch(name: str) -> Arch:
    if name not in ARCHS:
        raise KeyError(f"unknown CLIP architecture {name!r}; known: {', '.join(ARCHS)}")
    return ARCHS[name]


def list_pretrained() -> list[str]:
    return sorted(PRETRAINED)
