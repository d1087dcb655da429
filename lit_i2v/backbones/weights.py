"""Reading CLIP weights in their real formats and converting them, strictly, to lit_i2v's names.

Formats (detected from the file, then from the key names):

- OpenAI's release: a TorchScript archive (read without executing it, see ``torchscript.py``) or a plain state dict
  with OpenAI's names (``visual.transformer.resblocks.0.attn.in_proj_weight``);
- open_clip: the same names as OpenAI, saved with ``torch.save`` (``.pt``/``.bin``) or safetensors;
- timm CLIP or SigLIP ViT (image tower only): ``blocks.0.attn.qkv.weight``; the text tower then keeps its
  initialisation. timm builds its SigLIP towers with exact GELU where big_vision and transformers use the tanh
  approximation: lit_i2v's SigLIP defaults to tanh, and ``act: gelu`` reproduces timm's outputs exactly;
- lit_i2v: our own names (``visual.blocks.0.attn.qkv.weight``, ``text.blocks...``), e.g. an exported merged model;
- open_clip with a timm image tower (its SigLIP models: ``open_clip_model.safetensors``; ``visual.trunk.*`` in timm's
  names, the text tower in OpenAI's names with a biased ``text_projection`` layer);
- Hugging Face transformers (``CLIPModel.save_pretrained``: a folder with ``config.json`` and ``model.safetensors`` or
  ``pytorch_model.bin``, possibly sharded; ``vision_model.encoder.layers.0.self_attn.q_proj.weight``): the format of
  ``openai/clip-vit-base-patch16`` and most CLIP fine-tunes on the hub. The activation comes from its ``config.json``
  and the mean, std and size from its ``preprocessor_config.json`` (``transformers_config``).

Checkpoints wrapped as ``{"state_dict": ...}`` or ``{"model": ...}`` and ``module.`` prefixes are unwrapped.
Every file is opened with ``weights_only=True`` or safetensors; nothing is unpickled freely.
"""

from __future__ import annotations

import json
import logging
import os
import warnings
from pathlib import Path

import torch
from torch import Tensor

from lit_i2v.backbones.folder_tokenizer import has_tokenizer
from lit_i2v.backbones.registry import PRETRAINED, PretrainedCfg
from lit_i2v.backbones.torchscript import is_torchscript, read_torchscript_state_dict
from lit_i2v.backbones.vit import resample_pos_embed

log = logging.getLogger(__name__)

# OpenAI / open_clip block names → timm names, applied in order to keys inside a transformer.
_BLOCK_SWAPS = [
    ("transformer.resblocks.", "blocks."),
    (".ln_1.", ".norm1."),
    (".ln_2.", ".norm2."),
    (".attn.in_proj_weight", ".attn.qkv.weight"),
    (".attn.in_proj_bias", ".attn.qkv.bias"),
    (".attn.out_proj.", ".attn.proj."),
    (".mlp.c_fc.", ".mlp.fc1."),
    (".mlp.c_proj.", ".mlp.fc2."),
]
# lit_i2v image-tower names whose OpenAI names are not a block rename.
_VISUAL_TO_OPENAI = {
    "patch_embed.proj.weight": "conv1.weight",
    "norm_pre.weight": "ln_pre.weight",
    "norm_pre.bias": "ln_pre.bias",
    "norm.weight": "ln_post.weight",
    "norm.bias": "ln_post.bias",
}
# Keys OpenAI's archives carry that are not parameters.
_OPENAI_EXTRAS = {"input_resolution", "context_length", "vocab_size", "attn_mask"}


class WeightsError(RuntimeError):
    """A weights file that cannot be read or does not fit the architecture; the message names the file and keys."""


TRANSFORMERS_FILES = ("model.safetensors", "pytorch_model.bin")
OPEN_CLIP_FILES = ("open_clip_model.safetensors", "open_clip_pytorch_model.bin")  # open_clip's hub layout
TRANSFORMERS_INDEXES = ("model.safetensors.index.json", "pytorch_model.bin.index.json")


def transformers_weights(folder: Path) -> list[Path]:
    """The weight files of a transformers ``save_pretrained`` folder: one file, or the shards its index names."""
    for index in TRANSFORMERS_INDEXES:
        if (folder / index).is_file():
            shards = sorted(set(json.loads((folder / index).read_text())["weight_map"].values()))
            return [folder / shard for shard in shards]
    for name in (*TRANSFORMERS_FILES, *OPEN_CLIP_FILES):
        if (folder / name).is_file():
            return [folder / name]
    raise WeightsError(
        f"{folder}: a folder, but no {' or '.join(TRANSFORMERS_FILES + OPEN_CLIP_FILES)} (or a sharded index) in "
        "it: give the weights file, a transformers save_pretrained folder or an open_clip hub folder"
    )


def transformers_config(folder: str | Path) -> dict | None:
    """What a transformers CLIP folder says about its model: ``act`` (``quick_gelu`` for OpenAI's), and from
    ``preprocessor_config.json`` when present ``mean``, ``std`` and ``image_size``. None for anything else."""
    folder = Path(folder)
    if not (folder.is_dir() and (folder / "config.json").is_file()):
        return None
    config = json.loads((folder / "config.json").read_text())
    default = "gelu_pytorch_tanh" if str(config.get("model_type", "")).startswith("siglip") else "quick_gelu"
    acts = {config.get(tower, {}).get("hidden_act", default) for tower in ("vision_config", "text_config")}
    names = {"quick_gelu": "quick_gelu", "gelu": "gelu", "gelu_pytorch_tanh": "gelu_tanh"}
    if len(acts) != 1 or not acts <= names.keys():
        raise WeightsError(f"{folder}/config.json: hidden_act {sorted(acts)}; lit_i2v's towers share one of "
                           f"{', '.join(names)}")  # fmt: skip
    out = {"act": names[acts.pop()]}
    pre = folder / "preprocessor_config.json"
    if pre.is_file():
        cfg = json.loads(pre.read_text())
        if "image_mean" in cfg and "image_std" in cfg:
            out.update(mean=tuple(cfg["image_mean"]), std=tuple(cfg["image_std"]))
        size = cfg.get("crop_size") or cfg.get("size")
        size = size.get("height", size.get("shortest_edge")) if isinstance(size, dict) else size
        if size:
            out["image_size"] = int(size)
    return out


def read_checkpoint(path: str | Path) -> dict[str, Tensor]:
    """A flat ``{name: tensor}`` from a ``.pt``/``.pth``/``.bin`` (pickle or TorchScript) or ``.safetensors`` file,
    or from a transformers ``save_pretrained`` folder (its shards merged)."""
    path = Path(path)
    if path.is_dir():
        return {k: v for file in transformers_weights(path) for k, v in read_checkpoint(file).items()}
    if not path.is_file():
        raise FileNotFoundError(f"weights file not found: {path}")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            return load_file(str(path))
        except Exception as err:  # SafetensorError: a truncated download, or another format under this name
            raise WeightsError(f"{path}: not a readable safetensors file ({err})") from err
    if is_torchscript(path):
        return read_torchscript_state_dict(path)
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # a corrupt file or a pickle with arbitrary objects
        raise WeightsError(f"{path}: cannot be read as a state dict with weights_only=True ({err})") from err
    for key in ("state_dict", "model", "module"):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
    if not isinstance(obj, dict) or not all(isinstance(v, Tensor) for v in obj.values()):
        raise WeightsError(f"{path}: expected a dict of tensors, found {type(obj).__name__}")
    return {k.removeprefix("module."): v for k, v in obj.items()}


def detect_format(state: dict[str, Tensor]) -> str:
    """``"openai"`` (also open_clip), ``"timm"`` (image tower only), ``"transformers"`` or ``"lit_i2v"``."""
    if "vision_model.embeddings.class_embedding" in state or "text_model.embeddings.token_embedding.weight" in state:
        return "transformers"
    if "visual.trunk.blocks.0.attn.qkv.weight" in state:
        return "open_clip_timm"  # open_clip with a timm image tower (its SigLIP models)
    if "visual.transformer.resblocks.0.attn.in_proj_weight" in state or "visual.class_embedding" in state:
        return "openai"
    if "visual.blocks.0.attn.qkv.weight" in state:
        return "lit_i2v"
    if "blocks.0.attn.qkv.weight" in state and ("cls_token" in state or "attn_pool.latent" in state):
        return "timm"  # a CLIP ViT, or a SigLIP one (no class token, attention pooling)
    raise WeightsError(
        "unrecognised checkpoint layout: expected OpenAI/open_clip names (visual.class_embedding, ...), timm ViT "
        "names (blocks.0.attn.qkv.weight, ...), transformers names (vision_model.embeddings.class_embedding, ...) or "
        f"lit_i2v names; the first keys are {list(state)[:5]}"
    )


def _swap_blocks(key: str) -> str:
    for old, new in _BLOCK_SWAPS:
        key = key.replace(old, new)
    return key


def convert_openai(state: dict[str, Tensor]) -> dict[str, Tensor]:
    """OpenAI / open_clip names → lit_i2v names (both towers)."""
    out = {}
    for key, value in state.items():
        if key in _OPENAI_EXTRAS or key.endswith("attn_mask"):
            continue
        if key.startswith("visual."):
            k = _swap_blocks(key.removeprefix("visual."))
            if k == "conv1.weight":
                k = "patch_embed.proj.weight"
            elif k == "class_embedding":
                k, value = "cls_token", value.reshape(1, 1, -1)
            elif k == "positional_embedding":
                k, value = "pos_embed", value.unsqueeze(0)
            elif k == "proj":
                k, value = "head.weight", value.t()
            k = k.replace("ln_pre.", "norm_pre.").replace("ln_post.", "norm.")
            out["visual." + k] = value
        elif key == "logit_scale":
            out[key] = value
        else:
            k = _swap_blocks(key)
            if k == "positional_embedding":
                k, value = "pos_embed", value.unsqueeze(0)
            elif k == "text_projection":
                k, value = "head.weight", value.t()
            k = k.replace("ln_final.", "norm.")
            out["text." + k] = value
    return out


def to_openai(state: dict[str, Tensor]) -> dict[str, Tensor]:
    """lit_i2v names → OpenAI / open_clip names: the inverse of :func:`convert_openai`, to save in that format."""
    out = {}
    for key, value in state.items():
        tower, _, k = key.partition(".")
        if key == "logit_scale":
            out[key] = value
            continue
        for old, new in reversed(_BLOCK_SWAPS):
            k = k.replace(new, old)
        if tower == "visual":
            k = _VISUAL_TO_OPENAI.get(k, k)
            if k == "cls_token":
                k, value = "class_embedding", value.reshape(-1)
            elif k == "pos_embed":
                k, value = "positional_embedding", value.squeeze(0)
            elif k == "head.weight":
                k, value = "proj", value.t()
            out["visual." + k] = value
        elif tower == "text":
            k = {"norm.weight": "ln_final.weight", "norm.bias": "ln_final.bias"}.get(k, k)
            if k == "pos_embed":
                k, value = "positional_embedding", value.squeeze(0)
            elif k == "head.weight":
                k, value = "text_projection", value.t()
            out[k] = value
        else:
            raise WeightsError(f"{key}: not a CLIP parameter; merge or drop strategy parameters before exporting")
    return {k: v.contiguous() for k, v in out.items()}


# transformers CLIP names → lit_i2v names, inside a tower (``vision_model.``/``text_model.`` removed).
_TRANSFORMERS_SWAPS = [
    ("encoder.layers.", "blocks."),
    (".layer_norm1.", ".norm1."),
    (".layer_norm2.", ".norm2."),
    (".self_attn.out_proj.", ".attn.proj."),
]
_TRANSFORMERS_NAMES = {
    "embeddings.class_embedding": "cls_token",
    "embeddings.patch_embedding.weight": "patch_embed.proj.weight",
    "embeddings.patch_embedding.bias": "patch_embed.proj.bias",  # SigLIP
    "embeddings.position_embedding.weight": "pos_embed",
    "pre_layrnorm.weight": "norm_pre.weight",  # sic: transformers' name
    "pre_layrnorm.bias": "norm_pre.bias",
    "post_layernorm.weight": "norm.weight",
    "post_layernorm.bias": "norm.bias",
    "embeddings.token_embedding.weight": "token_embedding.weight",
    "final_layer_norm.weight": "norm.weight",
    "final_layer_norm.bias": "norm.bias",
}


def convert_transformers(state: dict[str, Tensor]) -> dict[str, Tensor]:
    """transformers ``CLIPModel`` / ``SiglipModel`` names → lit_i2v names: q, k and v projections concatenated into
    ``attn.qkv`` (timm's order), projections as ``head``, SigLIP's attention-pooling head (``vision_model.head``) as
    ``attn_pool`` (timm's ``AttentionPoolLatent`` names); ``position_ids`` buffers of older saves dropped."""
    out: dict[str, Tensor] = {}
    qkv: dict[str, dict[str, Tensor]] = {}
    for key, value in state.items():
        if key.endswith("position_ids"):
            continue
        if key in ("logit_scale", "logit_bias"):
            out[key] = value.reshape(())  # SigLIP keeps them as (1,)
            continue
        if key.startswith("vision_model.head."):  # SigLIP's MAP head
            k = key.removeprefix("vision_model.head.")
            if k.startswith("attention.in_proj_"):  # (3D, ...): the query's rows, then key and value
                kind = k.removeprefix("attention.in_proj_")
                width = value.shape[0] // 3
                out[f"visual.attn_pool.q.{kind}"], out[f"visual.attn_pool.kv.{kind}"] = value[:width], value[width:]
                continue
            k = {"probe": "latent"}.get(k, k)
            k = k.replace("attention.out_proj.", "proj.").replace("layernorm.", "norm.")
            out[f"visual.attn_pool.{k}"] = value.reshape(1, 1, -1) if k == "latent" else value
            continue
        if key.startswith("text_model.head."):  # SigLIP's text projection, with a bias
            out[key.replace("text_model.", "text.", 1)] = value
            continue
        if key in ("visual_projection.weight", "text_projection.weight"):
            out[("visual" if key.startswith("visual") else "text") + ".head.weight"] = value
            continue
        prefix, _, k = key.partition(".")
        tower = {"vision_model": "visual", "text_model": "text"}.get(prefix)
        if tower is None:
            raise WeightsError(f"{key}: not a transformers CLIPModel parameter")
        if k in _TRANSFORMERS_NAMES:
            k = _TRANSFORMERS_NAMES[k]
            if k == "cls_token":
                value = value.reshape(1, 1, -1)
            elif k == "pos_embed":
                value = value.unsqueeze(0)
        else:
            for old, new in _TRANSFORMERS_SWAPS:
                k = k.replace(old, new)
            for part in ("q", "k", "v"):
                marker = f".self_attn.{part}_proj."
                if marker in k:  # blocks.0.self_attn.q_proj.weight -> blocks.0.attn.qkv.weight, part q
                    block, _, kind = k.partition(marker)
                    qkv.setdefault(f"{tower}.{block}.attn.qkv.{kind}", {})[part] = value
                    break
            else:
                out[f"{tower}.{k}"] = value
            continue
        out[f"{tower}.{k}"] = value
    for key, parts in qkv.items():
        if set(parts) != {"q", "k", "v"}:
            raise WeightsError(f"{key}: the checkpoint lacks the {sorted({'q', 'k', 'v'} - set(parts))} projection")
        out[key] = torch.cat([parts["q"], parts["k"], parts["v"]])
    return out


def convert_open_clip_timm(state: dict[str, Tensor]) -> dict[str, Tensor]:
    """open_clip's CustomTextCLIP with a timm trunk (SigLIP) → lit_i2v names: the trunk's names are ours already; the
    text tower converts as OpenAI's, its projection being a linear layer with a bias."""
    out: dict[str, Tensor] = {}
    text: dict[str, Tensor] = {}
    for key, value in state.items():
        if key in ("logit_scale", "logit_bias"):
            out[key] = value.reshape(())
        elif key.startswith("visual.trunk."):
            out["visual." + key.removeprefix("visual.trunk.")] = value
        elif key.startswith("text.text_projection."):
            out["text.head." + key.removeprefix("text.text_projection.")] = value
        elif key.startswith("text."):
            text[key.removeprefix("text.")] = value
        else:
            raise WeightsError(f"{key}: not a parameter of open_clip's timm-tower models")
    return out | convert_openai(text)


def to_open_clip_timm(state: dict[str, Tensor]) -> dict[str, Tensor]:
    """lit_i2v names → open_clip's timm-trunk names (its SigLIP models): the inverse of :func:`convert_open_clip_timm`,
    to save ``open_clip_model.safetensors``."""
    out: dict[str, Tensor] = {}
    text: dict[str, Tensor] = {}
    for key, value in state.items():
        if key in ("logit_scale", "logit_bias"):
            out[key] = value
        elif key.startswith("visual."):
            out["visual.trunk." + key.removeprefix("visual.")] = value
        elif key.startswith("text.head."):
            out["text.text_projection." + key.removeprefix("text.head.")] = value
        elif key.startswith("text."):
            text[key] = value
        else:
            raise WeightsError(f"{key}: not a CLIP parameter; merge or drop strategy parameters before exporting")
    return out | {f"text.{k}": v for k, v in to_openai(text).items()}


def convert_timm(state: dict[str, Tensor]) -> dict[str, Tensor]:
    """A timm CLIP ViT state dict → lit_i2v ``visual.*`` names. timm keeps a zero ``head.bias`` that CLIP lacks."""
    state = dict(state)
    bias = state.pop("head.bias", None)
    if bias is not None and bias.abs().max() > 0:
        raise WeightsError("the timm checkpoint has a non-zero head.bias: it is a classifier, not a CLIP projection")
    return {"visual." + k: v for k, v in state.items()}


def to_lit_i2v(state: dict[str, Tensor]) -> dict[str, Tensor]:
    fmt = detect_format(state)
    converters = {"openai": convert_openai, "timm": convert_timm, "transformers": convert_transformers,
                  "open_clip_timm": convert_open_clip_timm, "lit_i2v": dict}  # fmt: skip
    return converters[fmt](state)


def load_clip_weights(model: torch.nn.Module, state: dict[str, Tensor], source: str = "checkpoint") -> frozenset[str]:
    """Load converted weights strictly; a timm file (image tower only) leaves the text tower as initialised.

    A position embedding made for another grid is resampled bicubically, with a warning. Returns the names that
    were loaded: what the task treats as pretrained (its new-module learning rate goes to everything else).
    """
    state = to_lit_i2v(state)
    own = model.state_dict()
    key = "visual.pos_embed"
    if key in state and state[key].shape != own[key].shape:
        log.warning("%s: resampling %s from %s to %s", source, key, tuple(state[key].shape), tuple(own[key].shape))
        state[key] = resample_pos_embed(state[key], model.visual.grid_size, model.visual.num_prefix_tokens)
    vision_only = not any(k.startswith("text.") for k in state)
    expected = {k for k in own if not (vision_only and (k.startswith("text.") or k.startswith("logit_")))}
    missing = sorted(expected - state.keys())
    unexpected = sorted(state.keys() - own.keys())
    wrong = sorted(k for k in expected & state.keys() if state[k].shape != own[k].shape)
    if missing or unexpected or wrong:
        lines = [f"{source} does not fit this architecture:"]
        if missing:
            lines.append(f"  missing ({len(missing)}): {', '.join(missing[:8])}")
        if unexpected:
            lines.append(f"  unexpected ({len(unexpected)}): {', '.join(unexpected[:8])}")
        for k in wrong[:8]:
            lines.append(f"  shape of {k}: file {tuple(state[k].shape)} vs model {tuple(own[k].shape)}")
        raise WeightsError("\n".join(lines))
    if vision_only:
        log.warning("%s holds the image tower only; the text tower keeps its random initialisation", source)
    load_state(model, state, strict=False)
    return frozenset(state)


def load_state(module: torch.nn.Module, state: dict[str, Tensor], strict: bool) -> None:
    """``module.load_state_dict``. A module on the meta device (``summary`` builds models of shapes only) keeps no
    values, so nothing is copied, which PyTorch would otherwise warn about once for every tensor."""
    with warnings.catch_warnings():
        if any(p.is_meta for p in module.parameters()):
            warnings.filterwarnings("ignore", "for .*: copying from a non-meta parameter", UserWarning)
        module.load_state_dict(state, strict=strict)


def cache_dir() -> Path:
    return Path(os.environ.get("LIT_I2V_CACHE", Path.home() / ".cache" / "lit_i2v"))


def resolve_pretrained(arch: str, pretrained: str) -> tuple[dict[str, Tensor], str, PretrainedCfg | None]:
    """Find and read weights named by a path, a tag of ``arch`` (``openai``) or ``hf-hub:org/repo``.

    Returns the raw state dict, a description of its source, and the tag's config (None for a plain path).
    """
    if os.path.exists(pretrained) or "/" in pretrained or pretrained.endswith((".pt", ".bin", ".safetensors")):
        if pretrained.startswith("hf-hub:"):
            path = _hub_weights(pretrained.removeprefix("hf-hub:"))
            return read_checkpoint(path), pretrained, _folder_cfg(path)
        if not os.path.exists(pretrained):
            tags = [k.removeprefix(arch + ".") for k in PRETRAINED if k.startswith(arch + ".")]
            raise FileNotFoundError(
                f"pretrained: weights file {pretrained} does not exist; give a file's path, a tag of {arch} "
                f"({', '.join(tags) or 'none known'}), or hf-hub:org/repo"
            )
        return read_checkpoint(pretrained), pretrained, _folder_cfg(Path(pretrained))
    name = f"{arch}.{pretrained}"
    if name not in PRETRAINED:
        known = [k for k in PRETRAINED if k.startswith(arch + ".")]
        raise WeightsError(
            f"no pretrained weights {name!r}; known tags for {arch}: {known or 'none'}; or give a path to a file"
        )
    cfg = PRETRAINED[name]
    local = cached_path(name)
    if not local.exists() and cfg.make:
        _make_locally(cfg.make, arch, local)
    if local.exists():
        return read_checkpoint(local), str(local), (_folder_cfg(local) or cfg) if cfg.folder else cfg
    if not (cfg.url or cfg.hf_hub):
        raise WeightsError(f"{name} is made locally and is not at {local} yet: run `{cfg.notes}` first")
    errors = []
    if cfg.url:
        try:
            local.parent.mkdir(parents=True, exist_ok=True)
            torch.hub.download_url_to_file(cfg.url, str(local), progress=True)
            return read_checkpoint(local), cfg.url, cfg
        except Exception as err:  # offline, or the address moved
            errors.append(f"{cfg.url}: {err}")
    if cfg.hf_hub:
        try:
            if cfg.folder:  # the weights with their preprocessing and tokenizer, into the Hugging Face cache
                path = _hub_weights(cfg.hf_hub)
                return read_checkpoint(path), f"hf-hub:{cfg.hf_hub}", _folder_cfg(path) or cfg
            return _from_hub(cfg.hf_hub, cfg.hf_filename), f"hf-hub:{cfg.hf_hub}", cfg
        except Exception as err:
            errors.append(f"hf-hub:{cfg.hf_hub}: {' '.join(str(err).split()).rstrip('.')}")
    what = "the folder (weights, open_clip_config.json, tokenizer)" if cfg.folder else "the file"
    raise WeightsError(
        f"could not obtain {name}: " + "; ".join(errors) + f". Offline, place {what} at {local} or pass its path "
        "as `pretrained`."
    )


def cached_path(name: str) -> Path:
    """Where the weights tagged ``arch.tag`` live in the cache: ``<name>.pt``, or the folder ``<name>``."""
    return cache_dir() / (name if PRETRAINED[name].folder else f"{name}.pt")


def _make_locally(maker: str, arch: str, path: Path) -> Path:
    """Make the weights into ``path`` (a file or a folder) once with ``maker`` ("module:function"); concurrent
    processes (DDP ranks) wait for the first."""
    import fcntl
    import importlib

    module, _, function = maker.partition(":")
    make = getattr(importlib.import_module(module), function)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(path.name + ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes, also if this process dies
        if not path.exists():
            log.warning("%s is not in the cache yet: training it once (a few CPU minutes) into %s", path.stem, path)
            _, figures = make(arch, out=path)
            log.warning("%s ready: %s", path.stem, figures)
    return path


def _folder_cfg(path: Path) -> PretrainedCfg | None:
    """What the files beside the weights say, as a ``PretrainedCfg``: a transformers folder's activation and
    preprocessing, or open_clip's ``open_clip_config.json`` mean and std; and a tokenizer there (None when
    the weights come alone). A file counts as part of its folder only under a layout's own name
    (``open_clip_model.safetensors``, ``model.safetensors``...): any other file beside a stray config is alone."""
    if not path.is_dir() and path.name not in (*TRANSFORMERS_FILES, *OPEN_CLIP_FILES):
        return None
    folder = path if path.is_dir() else path.parent
    found = transformers_config(folder) or {}
    if (folder / "open_clip_config.json").is_file():
        preprocess = json.loads((folder / "open_clip_config.json").read_text()).get("preprocess_cfg", {})
        if "mean" in preprocess and "std" in preprocess:
            found.update(mean=tuple(preprocess["mean"]), std=tuple(preprocess["std"]))
    extra = ({"act": found["act"]} if "act" in found else {}) | (
        {"tokenizer": str(folder)} if has_tokenizer(folder) else {})  # fmt: skip
    if not found and not extra:
        return None
    return PretrainedCfg(mean=found.get("mean"), std=found.get("std"), extra=extra)


def _hub_weights(repo: str) -> Path:
    """``hf-hub:org/repo``: open_clip's file where the repository has one, else its transformers folder (the
    ``openai/clip-vit-*`` repositories), downloaded into the Hugging Face cache."""
    from huggingface_hub import HfApi, hf_hub_download, snapshot_download

    try:
        files = set(HfApi().list_repo_files(repo))
    except Exception as err:  # offline (HF_HUB_OFFLINE, no network): what an earlier download left in the cache
        try:
            folder = Path(snapshot_download(repo, local_files_only=True))
        except Exception:
            raise err from None  # nothing cached: the hub's own reason (offline, gated, not found)
        return next((folder / n for n in OPEN_CLIP_FILES if (folder / n).is_file()), folder)
    for name in OPEN_CLIP_FILES:
        if name in files:
            for extra in (
                "open_clip_config.json",
                "tokenizer.json",
                "spiece.model",
                "tokenizer_config.json",
                "special_tokens_map.json",
            ):
                if extra in files:
                    hf_hub_download(repo, extra)  # beside the weights in the snapshot folder
            return Path(hf_hub_download(repo, name))
    weights = "model.safetensors" if any(f.startswith("model") and f.endswith(".safetensors") for f in files) else (
        "pytorch_model.bin")  # fmt: skip
    wanted = ["config.json", "preprocessor_config.json", f"{weights}*", f"{weights.split('.')[0]}-*", "tokenizer.json",
              "spiece.model", "tokenizer_config.json", "special_tokens_map.json"]  # fmt: skip
    return Path(snapshot_download(repo, allow_patterns=wanted))


def _from_hub(repo: str, filename: str) -> dict[str, Tensor]:
    from huggingface_hub import hf_hub_download

    return read_checkpoint(hf_hub_download(repo, filename))


def is_available(arch: str, pretrained: str) -> bool:
    """Whether ``pretrained`` can be loaded without a download: an existing file or a cached tag."""
    if os.path.exists(pretrained):
        return True
    name = f"{arch}.{pretrained}"
    return name in PRETRAINED and cached_path(name).exists()
