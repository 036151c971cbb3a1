"""``selfsup pretrain ijepa`` end to end, in-process, on the tiny red/blue image tree of
test_cli: a ViT-tiny (patch 8 on 32 px: a 4 x 4 grid) with a two-block predictor, batch 8,
4 steps; then kNN/linear evaluation, exact resume, a SimCLR run on a ViT, and bad input."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
import torch
from test_cli import assert_user_error, read_metrics, run, top1_line

from selfsup.config import ConfigError, describe
from selfsup.engine.checkpoint import load_checkpoint
from selfsup.evaluation import encoder_from_checkpoint
from selfsup.methods.ijepa import IJEPA
from selfsup.recipes import IJEPAConfig

STEPS = 4


def ijepa_overrides(dataset: Path, run_dir: Path, **extra: Any) -> list[str]:
    values: dict[str, Any] = {
        "data.dataset": dataset,
        "data.cache": "false",
        "model.encoder": "vit_tiny",
        "model.patch_size": 8,
        "model.predictor_dim": 48,
        "model.predictor_depth": 2,
        "masks.min_context": 2,  # a 4 x 4 grid: 16 patches, four targets of 2 to 4
        "augment.size": 32,
        "train.batch_size": 8,
        "train.epochs": 2,
        "train.run_dir": run_dir,
        "train.progress": "false",
        "train.device": "cpu",
        "train.precision": "fp32",
        "train.num_threads": 1,
        "train.log_every": 1,
        "train.checkpoint_every": 1,
        "train.collapse_every": 1,
        "optim.warmup_epochs": 1,
        "eval.linear_epochs": 2,
        "eval.knn_k": 5,
    }
    values.update(extra)
    return [f"{k}={v}" for k, v in values.items()]


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)


@pytest.fixture(scope="module")
def trained(data: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    run_dir = tmp_path_factory.mktemp("run") / "ijepa"
    args = ijepa_overrides(data, run_dir, **{"train.knn_every_epochs": 1})
    code, out, err = run("pretrain", "ijepa", *args, "--eval")
    assert code == 0, err
    return run_dir, out


def test_pretrain_ijepa_logs_collapse_statistics_and_evaluates(trained: tuple[Path, str]) -> None:
    run_dir, out = trained
    ckpt = load_checkpoint(run_dir / "last.pt")
    meta = ckpt["meta"]
    assert ckpt["step"] == STEPS and meta["method"] == "ijepa"
    assert meta["encoder"] == {"name": "vit_tiny", "kwargs": {"img_size": 32, "patch_size": 8}}
    assert meta["eval_encoder_prefix"] == "target_encoder."
    assert any(k.startswith("target_encoder.") for k in ckpt["method_state"])
    knn, linear = top1_line(out, "knn"), top1_line(out, "linear")
    assert knn > 50 and linear >= 0  # red versus blue
    records = read_metrics(run_dir)
    assert [r["step"] for r in records] == [1, 2, 3, 4]
    for r in records:
        assert math.isfinite(r["loss"]) and r["target_std"] > 0 and r["target_rankme"] >= 1
        assert 0 < r["weight_decay"] < 0.4
    # Weight decay rises (cosine 0.04 -> 0.4); lr warms up from start_lr over epoch 1.
    assert records[0]["weight_decay"] < records[-1]["weight_decay"]
    assert records[0]["lr"] == pytest.approx(2e-4 * 8 / 8)  # lr_scaling none
    assert round(records[-1]["knn_top1"], 2) == knn  # monitor and --eval agree


def test_eval_reads_ijepa_checkpoints(trained: tuple[Path, str]) -> None:
    run_dir, out = trained
    code, text, err = run(
        "eval", "knn", "--checkpoint", run_dir / "last.pt", "--k", 5, "--device", "cpu", "--json"
    )
    assert code == 0, err
    assert round(json.loads(text)["knn_top1"], 2) == top1_line(out, "knn")


def test_eval_image_size_on_a_vit_takes_multiples_of_its_patch(trained: tuple[Path, str]) -> None:
    """The checkpoint's ViT (32 px, 8 px patches) tests at 40 px on a 5x5 grid; 36 px is no
    multiple of the patch and fails with the two nearest valid sides."""
    ckpt = trained[0] / "last.pt"
    base = ("eval", "knn", "--checkpoint", ckpt, "--k", 5, "--device", "cpu", "--json")
    err = assert_user_error(run(*base, "--image-size", 36), "--image-size=36", "multiple of 8")
    assert "use 32 or 40" in err
    code, text, err = run(*base, "--image-size", 40)
    assert code == 0, err
    assert 0 <= json.loads(text)["knn_top1"] <= 100


def test_eval_image_size_key_off_the_patch_grid_fails_before_training(
    data: Path, tmp_path: Path
) -> None:
    keys = ijepa_overrides(data, tmp_path / "run", **{"eval.image_size": 36})
    err = assert_user_error(run("pretrain", "ijepa", *keys), "eval.image_size=36", "multiple of 8")
    assert "use 32 or 40" in err
    assert not (tmp_path / "run" / "last.pt").exists()


def test_encoder_from_checkpoint_picks_the_context_encoder_by_prefix(
    trained: tuple[Path, str],
) -> None:
    path = trained[0] / "last.pt"
    state = load_checkpoint(path)["method_state"]
    target, _ = encoder_from_checkpoint(path)  # default: the evaluation (target) encoder
    context, _ = encoder_from_checkpoint(path, prefix="online.encoder.")
    for prefix, pooled in (("target_encoder.", target), ("online.encoder.", context)):
        for name, value in pooled.encoder.state_dict().items():  # TokenPooling(.encoder)
            assert torch.equal(value, state[prefix + name]), (prefix, name)
    # After 4 steps the EMA target lags the context encoder.
    assert not torch.equal(target.encoder.patch_embed.weight, context.encoder.patch_embed.weight)
    with pytest.raises(ConfigError, match="no weights under the prefix 'nothing.'"):
        encoder_from_checkpoint(path, prefix="nothing.")


def test_transforms_probe_reads_ijepa_checkpoints_without_a_head(
    trained: tuple[Path, str],
) -> None:
    args = ("--checkpoint", trained[0] / "last.pt", "--device", "cpu", "--epochs", 1)
    code, text, err = run("probe", "transforms", *args, "--train-images", 8)
    assert code == 0, err
    assert text.startswith("ijepa checkpoint: no projection head, h only")
    rows = [line.split() for line in text.splitlines() if line.startswith("rotation")]
    assert rows and rows[0][3] == "-"  # no g(h) column value for I-JEPA


class Interrupted(Exception):
    """Stands for a crash in the middle of a run."""


def test_ijepa_resume_repeats_the_uninterrupted_run(
    trained: tuple[Path, str], data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    reference, _ = trained
    run_dir = tmp_path / "interrupted"
    args = ijepa_overrides(data, run_dir, **{"train.knn_every_epochs": 1})
    step = IJEPA.training_step

    def crash_at_third_step(self: IJEPA, images: torch.Tensor, index: int) -> Any:
        if index == 2:
            raise Interrupted
        return step(self, images, index)

    monkeypatch.setattr(IJEPA, "training_step", crash_at_third_step)
    with pytest.raises(Interrupted):
        run("pretrain", "ijepa", *args)
    monkeypatch.undo()
    code, _, err = run("pretrain", "ijepa", *args, "--resume")
    assert code == 0, err
    mine, ref = load_checkpoint(run_dir / "last.pt"), load_checkpoint(reference / "last.pt")
    for key, value in ref["method_state"].items():  # masks, crops and EMA all repeat
        assert torch.equal(mine["method_state"][key], value), key
    assert [r["loss"] for r in read_metrics(run_dir)] == [
        r["loss"] for r in read_metrics(reference)
    ]


def test_simclr_trains_a_vit(data: Path, tmp_path: Path) -> None:
    args = [
        f"data.dataset={data}",
        "data.cache=false",
        "model.encoder=vit_tiny",
        "model.patch_size=8",
        "train.batch_size=8",
        "train.epochs=1",
        "optim.warmup_epochs=0",
        f"train.run_dir={tmp_path / 'vit'}",
        "train.progress=false",
        "train.device=cpu",
        "train.num_threads=1",
        "eval.linear_epochs=2",
        "eval.knn_k=5",
    ]
    code, out, err = run("pretrain", "simclr", *args, "--eval")
    assert code == 0, err
    meta = load_checkpoint(tmp_path / "vit" / "last.pt")["meta"]
    assert meta["encoder"] == {"name": "vit_tiny", "kwargs": {"img_size": 32, "patch_size": 8}}
    assert meta["eval_encoder_prefix"] == "net.encoder.encoder."
    assert top1_line(out, "knn") >= 0
    # A test side off the ViT's patch grid fails before training.
    other = [*args, f"train.run_dir={tmp_path / 'vit36'}", "eval.image_size=36"]
    assert_user_error(run("pretrain", "simclr", *other), "eval.image_size=36", "multiple of 8")
    assert not (tmp_path / "vit36").exists()


def test_help_lists_ijepa_keys() -> None:
    code, out, _ = run("pretrain", "--help")
    assert code == 0
    section = out.split("ijepa config keys", 1)[1]
    for key, _, default, help_text in describe(IJEPAConfig):
        assert f"{key} = {default}" in section and help_text in section, key


def test_ijepa_bad_input(data: Path, tmp_path: Path) -> None:
    args = ijepa_overrides(data, tmp_path / "r", **{"model.encoder": "resnet18"})
    assert_user_error(run("pretrain", "ijepa", *args), "not a ViT", "vit_tiny")
    args = ijepa_overrides(data, tmp_path / "r", **{"augment.size": 30})
    assert_user_error(run("pretrain", "ijepa", *args), "augment.size=30", "patch_size=8")
    args = ijepa_overrides(data, tmp_path / "r", **{"model.encoder": "vit_tiny2"})
    assert_user_error(run("pretrain", "ijepa", *args), "Did you mean 'vit_tiny'?")
    args = ijepa_overrides(data, tmp_path / "r", **{"loss.kind": "l1"})
    assert_user_error(run("pretrain", "ijepa", *args), "loss.kind", "smooth_l1")
    args = ijepa_overrides(data, tmp_path / "r", **{"optim.warmup_epochs": 3})
    assert_user_error(run("pretrain", "ijepa", *args), "warmup_epochs=3", "train.epochs=2")
    assert not (tmp_path / "r" / "last.pt").exists()


def test_ijepa_under_torchrun_with_two_processes(data: Path, tmp_path: Path) -> None:
    """DDP wraps the context encoder + predictor (one module, masks passed through)."""
    import os
    import subprocess
    import sys

    src = Path(__file__).resolve().parent.parent / "src"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(src)}
    run_dir = tmp_path / "ddp"
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2",
        "-m", "selfsup.cli", "pretrain", "ijepa", *ijepa_overrides(data, run_dir),
    ]  # fmt: skip
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    ckpt = load_checkpoint(run_dir / "last.pt")
    assert ckpt["world_size"] == 2 and ckpt["step"] == STEPS  # global batch 8 = 2 x 4
    assert len(read_metrics(run_dir)) == STEPS


def test_ijepa_refuses_bad_masks_and_foreign_checkpoints_before_training(
    data: Path, tmp_path: Path
) -> None:
    run_dir = tmp_path / "r"
    # A 4 x 4 grid cannot keep 12 context patches around four targets.
    args = ijepa_overrides(data, run_dir, **{"masks.min_context": 12})
    assert_user_error(run("pretrain", "ijepa", *args), "min_context=12", "impossible")
    args = ijepa_overrides(data, run_dir, **{"masks.target_scale": "[0.2,1.5]"})
    assert_user_error(run("pretrain", "ijepa", *args), "target_scale")
    args = ijepa_overrides(data, run_dir, **{"masks.target_aspect": "[2.0,0.5]"})
    assert_user_error(run("pretrain", "ijepa", *args), "target_aspect")
    assert not run_dir.exists() or not (run_dir / "last.pt").exists()


def test_ijepa_resume_refuses_a_simclr_run(trained_simclr_dir: Path, data: Path) -> None:
    args = ijepa_overrides(data, trained_simclr_dir)
    assert_user_error(run("pretrain", "ijepa", *args, "--resume"), "written by method 'simclr'")


@pytest.fixture
def trained_simclr_dir(data: Path, tmp_path: Path) -> Path:
    from test_cli import overrides

    run_dir = tmp_path / "simclr"
    code, _, err = run(
        "pretrain",
        "simclr",
        *overrides(data, run_dir, **{"train.epochs": 0.5, "optim.warmup_epochs": 0}),
    )
    assert code == 0, err
    return run_dir


def test_patch_embed_std_reaches_the_context_and_target_encoders() -> None:
    from selfsup.build.ijepa import build_ijepa
    from selfsup.config import load_config

    keys = ["model.encoder=vit_tiny", "model.patch_size=4", "augment.size=32"]
    keys += ["model.predictor_dim=48", "model.predictor_depth=1", "model.patch_embed_std=0.08"]
    method = build_ijepa(load_config(IJEPAConfig, None, keys), total_steps=10)
    weight = method.encoder.patch_embed.weight
    assert abs(weight.std().item() - 0.08) < 0.004
    assert torch.equal(method.target_encoder.patch_embed.weight, weight)
