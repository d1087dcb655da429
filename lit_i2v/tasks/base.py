"""The part every task shares: backbone + strategy, device-side normalisation, optimizer groups and schedule.

A task receives clips as tensors from the data (whose DataModule has finished its work on the device), normalises
them with the backbone's mean and std, asks the strategy for per-frame features, and hands them to its own
modules. Which parameters train is decided once, here, by the strategy's predicate; the optimizer sees only those.
"""

from __future__ import annotations

import lightning as L
import torch
from lightning.pytorch.strategies import FSDPStrategy
from torch import Tensor

from lit_i2v.backbones import CLIP
from lit_i2v.errors import ConfigError
from lit_i2v.strategies import FullFinetune, TransferStrategy, freeze
from lit_i2v.tasks.args import Optimization, Runtime
from lit_i2v.tasks.optim import param_groups, total_steps, warmup_cosine

# What FSDP, activation checkpointing and torch.compile insert into parameter names when they wrap a module.
WRAPPER_SEGMENTS = ("_fsdp_wrapped_module.", "_checkpoint_wrapped_module.", "_orig_mod.")


def unwrapped(name: str) -> str:
    """A parameter's name as ``state_dict`` and the pretrained weights name it, without the wrappers' segments."""
    for wrapper in WRAPPER_SEGMENTS:
        name = name.replace(wrapper, "")
    return name


class VideoTask(L.LightningModule):
    """Base LightningModule.

    Args:
        backbone: the image-language model (``lit_i2v.backbones.CLIP``).
        transfer: the transfer strategy (``lit_i2v.strategies.*``); None means full fine-tuning of all towers.
        optim: how the trainable parameters are optimised (``lit_i2v.tasks.Optimization``: optimizer, layer decay,
            warm-up, schedule floor, new-module lr scale).
        runtime: how the task runs (``lit_i2v.tasks.Runtime``: compile, trainable-only checkpoints).
    """

    def __init__(
        self, backbone: CLIP, transfer: TransferStrategy | None = None, optim: Optimization | None = None,
        runtime: Runtime | None = None,
    ) -> None:  # fmt: skip
        super().__init__()
        self.backbone = backbone
        self.transfer = transfer or FullFinetune(towers=["visual", "text"])
        if self.transfer.needs_class_token and backbone.visual.num_prefix_tokens == 0:
            raise ConfigError(
                f"model.init_args.transfer: {type(self.transfer).__name__} reads the image tower's class token, and "
                f"{backbone.arch} has none (its features are pooled by attention); no surrogate is built yet"
            )
        self.transfer.apply(backbone)
        freeze(backbone, self.transfer)
        self.optim, self.runtime = optim or Optimization(), runtime or Runtime()
        compile = self.runtime.compile
        self.compile_backend = "inductor" if compile is True else (compile or None)
        self._compiled = False
        self.strict_loading = not self.runtime.trainable_only_checkpoints
        cfg = backbone.pretrained_cfg
        self.register_buffer("mean", torch.tensor(cfg["mean"]).view(1, 3, 1, 1) * 255, persistent=False)
        self.register_buffer("std", torch.tensor(cfg["std"]).view(1, 3, 1, 1) * 255, persistent=False)

    # ---- the contract every exported task declares (tests/test_exported_tasks.py runs it on each) -----------------

    @classmethod
    def tiny(cls) -> VideoTask:
        """This task on the tiny test towers (``ViT-T-8-test``: 32 px, 32-d embeddings), built in a second."""
        return cls(CLIP("ViT-T-8-test"))

    def example_batch(self, size: int = 2, training: bool = True, frames: int = 4, views: int = 2) -> dict:
        """A batch with the keys this task reads and random values, as the DataModule delivers it (the batch
        contract, docs/tasks.md): ``video`` uint8 ``(B, T, 3, S, S)`` in training and ``(B, V, T, 3, S, S)`` in
        evaluation, ``index``, ``valid``, ``skipped``, ``video_id``; each task adds its own keys."""
        s = self.backbone.visual.image_size
        shape = (size, frames, 3, s, s) if training else (size, views, frames, 3, s, s)
        return {
            "video": torch.randint(0, 256, shape, dtype=torch.uint8),
            "index": torch.arange(size),
            "valid": torch.ones(size, dtype=torch.bool),
            "skipped": torch.zeros(size, dtype=torch.long),
            "video_id": [f"v{i}" for i in range(size)],
        }

    def configure_model(self) -> None:
        """Compile the image tower once, in place (``nn.Module.compile``), so checkpoints keep their names."""
        if self.compile_backend and not self._compiled:
            self.backbone.visual.compile(backend=self.compile_backend)
            self._compiled = True

    def normalize(self, video: Tensor) -> Tensor:
        """Clips ``(..., 3, H, W)`` with values in [0, 255] (uint8 from the loader's workers, or float32 when the
        data module resized them on this device) → float ``(..., 3, H, W)`` normalised with the backbone's mean and
        std.

        The workers' clips are channels-last in memory; the copy into a planar float tensor transposes them in the
        same pass as the conversion, on the device rather than in the workers."""
        if not isinstance(video, Tensor):
            raise TypeError(
                f"batch['video'] is a {type(video).__name__}, not a tensor: packed batches are resized by the data "
                "module's on_after_batch_transfer (use the DataModule, or call it on the batch)"
            )
        if video.dtype == torch.uint8:
            clips = torch.empty(video.shape, device=video.device)  # (..., 3, H, W) float32, planar
            clips.copy_(video)
            return clips.sub_(self.mean).div_(self.std)
        return video.float().sub(self.mean).div_(self.std)  # resized on the device; the batch's tensor is left as is

    # ---- parameters ---------------------------------------------------------------------------------------------

    def trainable_names(self) -> list[str]:
        """Names of the parameters that train, as ``state_dict`` names them: without the segments FSDP and
        activation checkpointing insert when they wrap a module, so trainable-only checkpoints find them."""
        return [unwrapped(n) for n, p in self.named_parameters() if p.requires_grad]

    def trainable_state_dict(self) -> dict[str, Tensor]:
        """Only the parameters that train: what a trainable-only checkpoint holds."""
        names = set(self.trainable_names())
        return {k: v for k, v in self.state_dict().items() if k in names}

    def load_trainable_state_dict(self, state: dict[str, Tensor]) -> None:
        """Load a trainable-only state dict onto the pretrained model; its names must be exactly the trainable set."""
        expected = set(self.trainable_names())
        missing, unexpected = sorted(expected - state.keys()), sorted(state.keys() - expected)
        if missing or unexpected:
            raise ValueError(
                "the checkpoint does not hold this model's trainable parameters: "
                f"missing {missing[:8]} ({len(missing)}), unexpected {unexpected[:8]} ({len(unexpected)})"
            )
        self.load_state_dict(state, strict=False)

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        if self.runtime.trainable_only_checkpoints:
            checkpoint["state_dict"] = self.trainable_state_dict()
            checkpoint["trainable_only"] = True

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        state = checkpoint.get("state_dict") or {}
        for key in [k for k in state if k.startswith("strategy.")]:  # written before the argument was ``transfer``
            state[f"transfer.{key.removeprefix('strategy.')}"] = state.pop(key)
        expected = self.trainable_names() if checkpoint.get("trainable_only") else self.state_dict()
        for key in [k for k in expected if k.endswith("logit_bias") and k not in state and state]:
            # written before SigLIP's bias was a head's and a trainable parameter: the value it was built with
            state[key] = self.state_dict()[key].clone()
        if checkpoint.get("trainable_only"):
            self.load_trainable_state_dict(checkpoint["state_dict"])  # checks the names, then loads
            self.strict_loading = False

    def _layer_id(self, name: str) -> int:
        if name.startswith("backbone.visual."):
            return self.backbone.visual.layer_id(name.removeprefix("backbone.visual."))
        return len(self.backbone.visual.blocks) + 1  # text tower, strategy modules and heads: full lr

    def _no_decay(self) -> set[str]:
        names = set()
        for prefix, module in self.named_modules():  # the towers', a caption decoder's embeddings, ...
            if hasattr(module, "no_weight_decay") and prefix:
                names |= {f"{prefix}.{n}" for n in module.no_weight_decay()}
        names |= {n for n, p in self.named_parameters() if getattr(p, "_no_weight_decay", False)}  # Mamba's marker
        return names | {"backbone.logit_scale", "backbone.logit_bias"}

    def pretrained_parameters(self) -> set[str]:
        """Names of this task's parameters whose values were loaded from pretrained weights: every submodule that
        loads weights (the backbone, an extra model, a pretrained decoder) lists the names it loaded in its
        ``pretrained_names``; strategies keep pretrained names when they adapt a layer, so those stay pretrained."""
        found = set()
        for prefix, module in self.named_modules():
            for name in getattr(module, "pretrained_names", ()):
                found.add(f"{prefix}.{name}" if prefix else name)
        return found

    def is_new(self, name: str) -> bool:
        """Whether parameter ``name`` (of this task) was not loaded from pretrained weights (it gets
        ``new_lr_scale``): decided by where values came from, not by where a module sits. The optimizer is built
        after FSDP and activation checkpointing wrap the blocks, whose names then carry the wrappers' segments."""
        return unwrapped(name) not in self._pretrained

    def build_optimizer(self) -> torch.optim.Optimizer:
        """The optimizer over trainable parameters, grouped for layer decay and weight decay."""
        self._pretrained = self.pretrained_parameters()
        groups = param_groups(
            self.named_parameters(),
            self._layer_id,
            len(self.backbone.visual.blocks),
            self.optim.layer_decay,
            self._no_decay(),
            lambda name: self.optim.new_lr_scale if self.is_new(name) else 1.0,
        )
        if not groups:
            raise ValueError(
                "nothing to train: the strategy freezes the backbone and the head is frozen. For zero-shot "
                "evaluation run `python -m lit_i2v test --config ...` instead of `fit`."
            )
        try:
            optimizer = self.optim.optimizer(groups)
        except (ValueError, TypeError) as err:  # torch's checks of the values: "Invalid learning rate: -1.0"
            raise ConfigError(f"model.init_args.optim.optimizer: {err}") from err
        for group in optimizer.param_groups:
            group["lr"] *= group["lr_scale"]
        return optimizer

    def configure_optimizers(self):
        optimizer = self.build_optimizer()
        total = total_steps(self.trainer)
        epochs = self.trainer.max_epochs if self.trainer.max_epochs and self.trainer.max_epochs > 0 else 1
        warmup = round(self.optim.warmup_epochs * total / epochs)
        scheduler = warmup_cosine(optimizer, warmup, total, self.optim.min_lr_ratio)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    def configure_gradient_clipping(
        self, optimizer: torch.optim.Optimizer, gradient_clip_val: float | None = None,
        gradient_clip_algorithm: str | None = None,
    ) -> None:  # fmt: skip
        """Lightning's clipping (``trainer.gradient_clip_val``, which the recipes set), except under FSDP, whose
        precision plugin refuses to clip by norm (each rank holds a shard of the gradients, so the norm of its own
        shard is not the norm): there the root FSDP module clips by the global norm."""
        if gradient_clip_val and isinstance(self.trainer.strategy, FSDPStrategy):
            if gradient_clip_algorithm not in (None, "norm"):
                raise ValueError(f"trainer.gradient_clip_algorithm={gradient_clip_algorithm!r}: under FSDP lit_i2v "
                                 "clips by the global norm only; set it to 'norm' or drop it")  # fmt: skip
            self.trainer.strategy.model.clip_grad_norm_(gradient_clip_val)
            return
        self.clip_gradients(optimizer, gradient_clip_val, gradient_clip_algorithm)
