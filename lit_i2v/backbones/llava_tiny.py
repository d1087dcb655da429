"""Tiny LLaVA folders in llava-hf's layout, written by transformers itself: a random one for tests, and one whose
vision tower is the synthetic-pretrained tiny CLIP, for the synthetic generative-QA recipe.

The synthetic model shows that the plumbing works (tower, projector, LLM, prompts, loss, generation, metrics), not
what any method achieves: its LLM is a 2-layer Llama that starts from random weights and learns the synthetic set's
few answer words.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
from collections.abc import Iterator
from pathlib import Path

import torch
from torch import Tensor

from lit_i2v.backbones.weights import WeightsError, cache_dir

TINY_WORDS = [
    "user", "assistant", ":", "what", "is", "the", "doing", "colour", "happens", "?", "a", "video", "of", "yes", "no",
    "left", "to", "right", "up", "down", "approaching", "moving", "away", "appearing", "disappearing",
    "red", "green", "blue", "yellow", "white", "orange", "purple", "cyan", "circle", "square", "triangle", "diamond",
]  # fmt: skip  # the synthetic QA set's words (lit_i2v.data.synthetic) and the prompt's


@contextlib.contextmanager
def _writing(folder: Path) -> Iterator[bool]:
    """Held while ``folder`` is written: concurrent processes (DDP ranks, test workers) wait for the first; yields
    whether it still has to be written. Inside, modules are built on the CPU (``summary`` builds under the meta
    device, whose tensors cannot be saved) and the caller's random state is kept, whether or not the folder had to
    be written."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    with open(folder.with_name(folder.name + ".lock"), "w") as lock, torch.device("cpu"), torch.random.fork_rng():
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes, also if this process dies
        yield not (folder / "config.json").is_file()


def tiny_tokenizer(folder: Path):
    """A word-level tokenizer over ``TINY_WORDS`` with Llama's special tokens and the ``<image>`` and ``<video>``
    placeholders, saved in ``folder``."""
    import transformers
    from tokenizers import Tokenizer, models, pre_tokenizers

    specials = ["<unk>", "<s>", "</s>", "<pad>", "<image>", "<video>"]
    core = Tokenizer(models.WordLevel({w: i for i, w in enumerate(specials + TINY_WORDS)}, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.Whitespace()
    tok = transformers.PreTrainedTokenizerFast(
        tokenizer_object=core, bos_token="<s>", eos_token="</s>", unk_token="<unk>", pad_token="<pad>",
        additional_special_tokens=["<image>", "<video>"],
    )  # fmt: skip
    tok.save_pretrained(folder)
    return tok


def tiny_llama(tok, width: int = 48):
    import transformers

    return transformers.LlamaConfig(
        vocab_size=len(tok), hidden_size=width, intermediate_size=2 * width, num_hidden_layers=2,
        num_attention_heads=2, num_key_value_heads=2, pad_token_id=tok.pad_token_id, bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
    )  # fmt: skip


def write_tiny_llava(folder: str | Path, model_type: str = "llava", seed: int = 0) -> Path:
    """A tiny random LLaVA folder in llava-hf's layout, written by transformers' ``save_pretrained``: a CLIP tower of
    3 blocks at 32 px (8 px patches, width 32), a 2-layer Llama (width 48) and the word-level tokenizer. Builds in
    about a second; idempotent."""

    folder = Path(folder)
    with _writing(folder) as needed:
        if needed:
            _write_tiny(folder, model_type, seed)
    return folder


def _write_tiny(folder: Path, model_type: str, seed: int) -> None:
    import transformers

    tmp = folder.with_name(folder.name + ".tmp")
    tmp.mkdir(parents=True, exist_ok=True)
    tok = tiny_tokenizer(tmp)
    vision = transformers.CLIPVisionConfig(
        hidden_size=32, intermediate_size=64, num_hidden_layers=3, num_attention_heads=2, image_size=32, patch_size=8,
        hidden_act="quick_gelu",
    )  # fmt: skip
    text = tiny_llama(tok)
    image = tok.convert_tokens_to_ids("<image>")
    if model_type == "llava":
        config = transformers.LlavaConfig(vision_config=vision, text_config=text, image_token_id=image)
        cls = transformers.LlavaForConditionalGeneration
    elif model_type == "llava_onevision":  # a SigLIP tower (no pooling head) and a Qwen2 LLM, as the real ones
        vision = transformers.SiglipVisionConfig(
            hidden_size=32, intermediate_size=64, num_hidden_layers=3, num_attention_heads=2, image_size=32,
            patch_size=8, vision_use_head=False,
        )  # fmt: skip
        text = transformers.Qwen2Config(
            vocab_size=len(tok), hidden_size=48, intermediate_size=96, num_hidden_layers=2, num_attention_heads=2,
            num_key_value_heads=2, pad_token_id=tok.pad_token_id, bos_token_id=tok.bos_token_id,
            eos_token_id=tok.eos_token_id, tie_word_embeddings=True,
        )  # fmt: skip
        config = transformers.LlavaOnevisionConfig(
            vision_config=vision, text_config=text, image_token_id=image,
            video_token_id=tok.convert_tokens_to_ids("<video>"), vision_feature_layer=-1,
            vision_feature_select_strategy="full",
        )  # fmt: skip
        cls = transformers.LlavaOnevisionForConditionalGeneration
    elif model_type == "llava_next_video":
        config = transformers.LlavaNextVideoConfig(
            vision_config=vision, text_config=text, image_token_id=image,
            video_token_id=tok.convert_tokens_to_ids("<video>"),
        )  # fmt: skip
        cls = transformers.LlavaNextVideoForConditionalGeneration
    else:
        raise ValueError(f"model_type {model_type!r}: llava, llava_next_video or llava_onevision")
    torch.manual_seed(seed)
    cls(config).eval().save_pretrained(tmp)
    mean, std = [0.48145466, 0.4578275, 0.40821073], [0.26862954, 0.26130258, 0.27577711]
    (tmp / "preprocessor_config.json").write_text(json.dumps({"image_mean": mean, "image_std": std}))
    tmp.replace(folder)


def to_transformers_vision(state: dict[str, Tensor]) -> dict[str, Tensor]:
    """lit_i2v image-tower names (``visual.`` removed) → transformers ``CLIPVisionModel`` names (``vision_model.``
    removed): the inverse of ``weights.convert_transformers`` on a CLIP tower; the projection ``head`` is dropped."""
    out = {}
    for key, value in state.items():
        if key.startswith("head."):
            continue
        if key == "cls_token":
            out["embeddings.class_embedding"] = value.reshape(-1)
            continue
        if key == "pos_embed":
            out["embeddings.position_embedding.weight"] = value.reshape(value.shape[-2], -1)
            continue
        if key == "patch_embed.proj.weight":
            out["embeddings.patch_embedding.weight"] = value
            continue
        if key.startswith(("norm_pre.", "norm.")):
            kind = key.rpartition(".")[2]
            out[("pre_layrnorm." if key.startswith("norm_pre.") else "post_layernorm.") + kind] = value
            continue
        if not key.startswith("blocks."):
            raise WeightsError(f"{key}: not a CLIP image-tower parameter")
        _, index, rest = key.split(".", 2)
        layer = f"encoder.layers.{index}."
        if rest.startswith("attn.qkv."):
            kind = rest.rpartition(".")[2]
            for part, chunk in zip("qkv", value.chunk(3), strict=True):
                out[f"{layer}self_attn.{part}_proj.{kind}"] = chunk
            continue
        rest = rest.replace("attn.proj.", "self_attn.out_proj.").replace("norm1.", "layer_norm1.")
        out[layer + rest.replace("norm2.", "layer_norm2.")] = value
    return out


def synthetic_llava(folder: str | Path | None = None, seed: int = 0) -> Path:
    """The synthetic LLaVA (idempotent): the synthetic-pretrained ``ViT-S-8-tiny`` (made on first use, about a CPU
    minute) as a transformers CLIP tower, a random 2-layer Llama (width 64) and projector, the word-level tokenizer
    and the tower's mean and std; in ``<cache>/llava-synthetic`` by default."""

    folder = Path(folder) if folder is not None else cache_dir() / "llava-synthetic"
    with _writing(folder) as needed:
        if needed:
            _write_synthetic(folder, seed)
    return folder


def _write_synthetic(folder: Path, seed: int) -> None:
    import transformers

    from lit_i2v.backbones.clip import create_clip

    clip = create_clip("ViT-S-8-tiny", "synthetic")
    visual = clip.visual
    tmp = folder.with_name(folder.name + ".tmp")
    tmp.mkdir(parents=True, exist_ok=True)
    tok = tiny_tokenizer(tmp)
    vision = transformers.CLIPVisionConfig(
        hidden_size=visual.width, intermediate_size=visual.blocks[0].mlp.fc1.out_features,
        num_hidden_layers=len(visual.blocks), num_attention_heads=visual.blocks[0].attn.num_heads,
        image_size=visual.image_size, patch_size=visual.patch_size, hidden_act="quick_gelu",
    )  # fmt: skip
    config = transformers.LlavaConfig(vision_config=vision, text_config=tiny_llama(tok, 64),
                                      image_token_id=tok.convert_tokens_to_ids("<image>"))  # fmt: skip
    torch.manual_seed(seed)
    model = transformers.LlavaForConditionalGeneration(config).eval()
    hf_state = to_transformers_vision(visual.state_dict())
    tower = model.model.vision_tower
    target = tower.vision_model if hasattr(tower, "vision_model") else tower
    target.load_state_dict(hf_state, strict=True)
    model.save_pretrained(tmp)
    cfg = clip.pretrained_cfg
    (tmp / "preprocessor_config.json").write_text(json.dumps({"image_mean": list(cfg["mean"]),
                                                              "image_std": list(cfg["std"])}))  # fmt: skip
    tmp.replace(folder)
