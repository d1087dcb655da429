"""Causal language models from transformers, as caption decoders (ClipCap's GPT-2: ``lit_i2v.heads.PrefixLM``).

``load_causal_lm`` reads what users have: a transformers folder (``config.json``, safetensors weights, the
tokenizer's files; tested with GPT-2, the other causal LMs load the same way), ``hf-hub:<repo>`` (the Hugging Face
cache, downloading what is missing when online: ``hf-hub:openai-community/gpt2``), or ``synthetic``: a tiny random
GPT-2 with a byte-level BPE learnt from the synthetic captions' words, written by transformers into lit_i2v's cache on
first use (``synthetic_gpt2``). Weights that do not fit the config are refused, not initialised at random.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from lit_i2v.backbones.llava import hub_folder
from lit_i2v.backbones.llava_tiny import _writing
from lit_i2v.backbones.weights import WeightsError, cache_dir

# words the tiny BPE is learnt from: the synthetic captions' (lit_i2v.data.synthetic) and the test captions'
TINY_CORPUS = (
    "moving something from left to right. moving something from right to left. moving something up. moving something "
    "down. approaching something with your camera. moving away from something with your camera. making something "
    "appear. making something disappear. a red green blue yellow magenta cyan white orange circle square triangle "
    "diamond: moves left up falls"
)


def load_causal_lm(
    pretrained: str, dtype: str = "float32", key: str = "model.init_args.decoder.init_args.pretrained"
) -> tuple[nn.Module, object, Path]:
    """A causal LM and its tokenizer: ``(model, tokenizer, folder)``; errors name the config ``key``. On the meta
    device (``summary``) the model is built from ``config.json`` alone."""
    try:
        from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer
    except ImportError as err:
        raise ImportError("a causal LM decoder needs transformers: pip install 'lit_i2v[caption]'") from err
    if pretrained == "synthetic":
        pretrained = str(synthetic_gpt2())
    folder = hub_folder(pretrained.removeprefix("hf-hub:"), key) if pretrained.startswith("hf-hub:") else (
        Path(pretrained).expanduser())  # fmt: skip
    if not (folder / "config.json").is_file():
        raise WeightsError(
            f"{key}: {folder} has no config.json: not a transformers model folder (download one, e.g. "
            "openai-community/gpt2, with `huggingface-cli download <repo> --local-dir <folder>`)"
        )
    torch_dtype = getattr(torch, dtype, None)
    if not isinstance(torch_dtype, torch.dtype):
        raise ValueError(f"dtype {dtype!r}: float32, bfloat16 or float16")
    if torch.empty(0).is_meta:  # shapes only
        model = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(folder), dtype=torch_dtype)
    else:
        try:
            model, info = AutoModelForCausalLM.from_pretrained(folder, dtype=torch_dtype, output_loading_info=True)
        except (OSError, ValueError, RuntimeError) as err:  # no weights, a truncated shard, no causal LM, shapes
            raise WeightsError(f"{folder}: {' '.join(str(err).split())}") from None
        missing, unexpected = sorted(info["missing_keys"]), sorted(info["unexpected_keys"])
        if missing or unexpected:
            raise WeightsError(
                f"{folder}: the weights do not fit {model.config.model_type}'s config: missing {missing[:4]} "
                f"({len(missing)}), unexpected {unexpected[:4]} ({len(unexpected)})"
            )
    tokenizer = AutoTokenizer.from_pretrained(folder)
    if tokenizer.eos_token_id is None:
        raise WeightsError(f"{folder}: the tokenizer has no end-of-text token (eos_token) to end captions with")
    return model.train(), tokenizer, folder


def write_tiny_gpt2(folder: str | Path, seed: int = 0, width: int = 32, layers: int = 2) -> Path:
    """A tiny random GPT-2 folder as transformers writes GPT-2 (``config.json``, ``model.safetensors``,
    ``vocab.json``, ``merges.txt``, ``tokenizer.json``): a byte-level BPE of about 400 tokens learnt from
    ``TINY_CORPUS`` with GPT-2's ``<|endoftext|>``, and ``layers`` blocks of ``width``. About a second;
    idempotent."""
    folder = Path(folder)
    with _writing(folder) as needed:
        if needed:
            _write_gpt2(folder, seed, width, layers)
    return folder


def _write_gpt2(folder: Path, seed: int, width: int, layers: int) -> None:
    import transformers
    from tokenizers import ByteLevelBPETokenizer

    tmp = folder.with_name(folder.name + ".tmp")
    tmp.mkdir(parents=True, exist_ok=True)
    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator([TINY_CORPUS] * 4, vocab_size=400, min_frequency=1, special_tokens=["<|endoftext|>"],
                            show_progress=False)  # fmt: skip
    tok = transformers.GPT2TokenizerFast(tokenizer_object=bpe._tokenizer, bos_token="<|endoftext|>",
                                         eos_token="<|endoftext|>", unk_token="<|endoftext|>")  # fmt: skip
    tok.save_pretrained(tmp)  # tokenizer.json, as transformers 5 writes it
    bpe.save_model(str(tmp))  # vocab.json and merges.txt, the files GPT-2's own repositories also carry
    eos = tok.eos_token_id
    config = transformers.GPT2Config(vocab_size=len(tok), n_positions=64, n_embd=width, n_layer=layers, n_head=2,
                                     bos_token_id=eos, eos_token_id=eos)  # fmt: skip
    torch.manual_seed(seed)
    transformers.GPT2LMHeadModel(config).eval().save_pretrained(tmp)
    tmp.replace(folder)


def synthetic_gpt2(folder: str | Path | None = None) -> Path:
    """The synthetic recipes' GPT-2 (random weights, width 64, 2 blocks), in ``<cache>/gpt2-synthetic``."""
    return write_tiny_gpt2(Path(folder) if folder is not None else cache_dir() / "gpt2-synthetic", width=64)
