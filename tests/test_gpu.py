"""On a CUDA GPU, skipped elsewhere (`launch/gpu/checks.sh` runs them on a lent one): bf16 fits with the shipped DDP
and FSDP presets on one GPU, training clips decoded from JPEG shards on the GPU (nvJPEG), and the device's resize
and decoding against the CPU's."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
import torch

from lit_i2v.cli import main
from lit_i2v.data import TrainTransform
from lit_i2v.data.shards import ShardSpec, write_shards
from lit_i2v.data.video.images import decode_jpegs, encode_jpeg
from lit_i2v.data.video.transforms import JpegCrop, pack_clips, pack_jpegs

from .test_cli import last_value, metrics, tiny_overrides
from .test_shards import ssv2_records

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def gpu_fit(synth_root: Path, run: Path, capsys, *extra: str) -> tuple[list[dict], str]:
    """A one-epoch fit of the tiny model on one GPU after the quickstart's CPU settings and ``extra``."""
    args = ["fit", *tiny_overrides(synth_root, run), "--trainer.log_every_n_steps=1", *extra, "--trainer.devices=1"]
    assert main(args) == 0
    return metrics(run), capsys.readouterr().out


@pytest.mark.parametrize("preset", ["gpu-ddp-bf16", "gpu-fsdp-bf16"])
def test_a_bf16_fit_with_each_gpu_preset(preset, synth_root, tmp_path, capsys):
    """The preset composed after the recipe's trainer (as a later ``--config``): bf16-mixed on the GPU, the recipe's
    gradient clipping included (under FSDP, through the root module)."""
    config = str(ROOT / "configs" / "trainer" / f"{preset}.yaml")
    rows, out = gpu_fit(synth_root, tmp_path / "run", capsys, "--config", config)
    assert "precision   bf16-mixed" in out and "CUDAAccelerator" in out
    assert torch.isfinite(torch.tensor(last_value(rows, "train/loss")))
    assert last_value(rows, "val/videos") == 16


def test_a_fit_decoding_jpeg_shards_on_the_gpu(synth_root, tmp_path, capsys):
    shards = tmp_path / "shards"
    splits = {s: ssv2_records(synth_root, s) for s in ("train", "val")}
    write_shards(splits, shards, ShardSpec(samples_per_shard=8), class_names=[str(i) for i in range(8)], workers=1)
    extra = ["--config", str(ROOT / "configs" / "trainer" / "gpu-ddp-bf16.yaml"), f"--data.init_args.shards={shards}",
             "--data.init_args.decode_on_device=true", "--data.init_args.num_workers=1"]  # fmt: skip
    rows, out = gpu_fit(synth_root, tmp_path / "run", capsys, *extra)
    assert "decoded on the device in training" in out
    assert last_value(rows, "val/videos") == 16 and last_value(rows, "train/skipped") == 0
    assert torch.isfinite(torch.tensor(last_value(rows, "train/loss")))


def camera_like(seed: int, frames: int = 4, height: int = 96, width: int = 128) -> torch.Tensor:
    """Frames ``(T, H, W, 3)`` uint8: a smooth random scene with a little noise."""
    g = torch.Generator().manual_seed(seed)
    coarse = torch.rand(frames, 3, height // 16, width // 16, generator=g) * 255
    scene = torch.nn.functional.interpolate(coarse, size=(height, width), mode="bicubic")
    noisy = scene + torch.randn(frames, 3, height, width, generator=g) * 4
    return noisy.clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).contiguous()


def test_the_gpu_resizes_and_decodes_as_the_cpu_does():
    """The float resize on the GPU is the worker's uint8 one to rounding; nvJPEG's pixels are libjpeg-turbo's to
    its inverse DCT's rounding."""
    transform, clips = TrainTransform(size=64), [camera_like(seed) for seed in range(4)]
    crops = [transform(clip, random.Random(i)) for i, clip in enumerate(clips)]
    packed = pack_clips(crops)
    on_gpu = packed.pin_memory().to("cuda").resize()
    assert on_gpu.device.type == "cuda" and on_gpu.shape == (4, 4, 3, 64, 64)
    assert (on_gpu.cpu() - packed.resize()).abs().max() <= 1.01  # the CPU's uint8 kernel rounds

    jpegs = [[encode_jpeg(frame.permute(2, 0, 1), 90).numpy().tobytes() for frame in clip] for clip in clips]
    boxes = [transform.box(96, 128, random.Random(i)) for i in range(4)]
    encoded = pack_jpegs(
        [JpegCrop(j, box, flip, 64, f"clip {i}") for i, (j, (box, flip)) in enumerate(zip(jpegs, boxes))]
    )
    on_cpu, on_gpu = encoded.resize(), encoded.to("cuda").resize()
    difference = (on_gpu.cpu() - on_cpu).abs()
    assert on_gpu.device.type == "cuda" and difference.mean() < 0.5 and difference.max() <= 4
    images = decode_jpegs([torch.frombuffer(bytearray(j), dtype=torch.uint8) for j in jpegs[0]], "cuda")
    assert all(image.device.type == "cuda" and image.shape == (3, 96, 128) for image in images)


def test_the_selective_scan_on_cuda_equals_the_cpu_and_mamba_ssm():
    """The chunked torch scan on the GPU equals the CPU's, forward and backward; with mamba_ssm installed (the
    ``[mamba]`` extra), its fused kernel equals both, and ``backend='auto'`` picks it."""
    from lit_i2v.ops import selective_scan
    from lit_i2v.ops.selective_scan import mamba_available

    torch.manual_seed(0)
    b, d, n, length = 8, 64, 16, 8 * 196
    cpu = {"u": torch.randn(b, d, length), "delta": torch.randn(b, d, length), "A": -torch.rand(d, n) * 4,
           "B": torch.randn(b, n, length), "C": torch.randn(b, n, length), "D": torch.randn(d),
           "delta_bias": torch.randn(d)}  # fmt: skip

    def run(tensors: dict, backend: str) -> tuple[torch.Tensor, list[torch.Tensor]]:
        leaves = {k: v.clone().requires_grad_() for k, v in tensors.items()}
        out = selective_scan(**leaves, delta_softplus=True, backend=backend)
        out.square().mean().backward()
        return out.detach().cpu(), [v.grad.cpu() for v in leaves.values()]

    ref_out, ref_grads = run(cpu, "torch")
    gpu = {k: v.cuda() for k, v in cpu.items()}
    backends = ["torch"] + (["cuda"] if mamba_available() else [])
    for backend in backends:
        out, grads = run(gpu, backend)
        assert torch.allclose(out, ref_out, rtol=1e-3, atol=1e-4), backend
        for name, g, ref in zip(cpu, grads, ref_grads, strict=True):
            assert torch.allclose(g, ref, rtol=1e-3, atol=1e-4 * ref.abs().max()), (backend, name)


def test_a_moma_layer_under_bf16_autocast_on_the_gpu():
    """MoMa's SSM layer as a bf16 fit runs it (autocast: u, Δ, B, C in bf16; A, D and Δ's bias in fp32): finite
    outputs and gradients on the torch scan and, where it imports, mamba_ssm's kernel, close to the fp32 CPU layer."""
    from lit_i2v.ops.selective_scan import mamba_available
    from lit_i2v.strategies.moma import SSMModulator

    torch.manual_seed(0)
    layer = SSMModulator(64, 1, 32, 16, 2, 4, False, ("spatial", "temporal"), True)
    torch.nn.init.normal_(layer.out_proj.weight, std=0.05)
    x = torch.randn(2 * 8, 1 + 49, 64)  # 2 clips of 8 frames, 7x7 patches and a class token
    reference = layer(x, 8)
    layer, x = layer.cuda(), x.cuda()
    for backend in ["torch"] + (["cuda"] if mamba_available() else []):
        import lit_i2v.strategies.moma as moma

        scan = moma.selective_scan
        moma.selective_scan = lambda *a, **k: scan(*a, **k, backend=backend)  # noqa: B023
        try:
            with torch.autocast("cuda", dtype=torch.bfloat16):
                out = layer(x.requires_grad_(), 8)
            out.float().square().mean().backward()
        finally:
            moma.selective_scan = scan
        assert torch.isfinite(out).all() and all(torch.isfinite(p.grad).all() for p in layer.parameters())
        assert torch.allclose(out.float().cpu(), reference, atol=0.05, rtol=0.05), backend
        layer.zero_grad()
        x.grad = None
