"""A multimodal LLM's costs: generation tokens per second and training step time, per aggregator.

    python benchmarks/mllm_step.py [--device cpu] [--model synthetic] [--batch 4] [--out benchmarks/out/mllm]

``--model``: a llava-hf folder, ``hf-hub:llava-hf/...``, ``synthetic`` (the synthetic LLaVA: tiny CLIP tower,
2-layer Llama) or ``tiny`` (the random tiny LLaVA of the tests, 32 px: overheads only). For each aggregator: the
visual tokens a clip; the training step (forward, LM loss on the answer, backward, AdamW) with the projector and
LoRA on the LLM training; and greedy generation of ``--new-tokens`` tokens (the LLM forced to continue: end of
sequence is suppressed), as new tokens per second over the batch. Best of ``--rounds``. On a GPU, bf16 autocast
(``--precision bf16``) as the 7B recipes run.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from lit_i2v.backbones.llava import LLaVA
from lit_i2v.heads.frame_tokens import FrameTokens, NextVideoPool, PLLaVAPool, SlowFastPool, VideoChatGPTPool
from lit_i2v.strategies.mllm import MultimodalLLM
from lit_i2v.tasks.video_chat import GenerativeVideoQA

ROOT = Path(__file__).resolve().parents[1]


def aggregators(frames: int) -> dict:
    return {
        "all frames": FrameTokens(),
        "Video-ChatGPT means": VideoChatGPTPool(),
        "LLaVA-NeXT-Video 2x2": NextVideoPool(),
        "PLLaVA 3D pool": PLLaVAPool(shape=(frames, 4, 4)),
        "SlowFast-LLaVA": SlowFastPool(slow_frames=max(1, frames // 4), fast_grid=2),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--device", default="cpu")
    p.add_argument("--model", default="synthetic")
    p.add_argument("--frames", type=int, default=8)
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--new-tokens", type=int, default=16)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--precision", choices=["fp32", "bf16"], default="fp32")
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "out" / "mllm"))
    args = p.parse_args()
    device = torch.device(args.device)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=args.precision == "bf16")
    rows = []
    if args.model == "tiny":
        import tempfile

        from lit_i2v.backbones.llava_tiny import write_tiny_llava

        args.model = str(write_tiny_llava(Path(tempfile.mkdtemp()) / "tiny-llava"))
    for name, aggregator in aggregators(args.frames).items():
        torch.manual_seed(0)
        task = GenerativeVideoQA(LLaVA(args.model), MultimodalLLM(projector=True, llm_lora_rank=8),
                                 frame_tokens=aggregator, template="user : {video} {question} assistant :",
                                 max_new_tokens=args.new_tokens).to(device)  # fmt: skip
        size = task.backbone.visual.image_size
        video = torch.randint(0, 256, (args.batch, args.frames, 3, size, size), dtype=torch.uint8, device=device)
        batch = {"video": video, "question": ["what is the red circle doing ?"] * args.batch,
                 "answer": ["left to right"] * args.batch}  # fmt: skip
        optimizer = torch.optim.AdamW([p for p in task.parameters() if p.requires_grad], lr=1e-4)
        step, generate = float("inf"), float("inf")
        eos = task.backbone.tokenizer.eos_token_id
        task.backbone.mllm.generation_config.suppress_tokens = [eos]  # always the full --new-tokens
        for _ in range(args.rounds):
            task.train()
            sync(device)
            start = time.perf_counter()
            with autocast:
                loss = task.training_step(batch, 0)
            loss.backward()
            optimizer.step()
            optimizer.zero_grad()
            sync(device)
            step = min(step, time.perf_counter() - start)
            task.eval()
            start = time.perf_counter()
            with autocast:
                answers = task.generate(task.normalize(video), batch["question"])
            sync(device)
            generate = min(generate, time.perf_counter() - start)
        tokens = task.visual_tokens(task.normalize(video[:1])).shape[1]
        rate = args.batch * args.new_tokens / generate
        rows.append({"aggregator": name, "visual_tokens": tokens, "train_step_s": round(step, 4),
                     "generate_s": round(generate, 4), "new_tokens_per_s": round(rate, 1),
                     "answer_words": len(answers[0].split())})  # fmt: skip
        print(json.dumps(rows[-1]), flush=True)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(rows, indent=1))
    lines = [
        "| aggregator | visual tokens a clip | training step | generation | new tokens/s |",
        "|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(f"| {r['aggregator']} | {r['visual_tokens']} | {r['train_step_s']:.3f} s | "
                     f"{r['generate_s']:.3f} s | {r['new_tokens_per_s']:.0f} |")  # fmt: skip
    (out / "table.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


if __name__ == "__main__":
    main()
