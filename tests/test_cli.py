"""The command line: every shipped config parses, summary/check-data/synth work, fit/validate/test/predict run,
and errors a newcomer meets are one clear line."""

from __future__ import annotations

import csv
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from lit_i2v.cli import main
from tests.conftest import hub_snapshot

ROOT = Path(__file__).resolve().parents[1]
RECIPES = sorted(p for p in (ROOT / "configs").rglob("*.yaml") if "trainer" not in p.parts)
TRAINER_CONFIGS = sorted((ROOT / "configs" / "trainer").glob("*.yaml"))


def tiny_overrides(synth_root: Path, run_dir: Path) -> list[str]:
    """Point the quickstart at the small test dataset and a tiny random model, one short epoch, logs in run_dir."""
    return [
        "--config", str(ROOT / "configs" / "quickstart.yaml"),
        "--model.init_args.backbone.init_args.arch=ViT-T-8-test",
        "--model.init_args.backbone.init_args.pretrained=null",
        "--model.init_args.temporal.init_args.heads=2",
        f"--data.init_args.root={synth_root}",
        "--data.init_args.synthetic.video_size=32",
        "--data.init_args.batch_size=8",
        "--data.init_args.num_workers=0",
        "--data.init_args.sampler.init_args.num_frames=4",
        "--trainer.max_epochs=1",
        f"--trainer.default_root_dir={run_dir}",
        f"--trainer.logger.init_args.save_dir={run_dir}",
        "--trainer.enable_progress_bar=false",
    ]  # fmt: skip


def metrics(run_dir: Path) -> list[dict]:
    files = sorted(run_dir.rglob("metrics.csv"))
    assert files, f"no metrics.csv under {run_dir}"
    return list(csv.DictReader(open(files[-1])))


def last_value(rows: list[dict], key: str) -> float:
    return [float(r[key]) for r in rows if r.get(key)][-1]


@pytest.mark.parametrize("config", RECIPES, ids=lambda p: str(p.relative_to(ROOT / "configs")))
def test_every_recipe_parses(config, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["fit", "--config", str(config), "--print_config"])
    assert exit_.value.code == 0
    printed = capsys.readouterr().out
    assert "class_path: lit_i2v.tasks." in printed


@pytest.mark.parametrize("trainer", TRAINER_CONFIGS, ids=lambda p: p.name)
def test_trainer_configs_compose(trainer, capsys):
    with pytest.raises(SystemExit):
        main(["fit", "--config", str(ROOT / "configs" / "quickstart.yaml"), "--config", str(trainer), "--print_config"])
    assert "devices:" in capsys.readouterr().out


def expected(config: Path) -> dict[str, float]:
    """The figures a recipe declares beside its paper's description: ``# expect: frames=8 views=3
    gflops_per_view=202 trainable_m=11 (...)`` (frames and views always; GFLOPs and trainable millions where the
    paper states them)."""
    line = next((line for line in config.read_text().splitlines() if line.startswith("# expect:")), None)
    assert line, f"{config.name}: add an '# expect: frames=... views=...' line (and the paper's figures) to the recipe"
    return {key: float(value) for key, value in re.findall(r"(\w+)=([\d.]+)", line)}


@pytest.mark.parametrize("config", [c for c in RECIPES if "vit-b16" in c.name], ids=lambda p: p.name)
def test_summary_of_recipes_without_weights(config, capsys, tmp_path, monkeypatch):
    """Recipes are inspectable where their weights and data are absent; ViT-B/16 counts 17.6 GFLOPs a frame, and
    each recipe costs what it declares (its paper's figures where the paper states them). A recipe's GPT-2 is built
    from GPT-2 small's config (transformers' defaults) in a Hugging Face cache that holds nothing else."""
    if "hf-hub:openai-community/gpt2" in config.read_text():
        from transformers import GPT2Config

        from lit_i2v.backbones.causal_lm import write_tiny_gpt2

        tiny = write_tiny_gpt2(tmp_path / "tiny-gpt2")
        files = {n: (tiny / n).read_text() for n in ("vocab.json", "merges.txt", "tokenizer.json",
                                                      "tokenizer_config.json")}  # fmt: skip
        hub_snapshot(monkeypatch, tmp_path / "hub", "openai-community/gpt2",
                     files | {"config.json": GPT2Config().to_json_string()})  # fmt: skip
    with pytest.warns(UserWarning, match="not on this machine"):
        assert main(["summary", "--config", str(config), "--json"]) == 0
    s = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    paper = expected(config)
    assert s["image_tower_params"] - s["extra_params"] == 86_192_640
    assert s["frames"] == paper["frames"]  # DiST: 16 dense, 8 for the tower
    assert s["views"] == s["temporal_views"] * s["spatial_crops"] == paper["views"]
    if s["extra_params"] == 0 and s["strategy_params"] == 0:  # nothing added to the tower: the plain tower's cost
        assert s["gflops_per_view"] == pytest.approx(s["frames"] * 17.56, rel=0.01)
    if s["strategy"] == "FullFinetune" and s["model"] == "ActionRecognition":
        # the image tower without CLIP's projection (unused) plus the linear head, or (ViFi-CLIP) both towers and the
        # logit scale with the parameter-free text classifier
        projection, head = 768 * 512, 768 * (174 if "ssv2" in str(config) else 400)
        image_only = s["image_tower_params"] - projection + head + head // 768
        assert s["trainable_params"] in (image_only, s["image_tower_params"] + s["text_tower_params"] + 1)
    if "gflops_per_view" in paper:
        assert s["gflops_per_view"] == pytest.approx(paper["gflops_per_view"], rel=0.01)
    if "trainable_m" in paper:
        assert round(s["trainable_params"] / 1e6) == paper["trainable_m"]


def test_summary_merged_zeroi2v_has_no_extra_cost(capsys):
    config = str(ROOT / "configs" / "recognition" / "ssv2" / "vit-b16-openai_zeroi2v_8x224.yaml")
    with pytest.warns(UserWarning):
        assert main(["summary", "--config", config, "--json", "--merged"]) == 0
    s = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert s["extra_params"] == 0 and s["gflops_per_view"] == pytest.approx(8 * 17.56, rel=0.01)
    assert main(["summary", "--config", str(ROOT / "configs" / "quickstart.yaml"), "--merged"]) == 2


def test_summary_text(capsys, recwarn):
    assert main(["summary", "--config", str(ROOT / "configs" / "quickstart.yaml")]) == 0
    out = capsys.readouterr().out
    assert "ViT-S-8-tiny" in out and "GFLOPs" in out and "trainable" in out
    # the quickstart's weights fit the model built on the meta device, which keeps none of their values: no warnings
    assert not [w for w in recwarn if "meta parameter" in str(w.message)]


def test_missing_dataset_is_one_clear_line(capsys):
    assert main(["fit", "--config", str(ROOT / "configs" / "ssv2_adapter.yaml")]) == 2
    err = capsys.readouterr().err
    assert "lit_i2v: error: data.train: data/ssv2/something-something-v2-train.json does not exist" in err
    assert "docs/datasets.md" in err and "Traceback" not in err


def test_check_data_names_bad_files(tmp_path, synth_root, capsys):
    videos = sorted((synth_root / "videos").glob("*.mp4"))[:3]
    (tmp_path / "broken.mp4").write_bytes(videos[0].read_bytes()[:200])
    lines = [f"{v} 0" for v in videos] + [f"{tmp_path / 'broken.mp4'} 1", f"{tmp_path / 'gone.mp4'} 2"]
    (tmp_path / "train.txt").write_text("\n".join(lines) + "\n")
    args = [
        "check-data",
        "--config",
        str(ROOT / "configs" / "quickstart.yaml"),
        "--json",
        "--workers",
        "1",
        "--data=lit_i2v.data.VideoDataModule",
        "--data.synthetic=null",
        f"--data.train={tmp_path / 'train.txt'}",
        "--data.annotations.format=list",
    ]
    assert main(args) == 1
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert report["total"] == 5 and report["ok"] == 3
    assert report["missing"] == [str(tmp_path / "gone.mp4")]
    assert [b["path"] for b in report["undecodable"]] == [str(tmp_path / "broken.mp4")]


def test_synth_writes_ssv2_files(tmp_path, capsys):
    root = tmp_path / "motion"
    assert (
        main(
            [
                "synth",
                "--root",
                str(root),
                "--num-train",
                "8",
                "--num-val",
                "8",
                "--num-test",
                "8",
                "--size",
                "32",
                "--frames",
                "8",
            ]
        )
        == 0
    )
    assert {p.name for p in root.iterdir()} == {"videos", "train.json", "validation.json", "test.json", "labels.json"}
    assert len(list((root / "videos").glob("*.mp4"))) == 24 and len(json.loads((root / "labels.json").read_text())) == 8
    small = ["--num-train", "2", "--num-val", "1", "--num-test", "1", "--size", "32"]
    assert main(["synth", "--root", str(root), *small, "--captions", "--questions"]) == 0  # beside the existing set
    written = {p.name for p in root.iterdir()}
    assert {"captions_train.json", "qa_test.json", "mc_validation.json", "answers.json"} <= written
    grounding = tmp_path / "grounding"
    assert main(["synth", "--grounding", "--root", str(grounding), *small, "--frames", "16"]) == 0
    lines = (grounding / "charades_sta_train.txt").read_text().splitlines()
    assert len(lines) == 4 and len(list((grounding / "videos").glob("*.mp4"))) == 4  # 2 events a video
    assert "synthetic grounding dataset at" in capsys.readouterr().out


def test_fit_then_validate_test_predict_from_checkpoint(tmp_path, synth_root):
    run = tmp_path / "run"
    assert main(["fit", *tiny_overrides(synth_root, run)]) == 0
    last = run / "checkpoints" / "last.ckpt"
    best = [p for p in (run / "checkpoints").glob("best-*.ckpt")]
    assert last.is_file() and len(best) == 1
    assert not list((run / "checkpoints").glob(".*.tmp"))  # atomic writes leave no temporary files
    rows = metrics(run)
    assert last_value(rows, "val/videos") == 16
    for command in ("validate", "test"):
        out = tmp_path / command
        assert main([command, *tiny_overrides(synth_root, out), f"--ckpt_path={last}"]) == 0
        key = "val/videos" if command == "validate" else "test/videos"
        assert last_value(metrics(out), key) == (16 if command == "validate" else 8)
    assert main(["predict", *tiny_overrides(synth_root, tmp_path / "pred"), f"--ckpt_path={last}"]) == 0


def test_trainable_only_checkpoints_through_lightning(tmp_path, synth_root):
    """A parameter-efficient run saves only what trains, and Lightning restores it onto the pretrained weights."""
    import torch

    strategy = ["--model.init_args.transfer=lit_i2v.strategies.STAdapter", "--model.init_args.transfer.channels=8",
                "--model.init_args.runtime.trainable_only_checkpoints=true"]  # fmt: skip
    run = tmp_path / "peft"
    assert main(["fit", *tiny_overrides(synth_root, run), *strategy]) == 0
    state = torch.load(run / "checkpoints" / "last.ckpt", weights_only=False)["state_dict"]
    assert state and all(".st_adapter." in k or k.startswith(("head.", "temporal.")) for k in state)
    fit_loss = last_value(metrics(run), "val/loss")  # the last epoch's validation, made with last.ckpt's weights
    out = tmp_path / "validate"
    ckpt = f"--ckpt_path={run / 'checkpoints' / 'last.ckpt'}"
    assert main(["validate", *tiny_overrides(synth_root, out), *strategy, ckpt]) == 0
    assert last_value(metrics(out), "val/loss") == pytest.approx(fit_loss, rel=1e-5)


def test_ddp_evaluation_counts_each_video_once(tmp_path, synth_root):
    """Two CPU processes (gloo), an odd number of test videos: each is scored exactly once."""
    items = json.loads((synth_root / "test.json").read_text())[:7]
    (tmp_path / "test7.json").write_text(json.dumps(items))
    run = tmp_path / "ddp"
    args = [sys.executable, "-m", "lit_i2v", "test", *tiny_overrides(synth_root, run),
            "--data=lit_i2v.data.VideoDataModule", "--data.synthetic=null", f"--data.test={tmp_path / 'test7.json'}",
            f"--data.root={synth_root / 'videos'}", f"--data.annotations.labels={synth_root / 'labels.json'}",
            "--data.annotations.format=ssv2", "--data.eval_batch_size=2", "--data.num_workers=0",
            "--data.eval_transform=lit_i2v.data.EvalTransform", "--data.eval_transform.size=32",
            "--trainer.devices=2", "--trainer.strategy=ddp"]  # fmt: skip
    args = [
        a
        for a in args
        if not a.startswith(
            (
                "--data.init_args.root",
                "--data.init_args.synthetic",
                "--data.init_args.batch_size",
                "--data.init_args.num_workers",
            )
        )
    ]
    done = subprocess.run(args, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert last_value(metrics(run), "test/videos") == 7


def test_torchrun_launcher_runs_distributed_evaluation(tmp_path, synth_root):
    """launch/torchrun.sh with 2 CPU processes: Lightning takes ranks from torchrun; each video counts once. The
    interpreter's folder is off PATH, as in a venv that is not activated: no `torchrun` script is needed."""
    run = tmp_path / "torchrun"
    overrides = [a for a in tiny_overrides(synth_root, run) if not a.startswith("--data.init_args.num_workers")]
    env = dict(os.environ, PYTHON=sys.executable, PATH="/usr/bin:/bin")
    done = subprocess.run(
        ["bash", str(ROOT / "launch" / "torchrun.sh"), "2", "test", *overrides, "--trainer.strategy=ddp",
         "--data.init_args.num_workers=0"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    output = done.stdout + done.stderr
    # Two ranks from torchrun, not 2 x 2 from Lightning launching processes of its own.
    assert output.count("Initializing distributed: GLOBAL_RANK:") == 2, output[-3000:]
    assert last_value(metrics(run), "test/videos") == 8  # the fixture's 8 test videos, once each over 2 ranks


@pytest.mark.slow
def test_quickstart_learns_motion(tmp_path):
    """The README's main job as shipped, on a machine that has nothing yet: the synthetic tiny CLIP is trained into an
    empty cache and the dataset generated on first use; the run then reaches accuracy far above chance (1/8).
    (The shipped run reaches about 60%; a model blind to frame order cannot pass 50% on this data.)"""
    env = dict(os.environ, LIT_I2V_CACHE=str(tmp_path / "cache"))
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "lit_i2v",
            "fit",
            "--config",
            str(ROOT / "configs" / "quickstart.yaml"),
            "--trainer.enable_progress_bar=false",
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=5400,
    )  # fmt: skip  a guard against a hang, not a speed test: 5 minutes alone, 20+ on a loaded 2-core machine
    assert done.returncode == 0, done.stderr[-3000:]
    assert (tmp_path / "cache" / "ViT-S-8-tiny.synthetic.pt").is_file()  # made on first use
    top1 = last_value(metrics(tmp_path / "runs" / "quickstart"), "val/top1")
    assert top1 > 0.4, f"quickstart val/top1 {top1:.3f} is not far above chance (0.125)"


def test_startup_summary_counts_parameters_before_the_strategy_shards_them():
    """By the start of ``fit`` FSDP has left each rank a shard of every parameter: the counts are taken in ``setup``,
    before the strategy wraps the model."""
    from types import SimpleNamespace

    from lit_i2v.backbones import CLIP
    from lit_i2v.callbacks import StartupSummary
    from lit_i2v.tasks import ActionRecognition

    task = ActionRecognition(CLIP("ViT-T-8-test"), num_classes=8)
    trainer = SimpleNamespace(datamodule=None, callbacks=[], num_devices=2, num_nodes=1, precision="bf16-mixed",
                              accelerator=object(), strategy=object())  # fmt: skip
    summary = StartupSummary()
    summary.setup(trainer, task, "fit")
    whole = summary._summary(trainer, task, "fit")
    counted = re.search(r"parameters +(\S+) total, (\S+) trainable", whole).groups()
    total = sum(p.numel() for p in task.parameters())
    assert counted[0] == f"{total / 1e6:.2f}M" and "parts       backbone" in whole
    for param in task.parameters():
        param.data = param.data.flatten()[: param.numel() // 2]  # what one of two ranks holds once sharded
    assert summary._summary(trainer, task, "fit") == whole
    assert StartupSummary()._summary(trainer, task, "fit") != whole  # counted at the start of fit: half of it


def test_fsdp_preset_wraps_and_checkpoints_every_transformer_block():
    """configs/trainer/gpu-fsdp-bf16.yaml builds Lightning's FSDPStrategy (no GPU needed to build it); its policy
    makes one FSDP unit per block of both towers of a ViT-L/14 (24 image + 12 text) and checkpoints the same."""
    import yaml
    from jsonargparse import ArgumentParser
    from lightning.pytorch.strategies import FSDPStrategy, Strategy

    from lit_i2v.backbones import CLIP
    from lit_i2v.backbones.vit import Block

    trainer = yaml.safe_load((ROOT / "configs" / "trainer" / "gpu-fsdp-bf16.yaml").read_text())["trainer"]
    assert trainer["precision"] == "bf16-mixed"
    parser = ArgumentParser()
    parser.add_subclass_arguments(Strategy, "strategy")
    strategy = parser.instantiate(parser.parse_object({"strategy": trainer["strategy"]})).strategy
    assert isinstance(strategy, FSDPStrategy) and strategy.kwargs["use_orig_params"]  # frozen beside trainable
    with torch.device("meta"):
        clip = CLIP("ViT-L-14")
    wrap = strategy.kwargs["auto_wrap_policy"]._run_policy(clip, set(), {})
    assert len(wrap) == 24 + 12 and all(isinstance(m, Block) for m in wrap)  # every block of both towers
    checkpointed = strategy._activation_checkpointing_kwargs["auto_wrap_policy"]._run_policy(clip, set(), {})
    assert len(checkpointed) == 24 + 12


def test_wandb_runs_offline_without_a_key_and_keep_their_id_across_restarts(tmp_path, synth_root, no_wandb_key):
    """Two fits in one run folder (a first launch, then a requeue) log to the same offline W&B run."""
    run = tmp_path / "run"
    logger = ["--trainer.logger=lit_i2v.tracking.WandbLogger", f"--trainer.logger.save_dir={run}"]
    overrides = [a for a in tiny_overrides(synth_root, run) if not a.startswith("--trainer.logger")]
    ids = []
    for _ in range(2):
        assert main(["fit", *overrides, *logger]) == 0
        ids.append((run / "wandb_run_id").read_text().strip())
    offline_runs = sorted((run / "wandb").glob("offline-run-*"))
    assert ids[0] == ids[1] and offline_runs  # offline: no key was set
    assert all(p.name.endswith(f"-{ids[0]}") for p in offline_runs)  # both launches logged to the one run


def test_startup_summary_says_what_trains_on_what(tmp_path, synth_root, capsys):
    assert main(["fit", *tiny_overrides(synth_root, tmp_path / "run"), "--trainer.accumulate_grad_batches=2"]) == 0
    out = capsys.readouterr().out
    assert "lit_i2v fit: ActionRecognition" in out and "ViT-T-8-test (weights: random init)" in out
    assert "strategy    STAdapter(" in out and "trainable" in out
    assert "videos      train 32, val 16" in out  # the fixture's splits
    assert f"data        video files under {synth_root / 'videos'} (auto decoder), 0 worker(s) per device" in out
    assert "8 per device x 1 device(s) x 1 node(s) x 2 accumulated = 16 clips per step" in out
    parts = re.search(r"parts +backbone (\S+) \((\S+) trainable\), temporal (\S+) .*head", out)
    assert parts and parts.group(2) != "0.0k"  # the adapters sit inside the backbone and train
    manifest = json.loads(next((tmp_path / "run").rglob("manifest.json")).read_text())
    assert f"GFLOPs      {manifest['model']['gflops_per_view']} per view" in out
    assert "Total FLOPs" not in out  # Lightning's summary, which prints 0 without an example input, is off


@pytest.mark.filterwarnings("ignore:LightningCLI.s args parameter")
def test_progress_bar_is_rich_by_default_and_a_configured_one_replaces_it(synth_root, tmp_path):
    from lightning.pytorch.callbacks import ProgressBar, TQDMProgressBar

    from lit_i2v.callbacks import RunProgressBar
    from lit_i2v.cli import LitI2VCLI

    def bars(*extra: str) -> list:
        args = [a for a in tiny_overrides(synth_root, tmp_path / "run") if "enable_progress_bar" not in a]
        cli = LitI2VCLI(args=[*args, *extra], run=False)
        return [type(c) for c in cli.trainer.callbacks if isinstance(c, ProgressBar)]

    assert bars() == [RunProgressBar]  # Rich's
    assert bars("--trainer.callbacks+=lightning.pytorch.callbacks.TQDMProgressBar") == [TQDMProgressBar]
    assert bars("--trainer.enable_progress_bar=false") == []


def test_the_progress_bar_shows_counts_as_whole_numbers_and_no_version_number():
    from lightning.pytorch.callbacks.progress.rich_progress import MetricsTextColumn

    from lit_i2v.callbacks import bar_metrics

    items = bar_metrics({"v_num": 0, "train/loss": 2.0, "val/top5": 1.0, "val/videos": 160.0, "train/skipped": 3})
    column = MetricsTextColumn(trainer=None, style="", text_delimiter=" ", metrics_format=".3f")
    column._metrics = items  # what the bar prints, formatted by Lightning's own column
    assert list(column._generate_metrics_texts()) == [
        "train/loss: 2.000", "val/top5: 1.000", "val/videos: 160", "train/skipped: 3"]  # fmt: skip


def test_a_misspelt_config_key_is_one_line_with_the_fix(capsys):
    config = str(ROOT / "configs" / "quickstart.yaml")
    assert main(["fit", "--config", config, "--model.init_args.transfer.init_args.chanels=8"]) == 2
    err = capsys.readouterr().err
    assert "STAdapter (lit_i2v.strategies.STAdapter) has no option 'chanels' - did you mean 'channels'?" in err
    assert "--model.init_args.transfer.init_args.chanels" in err and "usage:" not in err
    assert len(err.strip().splitlines()) == 1


def test_switching_a_class_drops_the_old_class_arguments(caplog, tmp_path):
    """jsonargparse keeps the arguments a new class shares with the one a later source switches away from: the
    quickstart's AdamW(lr=2e-3, weight_decay=0.05) would become SGD(lr=2e-3, weight_decay=0.05). Switched, the new
    class starts from its defaults and what the switching source (or a later one) gives it; the log names what was
    dropped. Sources count in the order given, short class names are the class, values are YAML, list items count."""
    from lit_i2v.cli import LitI2VCLI

    def yaml_file(name, text):
        (tmp_path / name).write_text(text)
        return str(tmp_path / name)

    optimizer = "model:\n  init_args:\n    optim:\n      optimizer:\n"
    sgd = yaml_file("sgd.yaml", optimizer + "        class_path: torch.optim.SGD\n")
    lr = yaml_file("lr.yaml", optimizer + "        init_args: {lr: 0.1}\n")
    adamw = yaml_file(
        "adamw.yaml", optimizer + "        class_path: AdamW\n        init_args: {lr: 0.3, weight_decay: 0.2}\n"
    )
    parts = "model:\n  init_args:\n    transfer:\n{}      init_args:\n        strategies:\n          - {}\n"
    parts += "          - {{class_path: LoRA}}\n"
    compose = yaml_file(
        "compose.yaml",
        parts.format("      class_path: Compose\n", "{class_path: STAdapter, init_args: {blocks: [0], channels: 16}}"),
    )
    adaptformer = yaml_file("adaptformer.yaml", parts.format("", "{class_path: AdaptFormer}"))
    quickstart = ["--config", str(ROOT / "configs" / "quickstart.yaml"),
                  "--model.init_args.backbone.init_args.pretrained=null"]  # fmt: skip

    def optimizer_of(*sources):
        model = LitI2VCLI(args=[*quickstart, *sources], run=False, only=("model",)).model
        built = model.optim.optimizer([torch.nn.Parameter(torch.zeros(1))])
        return type(built).__name__, built.defaults["lr"], built.defaults["weight_decay"], model

    assert optimizer_of("--model.init_args.optim.optimizer.init_args.lr=0.5")[:3] == ("AdamW", 0.5, 0.05)  # kept
    with caplog.at_level("WARNING", logger="lit_i2v"):
        assert optimizer_of("--model.init_args.optim.optimizer=SGD")[:3] == ("SGD", 1e-3, 0)  # a short name
    assert (
        "model.optim.optimizer switched to torch.optim.SGD: lr, weight_decay from the class it replaced" in caplog.text
    )
    sgd_lr = ("--model.init_args.optim.optimizer=torch.optim.SGD", "--model.optim.optimizer.init_args.lr=0.1")
    assert optimizer_of(*sgd_lr)[:3] == ("SGD", 0.1, 0)
    assert optimizer_of("--config", sgd, "--config", lr)[:3] == ("SGD", 0.1, 0)  # a later file gives the new class lr
    assert optimizer_of("--model.init_args.optim.optimizer=SGD", "--config", lr)[:3] == ("SGD", 0.1, 0)  # in order
    as_yaml = "--model.init_args.optim.optimizer={class_path: SGD, init_args: {lr: 0.1}}"
    assert optimizer_of(as_yaml)[:3] == ("SGD", 0.1, 0)
    caplog.clear()
    with caplog.at_level("WARNING", logger="lit_i2v"):  # the same class, named two ways, is no switch
        same = optimizer_of("--config", adamw, "--model.init_args.optim.optimizer=torch.optim.AdamW")
    assert same[:3] == ("AdamW", 0.3, 0.2)
    assert "switched" not in caplog.text
    switched = optimizer_of("--model.init_args.transfer.init_args.blocks=[0]", "--model.init_args.transfer=AdaptFormer")
    assert type(switched[3].transfer).__name__ == "AdaptFormer" and switched[3].transfer.blocks is None
    part = optimizer_of("--config", compose, "--config", adaptformer)[3].transfer.parts[0]
    assert type(part).__name__ == "AdaptFormer" and part.blocks is None  # a list item switched keeps nothing either
