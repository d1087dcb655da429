"""What ``python -m lit_i2v summary`` reports: parameters, FLOPs per view, frames and views of a configured model.

FLOPs are counted by running one view through the model under ``torch.utils.flop_counter.FlopCounterMode``, which
counts a multiply-add as two FLOPs; they are halved to the papers' (fvcore's) convention of one FLOP per
multiply-add, so ViT-B/16 at 224 px counts about 17.6 GFLOPs a frame. The counter sees matrix products and
convolutions only: the selective scan (MoMa), element-wise work with none, adds its FLOPs by formula
(:func:`lit_i2v.ops.counting_scan_flops`).
"""

from __future__ import annotations

from typing import Any

import torch
from jsonargparse import Namespace
from torch.utils.flop_counter import FlopCounterMode, sdpa_flop_count

from lit_i2v.ops import counting_scan_flops


def _cpu_sdpa_flop(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
    return sdpa_flop_count(query_shape, key_shape, value_shape)


# On CPU, SDPA runs ``_scaled_dot_product_flash_attention_for_cpu``, which torch's counter does not know: without
# this the attention matmuls (0.72 GFLOPs a frame of ViT-B/16) would be missing from the count.
_CUSTOM = {torch.ops.aten._scaled_dot_product_flash_attention_for_cpu: _cpu_sdpa_flop}


def _get(node: Any, *keys: str, default: Any = None) -> Any:
    for key in keys:
        if not isinstance(node, Namespace) or node.get(key) is None:
            return default
        node = node.get(key)
    return node


def clip_shape(data_cfg: Namespace | None) -> tuple[int, int, int]:
    """(frames, temporal views, spatial crops) of the configured data, with the DataModule's defaults."""
    sampler = _get(data_cfg, "init_args", "sampler", "init_args")
    crops = _get(data_cfg, "init_args", "eval_transform", "init_args", "crops", default=1)
    return _get(sampler, "num_frames", default=8), _get(sampler, "test_clips", default=1), crops


@torch.no_grad()
def count_gflops(model: torch.nn.Module, frames: int, size: int) -> float:
    """GFLOPs (multiply-add = 1) of one view ``(1, frames, 3, size, size)`` through the model's forward in evaluation.

    Work a head does once per evaluation pass (CoOp encoding its class prompts) is done before counting: it is not
    a cost of each view.
    """
    video = torch.zeros(1, frames, 3, size, size)
    was_training = model.training
    model.eval()
    head = getattr(model, "head", None)
    with torch.no_grad():
        if hasattr(head, "prepare_evaluation"):
            head.prepare_evaluation()
        with FlopCounterMode(display=False, custom_mapping=_CUSTOM) as counter, counting_scan_flops() as scans:
            model(video)
    model.train(was_training)
    return (counter.get_total_flops() / 2 + scans[0]) / 1e9


def plain_backbone_params(arch: str) -> int:
    """Parameters of an unmodified CLIP of this architecture (built on the meta device: no memory, no time)."""
    from lit_i2v.backbones import CLIP

    with torch.device("meta"):
        return sum(p.numel() for p in CLIP(arch).parameters())


def summarize(model: torch.nn.Module, data_cfg: Namespace | None = None) -> dict:
    frames, clips, crops = clip_shape(data_cfg)
    size = model.backbone.visual.image_size
    params = list(model.named_parameters())
    gflops = count_gflops(model, frames, size)
    backbone_params = sum(p.numel() for p in model.backbone.parameters())
    mllm = hasattr(model.backbone, "language_model")  # a multimodal LLM: no text tower, an LLM
    if mllm:
        extra = sum(p.numel() for n, p in model.backbone.named_parameters() if n not in model.backbone.pretrained_names)
    else:
        extra = backbone_params - plain_backbone_params(model.backbone.arch)
    result = {
        "model": type(model).__name__,
        "backbone": model.backbone.arch,
        "weights": model.backbone.pretrained_cfg["source"],
        "strategy": type(model.transfer).__name__,
        "total_params": sum(p.numel() for _, p in params),
        "trainable_params": sum(p.numel() for _, p in params if p.requires_grad),
        "image_tower_params": sum(p.numel() for n, p in params if n.startswith("backbone.visual.")),
        "text_tower_params": sum(p.numel() for n, p in params if n.startswith("backbone.text.")),
        "extra_params": extra,
        "strategy_params": sum(p.numel() for p in model.transfer.parameters()),  # a side network's own
        "frames": frames,
        "input_size": size,
        "views": clips * crops,
        "temporal_views": clips,
        "spatial_crops": crops,
        "gflops_per_view": round(gflops, 3),
        "gflops_total": round(gflops * clips * crops, 3),
    }
    if mllm:
        grid = model.backbone.visual.grid_size
        arranged = model.frame_tokens.arrange(torch.zeros(1, frames, 3, 1, 1, device="meta")).shape[1]
        projector = {id(p) for p in model.backbone.projector.parameters()}
        llm = [p for n, p in model.backbone.named_parameters() if n.startswith("mllm.") and id(p) not in projector]
        result["language_model_params"] = sum(p.numel() for p in llm)  # the decoder and lm_head (once if tied)
        result["visual_tokens"] = model.frame_tokens.num_tokens(arranged, grid)
    return result


def format_summary(s: dict) -> str:
    return "\n".join(
        [
            f"model        {s['model']} on {s['backbone']} (weights: {s['weights'] or 'random init'})",
            f"strategy     {s['strategy']}",
            f"parameters   {s['total_params'] / 1e6:.2f}M total, {s['trainable_params'] / 1e6:.3f}M trainable "
            f"(image tower {s['image_tower_params'] / 1e6:.2f}M, text tower {s['text_tower_params'] / 1e6:.2f}M; "
            f"{s['extra_params'] / 1e6:.3f}M added to the backbone, {s['strategy_params'] / 1e6:.3f}M beside it)",
            f"input        {s['frames']} frames x {s['input_size']}px, {s['views']} views "
            f"({s['temporal_views']} clips x {s['spatial_crops']} crops)",
            f"GFLOPs       {s['gflops_per_view']:.2f} per view x {s['views']} views = {s['gflops_total']:.2f} "
            "(multiply-add = 1 FLOP)",
        ]
        + (
            [
                f"LLM          {s['language_model_params'] / 1e6:.2f}M parameters; {s['visual_tokens']} visual "
                "tokens a clip, whose prefill the GFLOPs include (the question's tokens add their own)"
            ]
            if "visual_tokens" in s
            else []
        )  # fmt: skip
    )
