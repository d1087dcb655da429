"""Invariants every transfer strategy satisfies, parametrized over all of them, plus per-method checks."""

from __future__ import annotations

import pytest
import torch

from lit_i2v.backbones import CLIP, create_clip
from lit_i2v.errors import ConfigError
from lit_i2v.heads import LinearHead
from lit_i2v.strategies import (
    AIM,
    EVL,
    VPT,
    XCLIP,
    AdaptFormer,
    Compose,
    DiST,
    Frozen,
    LoRA,
    MoMa,
    PartialFinetune,
    STAdapter,
    TimmImageModel,
    TransferStrategy,
    VitaCLIP,
    WithExtraModel,
    ZeroI2V,
)
from lit_i2v.strategies.st_adapter import STAdapterModule
from lit_i2v.strategies.zeroi2v import shift_heads
from lit_i2v.summary import count_gflops
from lit_i2v.tasks import ActionRecognition

# Tiny tower: width 64, 2 blocks, 2 heads, 4x4 patches. Values are (factory, extra trainable backbone parameters).
W, DEPTH, HEADS, GRID = 64, 2, 2, 4
NORMS = 2 * DEPTH * 2 * W + 2 * 2 * W  # norm1/norm2 per block, norm_pre and norm; weight + bias each


def adapter(hidden):  # a D->h->D bottleneck with biases
    return W * hidden + hidden + hidden * W + W


def moma(hidden=W // 2, state=4, rank=2, gate=False):  # one MoMa SSM layer (Mamba's layout, out doubled to y1, y2)
    projections = W * hidden * (2 if gate else 1) + hidden * (rank + 2 * state) + (rank * hidden + hidden)
    return 2 * W + projections + (4 * hidden + hidden) + hidden * state + hidden + hidden * 2 * W


MESSAGE = (W * W + W) + 2 * W + (3 * W * W + 3 * W) + (W * W + W)  # X-CLIP per block: fc, LN, attention in/out
TOWER = sum(p.numel() for n, p in CLIP("ViT-T-8-test").visual.named_parameters() if not n.startswith("head."))


def exported_strategies() -> dict[str, type[TransferStrategy]]:
    """Every strategy ``lit_i2v.strategies`` exports: each runs through every invariant below, configured by its own
    ``tiny()``, with no entry in this file (timm's ``list_models()`` way)."""
    import lit_i2v.strategies as package

    found = {name: getattr(package, name) for name in package.__all__}
    return {
        n: c
        for n, c in found.items()
        if isinstance(c, type) and issubclass(c, TransferStrategy) and c is not TransferStrategy
    }


# Every exported strategy at its tiny configuration, plus variants that the papers use (more seams, other scales).
STRATEGIES = {name.lower(): cls.tiny for name, cls in exported_strategies().items()} | {
    "bitfit": lambda: PartialFinetune(biases=True),
    "norms_only": lambda: PartialFinetune(norms=True),
    "st_adapter_24x": lambda: STAdapter(channels=16, positions=["pre_attn", "pre_mlp"]),
    "aim_ssv2": lambda: AIM(scale=1.0, temporal_in=True, max_frames=32),
    "zeroi2v_3_adapters": lambda: ZeroI2V(scale=1.0, mlp_out=False),
    "vpt_deep": lambda: VPT(num_prompts=3, deep=True),
    "xclip_messages_only": lambda: XCLIP(train_tower=False),
    "vpt_plus_adaptformer": lambda: Compose([VPT(num_prompts=3), AdaptFormer(hidden=8)]),  # prompts beside adapters
    "vpt_plus_st_adapter": lambda: Compose([VPT(num_prompts=3), STAdapter(channels=16)]),  # prompts: prefix tokens
    "moma_padded_gated": lambda: MoMa(window=3, class_token="own", state=4, gate=True),  # 4x4 grid in 3x3 windows
    "moma_full_frames_one_scan": lambda: MoMa(
        window=None, state=4, orders=["temporal"], bidirectional=False, pool="tower"
    ),  # fmt: skip
}
# Trainable backbone parameters each method's arithmetic gives on the tiny tower (None: the whole tower).
COUNTS = {
    "frozen": 0,
    "fullfinetune": None,
    "partialfinetune": None,
    "bitfit": DEPTH * (3 * W + W + 4 * W + W + 2 * W) + 2 * W,  # + LN biases
    "norms_only": NORMS,
    "stadapter": DEPTH * (W * 16 + 16 + 16 * 3 + 16 + 16 * W + W),
    "st_adapter_24x": 2 * DEPTH * (W * 16 + 16 + 16 * 3 + 16 + 16 * W + W),
    "aim": DEPTH * 3 * adapter(16) + 32 * W + 2 * W,
    "aim_ssv2": DEPTH * 4 * adapter(16) + 32 * W + 2 * W,
    "zeroi2v": DEPTH * 4 * adapter(16) + 2 * W,
    "zeroi2v_3_adapters": DEPTH * 3 * adapter(16) + 2 * W,
    "lora": DEPTH * 4 * ((W + 3 * W) + (W + W) + (W + 4 * W) + (4 * W + W)),
    "adaptformer": DEPTH * adapter(8),
    "vpt": 3 * W,
    "vpt_deep": DEPTH * 3 * W,
    "evl": 0,  # a side network: the backbone stays frozen
    "xclip": TOWER + DEPTH * MESSAGE,  # the image tower fine-tuned with its message tokens
    "xclip_messages_only": DEPTH * MESSAGE,
    "dist": 0,  # a side network, like EVL
    "vitaclip": 32 * W + DEPTH * (3 * W + (W * W + W) + 32 * W + 2 * W + (4 * W * W + 4 * W)),
    "compose": DEPTH * 4 * (W + 3 * W) + DEPTH * (W * 16 + 16 + 16 * 3 + 16 + 16 * W + W),  # LoRA + ST-Adapter
    "vpt_plus_adaptformer": 3 * W + DEPTH * adapter(8),
    "vpt_plus_st_adapter": 3 * W + DEPTH * (W * 16 + 16 + 16 * 3 + 16 + 16 * W + W),
    "withextramodel": DEPTH * 4 * (W + 3 * W),  # a frozen second tower beside LoRA on the backbone
    "moma": DEPTH * moma(),
    "moma_padded_gated": DEPTH * moma(gate=True),
    "moma_full_frames_one_scan": DEPTH * moma(),
}


def tiny_timm(**kwargs) -> TimmImageModel:
    """A 2-block timm ViT at 32 px, randomly initialised (no download), as the extra model."""
    args = dict(img_size=32, patch_size=8, depth=2, embed_dim=48, num_heads=2)
    return TimmImageModel("vit_tiny_patch16_224", pretrained=False, model_args=args, **kwargs)


# The two families' tiny towers: one with a class token (CLIP), one without, pooled by attention (SigLIP).
FAMILIES = ("ViT-T-8-test", "SigLIP-T-8-test")


def on_families(names) -> list:
    """(strategy, arch) cases: every strategy on both families, except that methods built on the class token run on
    CLIP only (on SigLIP they are refused by name: ``test_every_strategy_runs_on_a_tower_without_a_class_token...``)."""
    return [pytest.param(n, arch, id=f"{n}-{arch.split('-')[0]}") for n in names for arch in FAMILIES
            if arch == FAMILIES[0] or not STRATEGIES[n]().needs_class_token]  # fmt: skip


def backbone(arch: str = "ViT-T-8-test") -> CLIP:
    torch.manual_seed(0)  # the same "pretrained" weights every time
    return CLIP(arch)


def task(name: str, arch: str = "ViT-T-8-test") -> ActionRecognition:
    torch.manual_seed(1)
    strategy = STRATEGIES[name]()
    head = LinearHead(project=strategy.needs_projection)  # DiST's features lie in CLIP's joint space only
    return ActionRecognition(backbone(arch), num_classes=5, transfer=strategy, head=head)


def clips(t: int = 4, b: int = 2) -> torch.Tensor:
    torch.manual_seed(2)
    return torch.randn(b, t, 3, 32, 32)


def perturb(model: ActionRecognition) -> None:
    """Move every trainable parameter so that a test cannot pass on zero-initialised values."""
    torch.manual_seed(3)
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:
                p.add_(torch.randn_like(p) * 0.05)


@pytest.mark.parametrize(("name", "arch"), on_families(STRATEGIES))
def test_pretrained_names_unchanged_and_new_ones_prefixed(name, arch):
    plain_state = backbone(arch).state_dict()
    model = task(name, arch)
    state = model.backbone.state_dict()
    for key, value in plain_state.items():
        assert key in state, f"{name} renamed {key}"
        assert torch.equal(state[key], value)
    added = set(state) - set(plain_state)
    assert all(model.transfer.owns(k) for k in added), f"{name} added unprefixed {sorted(added)[:4]}"


@pytest.mark.parametrize(("name", "arch"), on_families(STRATEGIES))
def test_trainable_set_is_the_predicate_and_the_papers_count(name, arch):
    model = task(name, arch)
    for key, param in model.backbone.named_parameters():
        off_path = key.startswith("visual.head.")  # the linear head reads tower features, not CLIP's projection
        assert param.requires_grad == (model.transfer.trainable(key) and not off_path), key
    trainable = sum(p.numel() for p in model.backbone.parameters() if p.requires_grad)
    if COUNTS.get(name) is not None and arch == "ViT-T-8-test":
        assert trainable == COUNTS[name]
    frozen_extra = getattr(model.transfer, "extra", None)  # a frozen extra model is the strategy's but does not train
    frozen = sum(p.numel() for p in frozen_extra.parameters()) if frozen_extra and not frozen_extra.trainable else 0
    own = sum(p.numel() for p in model.head.parameters()) + sum(p.numel() for p in model.transfer.parameters())
    own -= frozen
    assert sum(p.numel() for p in model.parameters() if p.requires_grad) == trainable + own


@pytest.mark.parametrize(("name", "arch"), on_families(n for n, make in STRATEGIES.items() if make().identity_at_init))
def test_zero_initialised_methods_start_as_the_pretrained_model(name, arch):
    model = task(name, arch)
    reference = ActionRecognition(backbone(arch), num_classes=5, transfer=model.transfer.reference_at_init())
    model.head.load_state_dict(reference.head.state_dict())
    with torch.no_grad():
        assert torch.allclose(model.eval()(clips()), reference.eval()(clips()), atol=1e-5)


@pytest.mark.parametrize(("name", "arch"), on_families(STRATEGIES))
def test_backward_reaches_trainable_parameters_only(name, arch):
    model = task(name, arch).train()
    perturb(model)
    model(clips()).logsumexp(-1).sum().backward()
    for key, param in model.named_parameters():
        if param.requires_grad:
            assert param.grad is not None, f"{key} trains but got no gradient"
        else:
            assert param.grad is None, f"{key} is frozen but got a gradient"


@pytest.mark.parametrize(("name", "arch"), on_families(STRATEGIES))
def test_tokens_come_with_the_same_features(name, arch):
    """``encode(tokens=True)``: the features ``forward`` gives, and the last block's patch tokens (no class token),
    side networks included (the frozen tower's tokens they read)."""
    model = task(name, arch).eval()
    project = model.head.needs_projection
    with torch.no_grad():
        features = model.transfer.encode(model.backbone, clips(), project=project, tokens=True)
        plain = model.transfer(model.backbone, clips(), project=project)
    assert torch.allclose(features.frames, plain, atol=1e-6)
    b, t, n, d = features.tokens.shape
    assert (b, n, d) == (2, GRID * GRID, W) and 1 <= t <= 4
    assert model.transfer.encode(model.backbone, clips(), project=project).tokens is None


@pytest.mark.parametrize(("name", "arch"), on_families(STRATEGIES))
def test_save_rebuild_load_gives_identical_outputs(name, arch, tmp_path):
    model = task(name, arch).eval()
    perturb(model)
    torch.save(model.state_dict(), tmp_path / "full.pt")
    rebuilt = task(name, arch).eval()
    rebuilt.load_state_dict(torch.load(tmp_path / "full.pt", weights_only=True))
    with torch.no_grad():
        assert torch.equal(model(clips()), rebuilt(clips()))


@pytest.mark.parametrize(("name", "arch"), on_families(n for n in STRATEGIES if n != "fullfinetune"))
def test_trainable_only_checkpoint_is_small_and_loads_onto_pretrained(name, arch):
    model = task(name, arch).eval()
    perturb(model)
    small = model.trainable_state_dict()
    assert sum(v.numel() for v in small.values()) < 0.5 * sum(v.numel() for v in model.state_dict().values())
    fresh = task(name, arch).eval()
    fresh.load_trainable_state_dict(small)
    with torch.no_grad():
        assert torch.equal(model(clips()), fresh(clips()))
    wrong = dict(small, **{"backbone.visual.blocks.0.bogus": torch.zeros(1)})
    wrong.pop(next(iter(small)))
    with pytest.raises(ValueError, match="missing .* unexpected \\['backbone.visual.blocks.0.bogus'\\]"):
        fresh.load_trainable_state_dict(wrong)


@pytest.mark.parametrize(("name", "arch"), on_families(n.lower() for n in exported_strategies()))
@pytest.mark.parametrize("frames", [8, 16, 32])
def test_any_number_of_frames_and_views(name, arch, frames):
    model = task(name, arch).eval()
    with torch.no_grad():
        assert model(clips(t=frames, b=1)).shape == (1, 5)
        views = torch.randint(0, 255, (2, 3, frames, 3, 32, 32), dtype=torch.uint8)  # (B, V, T, 3, H, W)
        probs = model.predict_views(views)
    assert probs.shape == (2, 5) and torch.allclose(probs.sum(-1), torch.ones(2))


@pytest.mark.parametrize(("name", "arch"), on_families(n for n, make in STRATEGIES.items() if make().mergeable))
def test_merge_gives_a_plain_backbone_with_equal_outputs(name, arch, tmp_path):
    plain_state = backbone(arch).state_dict()
    model = task(name, arch).eval()
    perturb(model)
    with torch.no_grad():
        before = model(clips())
    plain_flops = count_gflops(ActionRecognition(backbone(arch), num_classes=5, transfer=Frozen()), 4, 32)
    model.transfer.merge(model.backbone)
    with torch.no_grad():
        assert torch.allclose(model(clips()), before, atol=1e-5)
    assert model.backbone.state_dict().keys() == plain_state.keys()  # zero extra parameters
    assert count_gflops(model, 4, 32) == pytest.approx(plain_flops)  # and zero extra FLOPs
    # The merged backbone exports as an ordinary CLIP checkpoint.
    torch.save(model.backbone.state_dict(), tmp_path / "merged.pt")
    strategy = model.transfer.reference_at_init()  # the architecture the merged weights load into
    reloaded = ActionRecognition(create_clip(arch, str(tmp_path / "merged.pt")), 5, transfer=strategy)
    reloaded.head.load_state_dict(model.head.state_dict())
    with torch.no_grad():
        assert torch.allclose(reloaded.eval()(clips()), before, atol=1e-5)


def test_lora_targets_that_match_nothing_raise():
    with pytest.raises(ValueError, match=r"transfer.targets \['attn.q_proj'\] match no linear layer"):
        ActionRecognition(backbone(), 5, transfer=LoRA(targets=["attn.q_proj"]))


def test_st_adapter_leaves_the_class_token_and_mixes_time():
    module = STAdapterModule(W, channels=8)
    with torch.no_grad():
        module.conv.weight.normal_()
        module.up.weight.normal_()
    x = torch.randn(2 * 4, 1 + 16, W)  # B=2, T=4
    out = module(x, num_frames=4)
    assert torch.equal(out[:, 0], x[:, 0])
    changed = x.clone()
    changed[1, 1:] += 1.0  # perturb frame 1 of the first clip
    delta = (module(changed, 4) - out).abs().sum(dim=(1, 2))
    assert delta[0] > 0 and delta[2] > 0 and delta[3] == 0 and delta[4:].sum() == 0  # neighbours t±1 only


def test_zeroi2v_head_shift_takes_neighbouring_frames():
    frames = torch.arange(4.0).view(1, 4, 1, 1, 1).expand(1, 4, 3, 2, 1).reshape(4, 3, 2, 1)  # (B*T, H, L, Dh)
    out = shift_heads(frames, num_frames=4, back=0, forward=1).view(4, 3, 2)[:, :, 0]
    assert out[:, 0].tolist() == [0, 0, 1, 2]  # head 0: frame t-1 (the first keeps its own)
    assert out[:, 1].tolist() == [1, 2, 3, 3]  # head 1: frame t+1 (the last keeps its own)
    assert out[:, 2].tolist() == [0, 1, 2, 3]  # other heads: unchanged


def test_paper_parameter_counts_for_vit_b16():
    """AIM ViT-B/16 with a 400-class head trains 11M parameters (paper, Table 1)."""
    model = ActionRecognition(CLIP("ViT-B-16"), 400, transfer=AIM(max_frames=8))
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert round(trainable / 1e6) == 11


def test_evl_keeps_no_backbone_graph_and_reads_the_last_blocks():
    model = task("evl").train()
    perturb(model)
    outs, qs, ks = model.transfer.frozen_features(model.backbone, clips())
    assert len(outs) == 2 and outs[0].shape == (2, 4, 17, W) and qs[0].shape == (2, 4, HEADS, 17, W // HEADS)
    assert all(not t.requires_grad and t.grad_fn is None for t in outs + qs + ks)  # nothing kept for backward
    with torch.no_grad():
        final, inter = model.backbone.visual.forward_intermediates(clips().flatten(0, 1), indices=2, num_frames=4)
    assert torch.allclose(outs[-1].flatten(0, 1), inter[-1], atol=1e-6)
    with pytest.raises(ValueError, match="transfer.num_layers is 5 but the image tower has 2 blocks"):
        ActionRecognition(backbone(), 5, transfer=EVL(num_layers=5))


@pytest.mark.parametrize(("name", "arch"), on_families(STRATEGIES))
def test_flops_can_be_counted(name, arch):
    """summary counts FLOPs under torch.no_grad with autograd hooks; every strategy must survive it."""
    assert count_gflops(task(name, arch), 4, 32) > 0


def test_xclip_messages_carry_information_across_frames():
    """Without messages, frames are encoded independently; with them, changing one frame changes every frame."""
    changed = clips()
    changed[0, 3] += 1.0  # the last frame of the first clip
    for name, crosses in (("frozen", False), ("xclip", True)):
        model = task(name).eval()
        with torch.no_grad():
            before = model.transfer(model.backbone, clips())  # (B, T, D)
            after = model.transfer(model.backbone, changed)
        delta = (after - before).abs().sum(-1)  # (B, T)
        assert delta[0, 3] > 0 and delta[1].sum() == 0  # the changed frame moves; the other clip never does
        assert (delta[0, :3].sum() > 0) == crosses, name
    tokens = task("xclip").backbone.visual.forward_features(clips().flatten(0, 1), num_frames=4)
    assert tokens.shape == (8, 1 + GRID * GRID, W)  # the message is gone after each block


def test_dist_reads_every_block_on_sparse_frames_and_dense_frames_beside():
    model = task("dist").train()
    perturb(model)
    video = clips(t=8)
    outs = model.transfer.frozen_features(model.backbone, video[:, ::2])
    assert len(outs) == DEPTH and outs[0].shape == (2, 4, 17, W)  # every block, T/alpha = 4 frames
    assert all(not o.requires_grad for o in outs)
    out = model.transfer(model.backbone, video, project=True)
    assert out.shape == (2, 1, 32)  # one embedding in the joint space
    changed = video.clone()
    changed[:, 1] += 1.0  # a frame the image tower never sees: only the dense temporal path reads it
    with torch.no_grad():
        assert not torch.allclose(model.transfer(model.backbone, changed, project=True), out)
    with pytest.raises(ValueError, match="7 frames are not a multiple of transfer.alpha=2"):
        model.transfer(model.backbone, clips(t=7), project=True)
    with pytest.raises(ValueError, match="DiST outputs CLIP's joint space"):
        ActionRecognition(backbone(), 5, transfer=DiST(integration_dim=16))(clips(t=4))


def test_vita_prompts_join_every_block_and_leave_again():
    model = task("vitaclip").eval()
    perturb(model)
    with torch.no_grad():
        tokens = model.backbone.visual.forward_features(clips().flatten(0, 1), num_frames=4)
        assert tokens.shape == (8, 1 + GRID * GRID, W)  # global, local and summary tokens all removed again
        before = model.transfer(model.backbone, clips())
        changed = clips()
        changed[0, 3] += 1.0
        delta = (model.transfer(model.backbone, changed) - before).abs().sum(-1)
    assert delta[0, :3].sum() > 0 and delta[1].sum() == 0  # local prompts and the summary mix frames of a clip
    global_only = VitaCLIP(num_global=3, local_prompts=False, summary_token=False, max_frames=32)
    frames = ActionRecognition(backbone(), 5, transfer=global_only).eval()
    with torch.no_grad():
        delta = (frames.transfer(frames.backbone, changed) - frames.transfer(frames.backbone, clips())).abs()
    assert delta.sum(-1)[0, :3].sum() == 0  # global prompts alone are per frame


def test_extra_model_joins_from_its_own_checkpoint_and_trains_when_asked(tmp_path):
    from safetensors.torch import save_file

    source = tiny_timm()
    with torch.no_grad():
        for p in source.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    save_file(source.model.state_dict(), str(tmp_path / "extra.safetensors"))
    args = dict(img_size=32, patch_size=8, depth=2, embed_dim=48, num_heads=2)
    loaded = TimmImageModel("vit_tiny_patch16_224", checkpoint=str(tmp_path / "extra.safetensors"), model_args=args)
    frames = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(loaded.eval()(frames), source.eval()(frames))
    larger = TimmImageModel(  # the same weights at 48 px: the position embedding is resampled to a 6x6 grid
        "vit_tiny_patch16_224", checkpoint=str(tmp_path / "extra.safetensors"), model_args=dict(args, img_size=48)
    )
    assert larger.image_size == 48 and larger.model.pos_embed.shape == (1, 37, 48)
    model = ActionRecognition(backbone(), 5, transfer=WithExtraModel(loaded)).train()
    assert not any(p.requires_grad for p in model.transfer.extra.parameters())
    assert {n for n in model.trainable_names() if n.startswith("transfer.")} == {
        "transfer.fuse.weight", "transfer.fuse.bias"
    }  # fmt: skip
    with torch.no_grad():
        model.transfer.fuse.weight.normal_()
        a = model.transfer(model.backbone, clips())
        b = model.transfer(model.backbone, clips() * 1.5)  # the extra tower sees different frames
    assert not torch.allclose(a, b)
    trained = ActionRecognition(backbone(), 5, transfer=WithExtraModel(tiny_timm(trainable=True))).train()
    trained(clips()).logsumexp(-1).sum().backward()
    assert trained.transfer.extra.model.blocks[0].attn.qkv.weight.grad is not None
    torch.save({"cls_token": torch.zeros(1, 1, 48)}, tmp_path / "bad.pt")  # most weights missing
    with pytest.raises(ValueError, match="bad.pt does not fit timm model vit_tiny_patch16_224"):
        TimmImageModel("vit_tiny_patch16_224", checkpoint=str(tmp_path / "bad.pt"), model_args=args)


def test_a_strategy_in_the_joint_space_refuses_a_head_on_tower_features():
    with pytest.raises(ValueError, match="model.init_args.head: DiST outputs CLIP's joint space"):
        ActionRecognition(backbone(), 5, transfer=DiST.tiny(), head=LinearHead())


def test_compose_refuses_side_networks_and_repeated_methods():
    with pytest.raises(ValueError, match=r"\['EVL'\] compute their own features"):
        Compose([LoRA(), EVL()])
    with pytest.raises(ValueError, match="two parts share a prefix"):
        Compose([LoRA(), LoRA(targets=["mlp.fc1"])])


def test_compose_refuses_parts_that_replace_the_same_module():
    class ShiftAgain(ZeroI2V):  # ZeroI2V's changes under another prefix: both replace blocks.*.attn
        prefix = "again"

    with pytest.raises(ValueError, match=r"ShiftAgain replaces visual.blocks.0.attn, which ZeroI2V replaced"):
        Compose([ZeroI2V(), ShiftAgain()]).apply(CLIP("ViT-T-8-test"))


@pytest.mark.parametrize("frames", [3, 4])
def test_aim_with_zeroi2v_runs_its_temporal_attention_per_position(frames):
    """AIM reuses the block's attention over each position's T frames; ZeroI2V's head shift inside it must see those
    B*N sequences as items, not as frames of clips (it used to fail, or mix positions, when given T)."""
    torch.manual_seed(0)
    backbone = CLIP("ViT-T-8-test")
    Compose([AIM(), ZeroI2V()]).apply(backbone)
    video = torch.randn(2, frames, 3, 32, 32)  # B*N = 2*17 sequences: not divisible by 4
    out = backbone.encode_video(video)
    assert out.shape[:2] == (2, frames) and torch.isfinite(out).all()
    # the temporal pass sees each sequence whole: permuting the clips of the batch permutes the output
    assert torch.allclose(backbone.encode_video(video.flip(0)), out.flip(0), atol=1e-5)


def test_temporal_transformer_can_start_from_the_text_tower():
    """CLIP4Clip's seqTransf: the first text blocks and text position embeddings, on projected features."""
    from lit_i2v.heads import TemporalTransformer

    torch.manual_seed(0)
    clip = CLIP("ViT-S-8-tiny")  # embed_dim 64 = text width 64
    temporal = TemporalTransformer(layers=2, heads=5, max_frames=8, init_from_text=True)
    temporal.build(clip.embed_dim, clip)
    assert temporal.heads == clip.text.blocks[0].attn.num_heads
    for block, text_block in zip(temporal.blocks, clip.text.blocks):
        assert all(torch.equal(a, b) for a, b in zip(block.state_dict().values(), text_block.state_dict().values()))
    assert torch.equal(temporal.frame_pos, clip.text.pos_embed[:, :8])
    with pytest.raises(ValueError, match="as wide as the text tower"):
        TemporalTransformer(layers=1, init_from_text=True).build(32, CLIP("ViT-T-8-test"))  # E 32, text 64


def test_paper_parameter_counts_for_vit_l14():
    """AIM ViT-L/14 with a 400-class head trains 38M parameters (paper, Table 1); counted on the meta device."""
    with torch.device("meta"):
        model = ActionRecognition(CLIP("ViT-L-14"), 400, transfer=AIM(max_frames=8))
    assert round(sum(p.numel() for p in model.parameters() if p.requires_grad) / 1e6) == 38


@pytest.mark.parametrize("name", STRATEGIES)
def test_every_strategy_runs_on_a_tower_without_a_class_token_or_is_refused_by_name(name):
    """On the tiny SigLIP (no class token, attention pooling), a strategy either works (identity at init where it
    declares it, gradients where it trains) or declares ``needs_class_token`` and is refused in one line."""
    torch.manual_seed(1)
    strategy = STRATEGIES[name]()
    head = LinearHead(project=strategy.needs_projection)
    torch.manual_seed(0)
    siglip = CLIP("SigLIP-T-8-test")
    if strategy.needs_class_token:
        with pytest.raises(ConfigError, match=r"model.init_args.transfer: \w+ reads the image tower's class token"):
            ActionRecognition(siglip, num_classes=5, transfer=strategy, head=head)
        return
    model = ActionRecognition(siglip, num_classes=5, transfer=strategy, head=head).train()
    if strategy.identity_at_init:
        torch.manual_seed(0)
        reference = ActionRecognition(CLIP("SigLIP-T-8-test"), num_classes=5,
                                      transfer=strategy.reference_at_init())  # fmt: skip
        reference.head.load_state_dict(model.head.state_dict())
        with torch.no_grad():
            assert torch.allclose(model.eval()(clips()), reference.eval()(clips()), atol=1e-5)
    model.train()
    model(clips()).logsumexp(-1).sum().backward()
    assert any(p.grad is not None for p in model.parameters() if p.requires_grad)
