"""Shared fixtures: tiny models with weights saved in the real formats, and small generated videos."""

from __future__ import annotations

import gc
import warnings
from pathlib import Path

import pytest
import torch

from lit_i2v.data.synthetic import SynthSpec, synthesize
from lit_i2v.data.video.transforms import PackedClips


def resized(video: torch.Tensor | PackedClips) -> torch.Tensor:
    """A batch's clips as float, whether the worker resized them (uint8) or the device will (``PackedClips``)."""
    return video.resize() if isinstance(video, PackedClips) else video.float()


def in_shared_memory(tensor: torch.Tensor) -> bool:
    """Whether ``tensor``'s memory lies in a shared-memory file (a DataLoader worker's segment), by this process's
    memory map: a batch a worker handed over without a copy."""
    address = tensor.data_ptr()
    with open("/proc/self/maps") as maps:
        for line in maps:
            fields = line.split(maxsplit=5)
            start, end = (int(bound, 16) for bound in fields[0].split("-"))
            if start <= address < end:
                return len(fields) == 6 and fields[5].startswith("/dev/shm/")
    return False


TINY = dict(
    embed_dim=32,
    vision=dict(image_size=32, patch_size=8, width=64, layers=2, head_width=32),
    text=dict(context_length=77, vocab_size=49408, width=64, heads=2, layers=2),
)


def pytest_collection_modifyitems(config, items):
    """Quick tests first: the end-to-end runs marked ``slow`` (minutes each) go last, so a failure shows early."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is not None)  # stable: file order kept otherwise


def hub_snapshot(monkeypatch, cache: Path, repo: str, files: Path | dict[str, str]) -> Path:
    """``repo``'s snapshot in the Hugging Face cache's layout under ``cache`` (a folder's files, or names to texts),
    with the hub offline and the cache pointed there: what ``hf-hub:repo`` finds on a machine that downloaded it."""
    import huggingface_hub.constants as constants

    home = cache / f"models--{repo.replace('/', '--')}"
    snapshot = home / "snapshots" / "0123abcd"
    snapshot.mkdir(parents=True)
    for name, text in files.items() if isinstance(files, dict) else ((f.name, f) for f in files.iterdir()):
        if isinstance(text, Path):
            (snapshot / name).write_bytes(text.read_bytes())
        else:
            (snapshot / name).write_text(text)
    (home / "refs").mkdir()
    (home / "refs" / "main").write_text("0123abcd")
    for key, value in (("HF_HUB_CACHE", str(cache)), ("HF_HUB_OFFLINE", True)):
        monkeypatch.setenv(key, str(int(value)) if value is True else value)
        monkeypatch.setattr(constants, key, value)
    return snapshot


@pytest.fixture
def no_wandb_key(tmp_path, monkeypatch):
    """A machine without W&B credentials (no key, no netrc, no mode set): runs go offline."""
    for key in ("WANDB_API_KEY", "WANDB_MODE"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("NETRC", str(tmp_path / "no-netrc"))
    monkeypatch.setenv("WANDB_SILENT", "true")


@pytest.fixture(autouse=True)
def finish_wandb_runs():
    """End a test's W&B run: Lightning's logger leaves it open (a CLI process ends with it), and the next test's
    logger would otherwise log into that run, under the previous test's folder."""
    yield
    import sys

    wandb = sys.modules.get("wandb")
    if wandb is not None and wandb.run is not None:
        wandb.finish()


@pytest.fixture(autouse=True)
def collect_garbage():
    """Free each test's models at once: CLI-built models sit in reference cycles until the collector runs, and a
    suite that builds many ViT-B/16s would otherwise hold gigabytes."""
    yield
    gc.collect()


def make_open_clip_model(seed: int = 0):
    """open_clip's own CLIP with the ``ViT-T-8-test`` shapes and QuickGELU, randomly initialised."""
    open_clip = pytest.importorskip("open_clip")
    torch.manual_seed(seed)
    model = open_clip.model.CLIP(
        embed_dim=TINY["embed_dim"], vision_cfg=TINY["vision"], text_cfg=TINY["text"], quick_gelu=True
    )
    with torch.no_grad():  # open_clip initialises some tensors to zero; make every weight matter
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.02)
    return model.eval()


@pytest.fixture(scope="session")
def open_clip_model():
    return make_open_clip_model()


@pytest.fixture(scope="session")
def weight_files(open_clip_model, tmp_path_factory) -> dict[str, Path]:
    """The same random weights in each format lit_i2v reads."""
    from safetensors.torch import save_file

    from lit_i2v.backbones.weights import convert_openai

    root = tmp_path_factory.mktemp("weights")
    state = {k: v.clone().contiguous() for k, v in open_clip_model.state_dict().items()}
    files = {}
    files["open_clip"] = root / "open_clip_pytorch_model.bin"
    torch.save(state, files["open_clip"])
    files["safetensors"] = root / "open_clip_model.safetensors"
    save_file(state, str(files["safetensors"]))
    files["wrapped"] = root / "epoch_32.pt"  # open_clip training checkpoints wrap the state dict, DDP-prefixed
    torch.save({"epoch": 32, "state_dict": {f"module.{k}": v for k, v in state.items()}}, files["wrapped"])
    # OpenAI's release format: a TorchScript archive of the whole model.
    files["openai_jit"] = root / "ViT-T-8-test.pt"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        traced = torch.jit.trace_module(
            open_clip_model,
            {"encode_image": torch.randn(1, 3, 32, 32), "encode_text": torch.randint(0, 49408, (1, 77))},
            check_trace=False,
        )
        traced.save(str(files["openai_jit"]))
    # timm's CLIP ViT layout (image tower only), converted by timm's own converter.
    vit = pytest.importorskip("timm.models.vision_transformer")
    timm_model = timm_vit()
    files["timm"] = root / "timm_vit.pth"
    torch.save(vit._convert_openai_clip(state, timm_model), files["timm"])
    files["lit_i2v"] = root / "lit_i2v.safetensors"
    save_file({k: v.contiguous() for k, v in convert_openai(state).items()}, str(files["lit_i2v"]))
    return files


def timm_vit():
    """timm's CLIP ViT with the tiny image tower's shapes."""
    import timm

    return timm.create_model(
        "vit_base_patch16_clip_quickgelu_224",
        pretrained=False,
        img_size=32,
        patch_size=8,
        embed_dim=64,
        depth=2,
        num_heads=2,
        num_classes=32,
    ).eval()


@pytest.fixture(scope="session")
def synth_root(tmp_path_factory) -> Path:
    """A small synthetic motion dataset in SSv2 format (32x32 px, 16 frames)."""
    root = tmp_path_factory.mktemp("synth")
    return synthesize(root, num_train=32, num_val=16, num_test=8, spec=SynthSpec(size=32, frames=16), seed=1)
