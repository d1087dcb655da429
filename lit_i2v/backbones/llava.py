"""Multimodal LLMs of the LLaVA family as the image-language model: a llava-hf folder, its vision tower in lit_i2v.

Liu et al., *Visual Instruction Tuning* (NeurIPS 2023) and *Improved Baselines with Visual Instruction Tuning*
(LLaVA-1.5, CVPR 2024); LLaVA-NeXT and LLaVA-NeXT-Video (2024). Reference implementation: transformers'
``LlavaForConditionalGeneration`` (``llava``), ``LlavaNextForConditionalGeneration`` (``llava_next``) and
``LlavaNextVideoForConditionalGeneration`` (``llava_next_video``), whose folders (``llava-hf/*``) this reads.

A llava-hf folder (``config.json``, sharded safetensors, tokenizer, chat template) is loaded by transformers itself,
so both its key layouts load (the one before transformers 4.52, ``language_model.model.*``, and the current
``model.language_model.*``). Then the vision tower moves into lit_i2v's :class:`VisionTransformer`, so that every
vision-side strategy (ST-Adapter, AIM, LoRA, MoMa, ...) adapts it as it adapts CLIP's, while the projector and the
LLM stay transformers' modules (``mllm``: the model without its vision tower).

LLaVA reads the vision tower's hidden state at ``vision_feature_layer`` (-2: the penultimate block's output, before
any final norm) and, with the ``default`` strategy, drops the class token. The tower here is built with exactly the
blocks that state needs and no final norm, so its last block's patch tokens, which every strategy hands over, are
LLaVA's image features. The blocks after it and ``post_layernorm``, which transformers builds and runs but LLaVA never
reads, are not built: ``dropped_params`` counts them, and ``params + dropped_params`` equals transformers' count.

LLaVA-OneVision (``llava_onevision``: a SigLIP tower, feature layer -1, all tokens) maps its tower the same way, as
lit_i2v's SigLIP (no class token); its video pooling is ``lit_i2v.heads.frame_tokens.OneVisionPool``. Needs the
``[mllm]`` extra (transformers). LLaVA-NeXT's any-resolution image tiling does not concern video frames.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from torch import Tensor, nn

from lit_i2v.backbones.vit import VisionTransformer
from lit_i2v.backbones.weights import WeightsError, convert_transformers, load_state

log = logging.getLogger(__name__)

MODEL_TYPES = ("llava", "llava_next", "llava_next_video", "llava_onevision")
TOWERS = ("clip_vision_model", "siglip_vision_model")
_ACTS = {"quick_gelu": "quick_gelu", "gelu": "gelu", "gelu_pytorch_tanh": "gelu_tanh"}


def read_config(folder: Path) -> dict:
    """``config.json`` of a llava-hf folder, checked: one line naming the file for anything this cannot load."""
    import json

    path = folder / "config.json"
    if not path.is_file():
        raise WeightsError(
            f"{folder}: no config.json: not a llava-hf folder (download one, e.g. llava-hf/llava-1.5-7b-hf, with "
            "`huggingface-cli download <repo> --local-dir <folder>`)"
        )
    config = json.loads(path.read_text())
    model_type = config.get("model_type")
    if model_type not in MODEL_TYPES:
        raise WeightsError(f"{path}: model_type {model_type!r}; lit_i2v reads {', '.join(MODEL_TYPES)}")
    vision = config.setdefault("vision_config", {})
    vision.setdefault("model_type", "siglip_vision_model" if model_type == "llava_onevision" else "clip_vision_model")
    if vision["model_type"] not in TOWERS:
        raise WeightsError(f"{path}: vision_config.model_type {vision['model_type']!r}; {' or '.join(TOWERS)} expected")
    layer = config.get("vision_feature_layer", -2)
    if not isinstance(layer, int):
        raise WeightsError(f"{path}: vision_feature_layer {layer}: several feature layers are not supported yet")
    return config


def vision_tower(config: dict) -> tuple[VisionTransformer, int]:
    """lit_i2v's tower for the config's CLIP or SigLIP vision tower, cut after ``vision_feature_layer``; and the number
    of transformers' blocks it keeps."""
    v = config["vision_config"]
    siglip = v["model_type"] == "siglip_vision_model"
    layers = v.get("num_hidden_layers", 24)
    feature_layer = config.get("vision_feature_layer", -2)
    keep = feature_layer % (layers + 1)  # hidden_states[k] is the output of k blocks; [0] is the embeddings
    if keep == 0:
        raise WeightsError(f"vision_feature_layer {feature_layer}: the embeddings, before any block, are not supported")
    width = v.get("hidden_size", 1024)
    act = v.get("hidden_act", "gelu_pytorch_tanh" if siglip else "quick_gelu")
    if act not in _ACTS:
        raise WeightsError(f"vision_config.hidden_act {act!r}: one of {', '.join(_ACTS)} expected")
    tower = VisionTransformer(
        image_size=v.get("image_size", 336), patch_size=v.get("patch_size", 14), width=width, layers=keep,
        heads=v.get("num_attention_heads", 16), mlp_ratio=v.get("intermediate_size", 4 * width) / width,
        act=_ACTS[act], eps=v.get("layer_norm_eps", 1e-6 if siglip else 1e-5), project=False,
        # SigLIP: no class token, a bias in the patch embedding, no norm before the blocks; its pooling head, which
        # LLaVA does not read, is dropped, and a strategy's per-frame feature is the mean of the patch tokens
        class_token=not siglip, patch_bias=siglip, pre_norm=not siglip, pool="avg" if siglip else "token",
    )  # fmt: skip
    tower.norm = nn.Identity()  # LLaVA reads the block's output itself (transformers' post_layernorm is not read)
    return tower, keep


class LLaVA(nn.Module):
    """A LLaVA-family model: lit_i2v's vision tower (``visual``) and transformers' projector and LLM (``mllm``).

    Args:
        pretrained: a llava-hf folder (``config.json`` with ``model_type`` llava, llava_next, llava_next_video or
            llava_onevision),
            ``hf-hub:llava-hf/<name>`` (the Hugging Face cache, downloading what is missing when online), or
            ``synthetic``: the synthetic-pretrained tiny CLIP as vision tower and a tiny Llama, written in llava-hf's
            layout into lit_i2v's cache on first use (``lit_i2v.backbones.llava_tiny``).
        dtype: the parameters' dtype (``bfloat16`` for 7B models on GPUs; ``float32`` on CPU).
        grad_checkpointing: recompute the LLM's layers (transformers' gradient checkpointing) and the vision
            tower's blocks in backward.
    """

    def __init__(self, pretrained: str, dtype: str = "float32", grad_checkpointing: bool = False) -> None:
        super().__init__()
        try:
            from transformers import AutoModelForImageTextToText, AutoTokenizer
        except ImportError as err:
            raise ImportError("LLaVA backbones need transformers: pip install 'lit_i2v[mllm]'") from err
        if pretrained == "synthetic":  # the synthetic-pretrained tiny CLIP as tower, a tiny LLM: made on first use
            from lit_i2v.backbones.llava_tiny import synthetic_llava

            pretrained = str(synthetic_llava())
        folder = hub_folder(pretrained.removeprefix("hf-hub:")) if pretrained.startswith("hf-hub:") else (
            Path(pretrained).expanduser())  # fmt: skip
        config = read_config(folder)
        self.arch = f"{config['model_type']}:{folder.name}"
        torch_dtype = getattr(torch, dtype, None)
        if not isinstance(torch_dtype, torch.dtype):
            raise ValueError(f"dtype {dtype!r}: float32, bfloat16 or float16")
        if torch.empty(0).is_meta:  # ``summary``: shapes only, from config.json (a 7B model in a second, no weights)
            from transformers import AutoConfig

            full = AutoModelForImageTextToText.from_config(AutoConfig.from_pretrained(folder), dtype=torch_dtype)
        else:
            try:
                full, info = AutoModelForImageTextToText.from_pretrained(
                    folder, dtype=torch_dtype, output_loading_info=True
                )
            except OSError as err:  # no weight files, a truncated shard: transformers' own words, on one line
                raise WeightsError(f"{folder}: {' '.join(str(err).split())}") from None
            missing, unexpected = sorted(info["missing_keys"]), sorted(info["unexpected_keys"])
            if missing or unexpected:  # transformers would initialise the missing ones at random, with a warning
                raise WeightsError(
                    f"{folder}: the weights do not fit {config['model_type']}'s config: missing {missing[:4]} "
                    f"({len(missing)}), unexpected {unexpected[:4]} ({len(unexpected)})"
                )
        hf_tower = full.model.vision_tower
        config = full.config.to_dict()  # every default filled in, as transformers runs the model
        config["vision_config"].setdefault("model_type", read_config(folder)["vision_config"]["model_type"])
        self.visual, keep = vision_tower(config)
        state = {f"vision_model.{k.removeprefix('vision_model.')}": v for k, v in hf_tower.state_dict().items()}
        converted = {k.removeprefix("visual."): v for k, v in convert_transformers(state).items()}
        kept = {k: v for k, v in converted.items() if not _dropped(k, keep)}
        load_state(self.visual, kept, strict=True)
        self.visual.to(torch_dtype)
        self.dropped_params = sum(v.numel() for k, v in converted.items() if _dropped(k, keep))
        del full.model.vision_tower  # never run: the projector reads lit_i2v's tower
        self.mllm = full
        self.tokenizer = AutoTokenizer.from_pretrained(folder)
        self.image_token_id = full.config.image_token_id
        self.video_token_id = getattr(full.config, "video_token_id", None)
        default = "full" if config["model_type"] == "llava_onevision" else "default"
        self.select_strategy = config.get("vision_feature_select_strategy", default)
        if self.select_strategy not in ("default", "full"):
            raise WeightsError(f"{folder / 'config.json'}: vision_feature_select_strategy {self.select_strategy!r}")
        self.visual.set_grad_checkpointing(grad_checkpointing)
        if grad_checkpointing:
            self.mllm.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        processor = _processor_config(folder)
        self.pretrained_cfg = {
            "source": str(folder),
            "mean": tuple(processor.get("image_mean", (0.48145466, 0.4578275, 0.40821073))),
            "std": tuple(processor.get("image_std", (0.26862954, 0.26130258, 0.27577711))),
            "image_size": self.visual.image_size,
        }
        self.pretrained_names = frozenset(n for n, _ in self.named_parameters())
        self.train()  # as any module is built (transformers returns its models in eval mode)

    # ---- the CLIP-like surface strategies use ------------------------------------------------------------------

    @property
    def embed_dim(self) -> int:
        return self.visual.width

    @property
    def projector(self) -> nn.Module:
        return self.mllm.model.multi_modal_projector

    @property
    def language_model(self) -> nn.Module:
        return self.mllm.model.language_model

    def encode_video(self, video: Tensor, project: bool = False) -> Tensor:
        """Clips ``(B, T, 3, H, W)`` → per-frame class tokens of the feature layer ``(B, T, D)`` (what a strategy's
        ``forward`` returns; LLaVA itself reads the patch tokens: ``visual_features``)."""
        return self.visual.forward_video(video, project=False)

    def visual_features(self, tokens: Tensor) -> Tensor:
        """The feature layer's patch tokens ``(B, T, N, D)`` as LLaVA selects them. ``default`` drops the first
        token: the class token, which strategies have dropped already, or, on a tower without one (SigLIP),
        transformers drops the first patch, and so does this, to give the checkpoint what it saw. ``full`` with a
        class token would keep it, which strategies do not hand over: refused."""
        if self.select_strategy == "full" and self.visual.num_prefix_tokens:
            raise NotImplementedError("vision_feature_select_strategy 'full' with a class token is not supported")
        if self.select_strategy == "default" and not self.visual.num_prefix_tokens:
            return tokens[:, :, 1:]
        return tokens

    @property
    def image_newline(self) -> Tensor | None:
        """LLaVA-NeXT's and OneVision's learned newline embedding ``(E,)`` (OneVision ends a video's tokens with
        it), or None."""
        return getattr(self.mllm.model, "image_newline", None)

    def project(self, features: Tensor) -> Tensor:
        """Vision features ``(..., D)`` → the LLM's input embeddings ``(..., E)`` through the checkpoint's projector."""
        return self.projector(features.to(self.projector.linear_1.weight.dtype))

    def embed_text(self, input_ids: Tensor) -> Tensor:
        return self.mllm.get_input_embeddings()(input_ids)

    def splice(self, input_ids: Tensor, visual: Tensor) -> Tensor:
        """The prompt's embeddings with the visual tokens at its image placeholders, in order: ``input_ids (B, L)``
        with ``M`` placeholders each, ``visual (B, M, E)`` → ``(B, L, E)`` (transformers' ``masked_scatter``)."""
        embeds = self.embed_text(input_ids)
        mask = input_ids == self.image_token_id
        counts = mask.sum(1)
        if (counts != visual.shape[1]).any():
            raise ValueError(
                f"the prompts hold {counts.tolist()} image placeholders for {visual.shape[1]} visual tokens each"
            )
        return embeds.masked_scatter(mask[..., None].expand_as(embeds), visual.to(embeds.dtype))

    def forward(self, inputs_embeds: Tensor, attention_mask: Tensor | None = None) -> Tensor:
        """The LLM on spliced embeddings → logits ``(B, L, vocab)``."""
        return self.lm_head(self.hidden(inputs_embeds, attention_mask))

    def hidden(self, inputs_embeds: Tensor, attention_mask: Tensor | None = None) -> Tensor:
        """The LLM's last hidden states ``(B, L, H)`` (no key-value cache kept): losses and likelihoods apply
        ``lm_head`` at the few positions they read, not to the vocabulary at every position."""
        if attention_mask is None:  # a prefill without padding (``summary``, on the meta device too): as transformers
            return self.mllm.model(inputs_embeds=inputs_embeds).last_hidden_state
        out = self.mllm.model(inputs_embeds=inputs_embeds, attention_mask=attention_mask, use_cache=False)
        return out.last_hidden_state

    @property
    def lm_head(self) -> nn.Module:
        return self.mllm.lm_head


def hub_folder(repo: str, key: str = "model.init_args.backbone.init_args.pretrained") -> Path:
    """A hub repository's snapshot folder: from the Hugging Face cache when it is there (offline too), else
    downloaded; one line saying what to do when neither works (and which config ``key`` names the folder)."""
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(repo, local_files_only=True))
    except Exception:  # not cached (whole): download it
        pass
    try:  # configs, tokenizer, chat template and the safetensors weights; not the .bin copies some repos also hold
        return Path(snapshot_download(repo, allow_patterns=["*.json", "*.safetensors", "*.model", "*.txt", "*.jinja"]))
    except Exception as err:
        raise WeightsError(
            f"hf-hub:{repo}: not in the Hugging Face cache and not downloadable here ({type(err).__name__}); run "
            f"`huggingface-cli download {repo} --local-dir <folder>` where the hub is reachable and set {key} to "
            "that folder"
        ) from None


def _dropped(key: str, keep: int) -> bool:
    """Whether a converted vision key belongs to what LLaVA never reads: blocks after the feature layer, the final
    norm."""
    if key.startswith(("norm.", "attn_pool.")):  # the final norm, SigLIP's pooling head
        return True
    if key.startswith("blocks."):
        return int(key.split(".")[1]) >= keep
    return False


def _processor_config(folder: Path) -> dict:
    import json

    for name in ("preprocessor_config.json", "processor_config.json"):
        path = folder / name
        if path.is_file():
            data = json.loads(path.read_text())
            return data.get("image_processor", data)
    log.warning("%s: no preprocessor_config.json; CLIP's mean and std are assumed", folder)
    return {}
