"""The recognition task: what trains, optimizer groups, zero-shot maths, evaluation over views, real learning."""

from __future__ import annotations

import random

import lightning as L
import pytest
import torch
import torch.nn.functional as F

from lit_i2v.backbones import CLIP
from lit_i2v.data import EvalTransform, Synthetic, TrainTransform, UniformSampler, VideoDataModule
from lit_i2v.heads import (
    CoOpHead,
    LinearHead,
    PromptEncoderHead,
    TemporalConv1D,
    TemporalTransformer,
    TextClassifierHead,
    VideoPromptHead,
)
from lit_i2v.strategies import XCLIP, Frozen, FullFinetune
from lit_i2v.tasks import ActionRecognition, Distillation, Optimization, Runtime
from lit_i2v.tasks.mixing import Mixer, one_hot
from lit_i2v.tasks.optim import warmup_cosine


def make_task(strategy=None, head=None, temporal=None, **kwargs) -> ActionRecognition:
    torch.manual_seed(0)
    return ActionRecognition(
        CLIP("ViT-T-8-test"), num_classes=8, transfer=strategy, head=head, temporal=temporal, **kwargs
    )


def clip_batch(b=2, t=4, views=None, size=32):
    shape = (b, t, 3, size, size) if views is None else (b, views, t, 3, size, size)
    return {
        "video": torch.randint(0, 256, shape, dtype=torch.uint8),
        "label": torch.arange(b) % 8,
        "skipped": torch.zeros(b, dtype=torch.long),
        "valid": torch.ones(b, dtype=torch.bool),
    }


def test_normalize_makes_channels_last_clips_planar_floats():
    task = make_task()
    video = torch.randint(0, 256, (2, 3, 4, 32, 32, 3), dtype=torch.uint8).movedim(-1, -3)  # as the loader's batches
    normalised = task.normalize(video)  # (B, V, T, 3, S, S)
    assert normalised.is_contiguous() and normalised.dtype == torch.float32
    torch.testing.assert_close(normalised, (video.contiguous().float() - task.mean) / task.std)


def test_the_data_module_resizes_packed_crops_on_the_device_and_the_task_receives_tensors():
    from lightning.fabric.utilities.apply_func import move_data_to_device

    from lit_i2v.data import VideoDataModule
    from lit_i2v.data.video.transforms import PackedClips, pack_clips

    task = make_task()
    frames = torch.randint(0, 256, (4, 40, 48, 3), dtype=torch.uint8)
    transform, worker = TrainTransform(size=32), TrainTransform(size=32, device_resize=False)
    batch = {"video": pack_clips([transform(frames, random.Random(i)) for i in range(3)]), "label": torch.arange(3)}
    moved = move_data_to_device(batch, torch.device("cpu"))  # what the trainer does with a batch
    assert isinstance(moved["video"], PackedClips) and len(moved["video"]) == 3
    with pytest.raises(TypeError, match=r"batch\['video'\] is a PackedClips, not a tensor"):
        task.normalize(moved["video"])
    ready = VideoDataModule().on_after_batch_transfer(moved, 0)  # Lightning calls it on the batch's device
    expected = torch.stack([worker(frames, random.Random(i)) for i in range(3)])  # resized in a worker
    assert ready["video"].dtype == torch.float32 and ready["video"].shape == expected.shape
    assert torch.equal(task.normalize(ready["video"]), task.normalize(expected))  # on a CPU, with the same kernel


def test_gradient_clipping_under_fsdp_clips_the_global_norm_through_the_root_module():
    """Lightning's FSDP precision plugin refuses to clip by norm, and 40 recipes set ``gradient_clip_val``: under
    FSDP the task has the root FSDP module clip (its ``clip_grad_norm_`` takes the norm over all ranks' shards)."""
    from types import SimpleNamespace
    from unittest import mock

    from lightning.pytorch.strategies import FSDPStrategy

    task = make_task()
    optimizer = torch.optim.SGD(task.parameters(), lr=0.1)
    root = mock.Mock()  # stands for the FSDP-wrapped model (FSDP needs a GPU)
    task._trainer = SimpleNamespace(strategy=mock.Mock(spec=FSDPStrategy, model=root))
    task.configure_gradient_clipping(optimizer, gradient_clip_val=1.0, gradient_clip_algorithm="norm")
    root.clip_grad_norm_.assert_called_once_with(1.0)
    with pytest.raises(ValueError, match="trainer.gradient_clip_algorithm='value': under FSDP"):
        task.configure_gradient_clipping(optimizer, gradient_clip_val=1.0, gradient_clip_algorithm="value")
    with mock.patch.object(type(task), "clip_gradients") as lightning_clipping:  # any other strategy: Lightning's
        task._trainer = SimpleNamespace(strategy=mock.Mock())
        task.configure_gradient_clipping(optimizer, gradient_clip_val=1.0, gradient_clip_algorithm="norm")
    lightning_clipping.assert_called_once_with(optimizer, 1.0, "norm")


def test_frozen_trains_only_the_head_and_keeps_no_graph():
    task = make_task(Frozen(), LinearHead(dropout=0.0))
    assert task.trainable_names() == ["head.fc.weight", "head.fc.bias"]
    video = task.normalize(clip_batch()["video"])
    task.train()
    frames = task.transfer(task.backbone, video)
    assert not frames.requires_grad  # the backbone ran without autograd
    task(video).sum().backward()
    assert all(p.grad is None for p in task.backbone.parameters())
    assert task.head.fc.weight.grad is not None


def test_full_finetune_trains_the_image_tower_only_by_default():
    task = make_task(FullFinetune())
    names = set(task.trainable_names())
    visual = {f"backbone.visual.{n}" for n, _ in task.backbone.visual.named_parameters()}
    projection = {"backbone.visual.head.weight"}  # off the path of a linear head on tower features
    assert visual - projection <= names and not names & projection
    assert not any(n.startswith("backbone.text.") for n in names)
    both = make_task(FullFinetune(towers=["visual", "text"]), head=PromptEncoderHead(), class_names=NAMES)
    assert "backbone.text.blocks.0.attn.qkv.weight" in both.trainable_names()
    assert "backbone.logit_scale" in both.trainable_names()
    unread = make_task(FullFinetune(towers=["visual", "text"]))  # a linear head: no loss reaches the text tower
    assert not any(n.startswith(("backbone.text.", "backbone.logit_")) for n in unread.trainable_names())
    with pytest.raises(ValueError, match="transfer.towers: unknown"):
        FullFinetune(towers=["audio"])


def test_optimizer_groups_decay_layers_and_skip_norms():
    optim = Optimization(lambda p: torch.optim.AdamW(p, lr=1.0, weight_decay=0.1), layer_decay=0.5)
    task = make_task(FullFinetune(), optim=optim)
    groups = task.build_optimizer().param_groups
    by_name = {n: g for g in groups for n in g["names"]}
    depth = len(task.backbone.visual.blocks)  # 2: layer ids 0..3
    assert by_name["backbone.visual.pos_embed"]["lr"] == pytest.approx(0.5 ** (depth + 1))
    assert by_name["backbone.visual.pos_embed"]["weight_decay"] == 0.0
    assert by_name["backbone.visual.blocks.0.attn.qkv.weight"]["lr"] == pytest.approx(0.5**depth)
    assert by_name["backbone.visual.blocks.0.attn.qkv.weight"]["weight_decay"] == 0.1
    assert by_name["backbone.visual.blocks.1.norm1.weight"]["weight_decay"] == 0.0
    assert by_name["backbone.visual.blocks.1.attn.qkv.bias"]["weight_decay"] == 0.0
    assert by_name["head.fc.weight"]["lr"] == pytest.approx(1.0)
    assert sum(len(g["params"]) for g in groups) == len(task.trainable_names())


def test_new_modules_can_learn_faster_than_pretrained_ones(weight_files, tmp_path):
    """Pretrained is what was loaded from weights, wherever it sits: the backbone's layers (LoRA-adapted ones keep
    their names), a trainable extra model loaded from its checkpoint; everything else gets ``new_lr_scale``."""
    from lit_i2v.strategies import LoRA, TimmImageModel, WithExtraModel
    from tests.test_strategies import tiny_timm

    extra_weights = tmp_path / "extra.pt"
    torch.save(tiny_timm().model.state_dict(), extra_weights)
    args = dict(img_size=32, patch_size=8, depth=2, embed_dim=48, num_heads=2)
    extra = TimmImageModel("vit_tiny_patch16_224", checkpoint=str(extra_weights), trainable=True, model_args=args)
    strategy = WithExtraModel(extra, strategy=LoRA(rank=4, targets=["attn.qkv"]))
    for backbone, loaded in [
        (CLIP("ViT-T-8-test", str(weight_files["open_clip"])), True),
        (CLIP("ViT-T-8-test"), False),
    ]:
        optim = Optimization(lambda p: torch.optim.AdamW(p, lr=1.0), new_lr_scale=10.0)
        task = ActionRecognition(backbone, 8, transfer=strategy if loaded else XCLIP(), optim=optim)
        by_name = {n: g["lr"] for g in task.build_optimizer().param_groups for n in g["names"]}
        assert by_name["head.fc.weight"] == pytest.approx(10.0)
        if loaded:
            assert by_name["transfer.extra.model.blocks.0.attn.qkv.weight"] == pytest.approx(
                1.0
            )  # pretrained there too
            assert by_name["backbone.visual.blocks.0.attn.qkv.lora_A"] == pytest.approx(10.0)
            assert by_name["transfer.fuse.weight"] == pytest.approx(10.0)
            wrapped = "backbone.visual.blocks.0._fsdp_wrapped_module._checkpoint_wrapped_module.attn.qkv.weight"
            assert not task.is_new(wrapped)  # as FSDP and activation checkpointing name it when the optimizer is made
        else:  # nothing was loaded: a randomly initialised tower is as new as the head
            assert by_name["backbone.visual.blocks.0.attn.qkv.weight"] == pytest.approx(10.0)
            assert by_name["backbone.visual.blocks.0.pre_attn.xclip.fc.weight"] == pytest.approx(10.0)


def test_warmup_cosine_schedule():
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    sched = warmup_cosine(opt, warmup_steps=4, total_steps=14, min_lr_ratio=0.1)
    lrs = []
    for _ in range(14):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs[:4] == pytest.approx([0.25, 0.5, 0.75, 1.0])
    assert lrs[9] == pytest.approx(0.1 + 0.9 * 0.5)  # half way through the cosine
    assert opt.param_groups[0]["lr"] == pytest.approx(0.1)


def test_zero_shot_head_is_clip_zero_shot():
    names = ["moving left", "moving right", "a dog", "a cat", "red", "blue", "up", "down"]
    task = make_task(
        Frozen(), TextClassifierHead(templates=["a video of {}.", "{}"], trainable=False), class_names=names
    )
    assert task.trainable_names() == []
    video = task.normalize(clip_batch()["video"])
    backbone = task.backbone.eval()
    with torch.no_grad():
        v = F.normalize(backbone.encode_image(video.flatten(0, 1)).unflatten(0, (2, 4)).mean(1), dim=-1)
        classes = []
        for name in names:
            t = F.normalize(backbone.encode_text(backbone.tokenize([f"a video of {name}.", name])), dim=-1)
            classes.append(F.normalize(t.mean(0), dim=-1))
        expected = backbone.logit_scale.exp() * v @ torch.stack(classes).t()
        assert torch.allclose(task.eval()(video), expected, atol=1e-4)
    with pytest.raises(ValueError, match="class_names has 2 names but num_classes is 8"):
        make_task(Frozen(), TextClassifierHead(), class_names=["a", "b"])


def test_evaluation_averages_views_and_masks_invalid():
    task = make_task(FullFinetune()).eval()
    batch = clip_batch(b=3, views=2)
    with torch.no_grad():
        probs = task.predict_views(batch["video"])
        per_view = [task(task.normalize(batch["video"][:, v])).softmax(-1) for v in range(2)]
    assert torch.allclose(probs, (per_view[0] + per_view[1]) / 2, atol=1e-6)
    batch["valid"][1] = False
    task._evaluate(batch, task.val_metrics, "val")
    assert task.val_metrics["videos"].compute() == 2


def test_evaluation_loss_and_mean_class_accuracy_cover_every_batch():
    task = make_task(FullFinetune()).eval()
    batches = [clip_batch(b=3, views=2) for _ in range(3)]
    batches[1]["label"] = torch.tensor([5, 5, 6])
    nll, hits = [], torch.zeros(8, 8)
    with torch.no_grad():
        for batch in batches:
            probs = task.predict_views(batch["video"])
            nll += (-probs.gather(1, batch["label"].view(-1, 1)).log()).flatten().tolist()
            for p, t in zip(probs.argmax(1), batch["label"]):
                hits[t, p] += 1
            task._evaluate(batch, task.val_metrics, "val", batch_idx=len(nll))
    # the loss over all nine videos, not the first batch's
    assert float(task.val_metrics["loss"].compute()) == pytest.approx(sum(nll) / len(nll), rel=1e-5)
    assert torch.equal(task.confusion["val"].compute(), hits.long())


def test_mixup_and_cutmix_keep_target_mass():
    targets = one_hot(torch.tensor([0, 1, 2, 3]), 4, smoothing=0.1)
    assert torch.allclose(targets.sum(1), torch.ones(4)) and targets[0, 0] == pytest.approx(0.925)
    video = torch.randn(4, 2, 3, 16, 16)
    for mixer in (Mixer(mixup_alpha=0.8), Mixer(cutmix_alpha=1.0)):
        torch.manual_seed(0)
        mixed, soft = mixer(video, targets)
        assert mixed.shape == video.shape and torch.allclose(soft.sum(1), torch.ones(4))
    torch.manual_seed(1)
    mixed, soft = Mixer(cutmix_alpha=1.0)(video, targets)
    changed = (mixed != video).any(dim=2)  # (B, T, H, W): the cut box is the same in every frame
    assert torch.equal(changed[:, 0], changed[:, 1])


def test_conv1d_starts_as_actionclip_shift():
    head = TemporalConv1D()
    head.build(8)
    x = torch.arange(5.0).view(1, 5, 1).expand(1, 5, 8)  # frame index in every channel
    shifted = head.conv(x.transpose(1, 2)).transpose(1, 2)[0]  # (T, C)
    assert shifted[2, :2].tolist() == [1.0, 1.0] and shifted[2, 2:6].tolist() == [2.0] * 4
    assert shifted[2, 6:].tolist() == [3.0, 3.0]


def test_training_lowers_the_loss(tmp_path):
    """Real training on generated videos: the training loss falls (fixed seed, overfitting 32 clips)."""
    L.seed_everything(0)
    data = VideoDataModule(
        root=str(tmp_path / "synth"),
        synthetic=Synthetic(num_train=32, num_val=8, num_test=8, video_size=32, video_frames=12),
        sampler=UniformSampler(4),
        batch_size=8,
        num_workers=0,
        train_transform=TrainTransform(32, scale=(0.9, 1.0), hflip=False),
        eval_transform=EvalTransform(32),
    )
    task = ActionRecognition(
        CLIP("ViT-T-8-test"),
        num_classes=8,
        transfer=FullFinetune(),
        head=LinearHead(dropout=0.0),
        temporal=TemporalTransformer(layers=1, heads=2),
        optim=Optimization(lambda p: torch.optim.AdamW(p, lr=2e-3)),
    )
    losses = []

    class Record(L.Callback):
        def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
            losses.append(float(outputs["loss"]))

    trainer = L.Trainer(
        max_epochs=8,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        callbacks=[Record()],
        num_sanity_val_steps=0,
        default_root_dir=tmp_path,  # the evaluation reports go there, not into the working directory
    )
    trainer.fit(task, datamodule=data)
    first, last = sum(losses[:4]) / 4, sum(losses[-4:]) / 4
    assert last < 0.8 * first, (first, last)
    assert trainer.callback_metrics["val/videos"] == 8
    assert 0 <= float(trainer.callback_metrics["val/mean_class_acc"]) <= 1 and "val/loss" in trainer.callback_metrics


def test_coop_starts_as_the_hand_written_prompt_and_trains_only_its_context():
    names = ["moving left", "moving right", "a dog", "a cat", "red", "blue", "up", "down"]
    prompt = make_task(Frozen(), TextClassifierHead(templates=["a video of a {}."], trainable=False), class_names=names)
    coop = make_task(Frozen(), CoOpHead(context_init="a video of a"), class_names=names)
    video = coop.normalize(clip_batch()["video"])
    with torch.no_grad():
        assert torch.allclose(coop.eval()(video), prompt.eval()(video), atol=1e-4)
    assert coop.trainable_names() == ["head.context"] and coop.head.context.shape == (4, 64)
    assert not any(k.startswith("head.text") for k in coop.state_dict())  # the text tower is not stored twice
    coop.train()(video).logsumexp(-1).sum().backward()
    assert coop.head.context.grad is not None and coop.head.context.grad.abs().sum() > 0
    assert all(p.grad is None for p in coop.backbone.parameters())
    random_init = make_task(Frozen(), CoOpHead(context_init=None, num_context=3), class_names=names)
    assert random_init.head.context.shape == (3, 64)


def test_class_specific_context_starts_shared_and_learns_per_class():
    shared = make_task(Frozen(), CoOpHead(context_init="a video of a"), class_names=NAMES)
    specific = make_task(Frozen(), CoOpHead(context_init="a video of a", class_specific=True), class_names=NAMES)
    assert specific.head.context.shape == (8, 4, 64)
    video = specific.normalize(clip_batch()["video"])
    with torch.no_grad():
        assert torch.allclose(specific.eval()(video), shared.eval()(video), atol=1e-5)
    specific.train()(video)[:, 2].sum().backward()  # only class 2's score
    grad = specific.head.context.grad.abs().sum(dim=(1, 2))
    assert grad[2] > 0 and grad[[0, 1, 3, 4, 5, 6, 7]].sum() == 0  # each class owns its context
    random = CoOpHead(context_init=None, num_context=8, class_specific=True)
    random_init = make_task(Frozen(), random, class_names=NAMES)
    assert random_init.head.context.shape == (8, 8, 64) and random_init.head.context.std() < 0.03


def test_distilling_a_model_into_itself_starts_at_zero_loss():
    names = ["moving left", "moving right", "a dog", "a cat", "red", "blue", "up", "down"]
    torch.manual_seed(0)
    teacher = CLIP("ViT-T-8-test")
    student_head = TextClassifierHead(templates=["a video of {}."], trainable=False)
    distill = Distillation(teacher, feature_weight=1.0, logit_weight=1.0, templates=["a video of {}."])
    task = make_task(Frozen(), student_head, class_names=names, distillation=distill)  # same weights (seed 0)
    video = task.normalize(clip_batch()["video"])
    task.eval()
    with torch.no_grad():
        feature, tokens = task.pooled(video)
        losses = task.distillation(video, feature, task.classify(feature, tokens))
    assert losses["distill_feature"].abs() < 1e-5 and losses["distill_logit"].abs() < 1e-5


def test_distillation_trains_the_student_not_the_teacher():
    names = [f"class {i}" for i in range(8)]
    torch.manual_seed(5)
    distill = Distillation(CLIP("ViT-T-8-test"), feature_weight=1.0, logit_weight=0.5, temperature=2.0)
    task = make_task(FullFinetune(), LinearHead(dropout=0.0), class_names=names, distillation=distill)
    names_trained = task.trainable_names()
    assert "distillation.proj.weight" in names_trained
    assert not any(n.startswith(("distillation.teacher.", "distillation.classifier.")) for n in names_trained)
    assert task.distillation.proj.weight.shape == (32, 64)  # tower width 64 -> teacher embedding 32
    batch = clip_batch()
    task.train()
    loss = task.training_step(batch, 0)
    loss.backward()
    assert all(p.grad is None for p in task.distillation.teacher.parameters())
    assert task.distillation.proj.weight.grad is not None and task.backbone.visual.cls_token.grad is not None
    assert not task.distillation.teacher.training  # kept in eval mode
    assert "distillation.teacher.visual.cls_token" not in task.trainable_state_dict()


NAMES = ["moving left", "moving right", "a dog", "a cat", "red", "blue", "up", "down"]


def xclip_task(**head) -> ActionRecognition:
    return make_task(
        XCLIP(),
        VideoPromptHead(**head),
        TemporalTransformer(layers=1, heads=1),
        class_names=NAMES,
        optim=Optimization(new_lr_scale=10),
    )


def test_video_prompts_start_near_the_text_classifier_and_reduce_to_it_without_alpha():
    task = xclip_task(templates=["a video of {}.", "{}"]).eval()
    video = task.normalize(clip_batch()["video"])
    with torch.no_grad():
        feature, tokens = task.pooled(video)
        assert tokens.shape == (2, 4, 16, 64)  # (B, T, patches, D): the class token is not among them
        backbone = task.backbone
        text = backbone.encode_text(backbone.tokenize([t.format(n) for n in NAMES for t in task.head.templates]))
        text = F.normalize(text.view(8, 2, -1).mean(1), dim=-1)  # raw embeddings averaged, as X-CLIP's cache
        plain = backbone.logit_scale.exp() * F.normalize(feature, dim=-1) @ text.t()
        task.head.alpha.zero_()
        assert torch.allclose(task(video), plain, atol=1e-4)
        task.head.alpha.fill_(0.1)
        assert not torch.allclose(task(video), plain, atol=1e-4)  # the prompts now depend on the clip
        other = task.normalize(clip_batch()["video"].flip(-1))
        assert not torch.allclose(task.head.prompts(task.pooled(other)[1]), task.head.prompts(tokens))


def test_xclip_trains_the_video_side_only():
    task = xclip_task().train()
    task(task.normalize(clip_batch()["video"])).logsumexp(-1).sum().backward()
    trained = {n for n, p in task.named_parameters() if p.grad is not None}
    assert trained == set(task.trainable_names())
    assert {"head.alpha", "head.visual_proj", "head.layers.0.attn.q.weight"} <= trained
    assert "backbone.visual.blocks.1.pre_attn.xclip.attn.in_proj_weight" in trained
    assert not any(n.startswith(("backbone.text.", "backbone.logit_scale")) for n in trained)  # text side frozen
    assert "head.class_embeddings" in task.state_dict()  # the cached class prompts travel with the checkpoint


def test_token_heads_read_side_networks_too():
    """A head that reads patch tokens (X-CLIP's video prompts) works on a side network: DiST hands the frozen tower's
    last tokens on the sparse frames it read."""
    from lit_i2v.strategies import DiST

    task = make_task(DiST.tiny(), VideoPromptHead(), class_names=NAMES).eval()
    video = task.normalize(clip_batch()["video"])  # 4 frames: the tower sees every second one
    with torch.no_grad():
        assert task(video).shape == (2, 8)
        tokens = task.pooled(video)[1]
        sparse = video[:, ::2].flatten(0, 1)
        _, (last,) = task.backbone.visual.forward_intermediates(sparse, indices=1, num_frames=2)
    assert torch.allclose(tokens, last[:, 1:].unflatten(0, (2, 2)), atol=1e-6)  # the class token left out


def test_vifi_clip_trains_both_towers_through_the_class_prompts():
    templates = ["a photo of a {}.", "{}"]
    vifi = make_task(FullFinetune(towers=["visual", "text"]), PromptEncoderHead(templates), class_names=NAMES)
    fixed = make_task(Frozen(), TextClassifierHead(templates=templates, trainable=False), class_names=NAMES)
    video = vifi.normalize(clip_batch()["video"])
    with torch.no_grad():
        assert torch.allclose(vifi.eval()(video), fixed.eval()(video), atol=1e-4)  # the same classifier at start
    vifi.train()(video).logsumexp(-1).sum().backward()
    grads = {n for n, p in vifi.named_parameters() if p.grad is not None and p.grad.abs().sum() > 0}
    assert "backbone.text.blocks.0.attn.qkv.weight" in grads and "backbone.logit_scale" in grads
    assert "backbone.visual.blocks.0.attn.qkv.weight" in grads
    assert not [n for n, _ in vifi.head.named_parameters()]  # the class embeddings are the text tower's output
    calls = []
    encode = vifi.backbone.encode_text
    vifi.backbone.encode_text = lambda *a, **k: calls.append(1) or encode(*a, **k)
    vifi.eval()
    with torch.no_grad():
        vifi(video), vifi(video)
    assert len(calls) == 1  # evaluation encodes the prompts once per pass
    vifi.train()(video)
    assert len(calls) == 2  # training re-encodes every step


def test_compiled_tower_keeps_its_names_and_outputs():
    eager = make_task(FullFinetune(), LinearHead(dropout=0.0)).eval()
    compiled = make_task(FullFinetune(), LinearHead(dropout=0.0), runtime=Runtime(compile="eager")).eval()
    assert eager.backbone.visual._compiled_call_impl is None
    compiled.configure_model()  # what Lightning calls before training
    assert compiled.backbone.visual._compiled_call_impl is not None  # the tower now runs through torch.compile
    assert compiled.state_dict().keys() == eager.state_dict().keys()  # checkpoints stay interchangeable
    video = eager.normalize(clip_batch()["video"])
    with torch.no_grad():
        assert torch.allclose(compiled(video), eager(video), atol=1e-5)


@pytest.mark.parametrize("slow", ["data", "step"])
def test_throughput_callback_tells_data_wait_from_compute(slow, tmp_path):
    """A loader that sleeps shows as data wait; a step that sleeps as compute; clips/s counts the batches' clips."""
    import time

    import lightning as L
    from torch.utils.data import DataLoader

    from lit_i2v.callbacks import Throughput

    def collate(items):
        if slow == "data":
            time.sleep(0.03)
        return {"video": torch.stack(items)}

    class Tiny(L.LightningModule):
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.zeros(1))

        def training_step(self, batch, batch_idx):
            if slow == "step":
                time.sleep(0.03)
            return (self.w * batch["video"].float().mean()).sum() ** 2

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1)

    logged = {}

    class Keep(L.Callback):
        def on_train_epoch_end(self, trainer, module):
            logged.update({k: float(v) for k, v in trainer.callback_metrics.items()})

    trainer = L.Trainer(max_epochs=1, callbacks=[Throughput(window=5), Keep()], logger=False,
                        enable_checkpointing=False, enable_progress_bar=False, default_root_dir=tmp_path)  # fmt: skip
    trainer.fit(Tiny(), DataLoader(list(torch.zeros(48, 3)), batch_size=4, collate_fn=collate))
    assert 4 / 0.03 * 0.5 < logged["perf/clips_per_s"] < 4 / 0.03 * 1.05  # about 4 clips per 30 ms
    if slow == "data":
        assert logged["perf/data_wait"] > 0.8
    else:
        assert logged["perf/data_wait"] < 0.2


def test_a_checkpoint_whose_strategy_modules_were_saved_as_strategy_loads_into_transfer():
    """Until 2026-12 the task held its transfer strategy as ``strategy``: a side network's keys began so."""
    from lit_i2v.strategies import EVL

    torch.manual_seed(0)
    saved = ActionRecognition(CLIP("ViT-T-8-test"), 8, transfer=EVL.tiny())
    old = {k.replace("transfer.", "strategy.", 1) if k.startswith("transfer.") else k: v
           for k, v in saved.state_dict().items()}  # fmt: skip
    assert any(k.startswith("strategy.") for k in old)
    fresh = ActionRecognition(CLIP("ViT-T-8-test"), 8, transfer=EVL.tiny())
    checkpoint = {"state_dict": old}
    fresh.on_load_checkpoint(checkpoint)
    fresh.load_state_dict(checkpoint["state_dict"])  # strict: every key found
    assert all(torch.equal(v, fresh.state_dict()[k]) for k, v in saved.state_dict().items())
