"""``selfsup`` end to end, in-process, on a tiny labelled image-folder tree.

One short run (ResNet-18 at width 1/8, 16 training images of 32 px, batch 8, 4 steps)
is shared by the tests of a module-scoped fixture; the other tests only feed bad input,
which must fail before any training with exit status 2 and a one-line message.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from selfsup.cli import main
from selfsup.config import describe
from selfsup.engine.checkpoint import load_checkpoint, save_checkpoint
from selfsup.engine.metrics import METRICS_FILE
from selfsup.methods.simclr import SimCLR
from selfsup.models import list_models
from selfsup.recipes import SimCLRConfig

TRAIN_PER_CLASS, TEST_PER_CLASS = 8, 4  # 16 training images: 2 steps per epoch at batch 8
EPOCHS = 2  # 4 steps


def make_dataset(root: Path) -> Path:
    """root/{train,test}/{red,blue}/*.png: 32 x 32 noisy images, red- or blue-dominant."""
    rng = np.random.default_rng(0)
    for split, n in (("train", TRAIN_PER_CLASS), ("test", TEST_PER_CLASS)):
        for channel, name in ((0, "red"), (2, "blue")):
            folder = root / split / name
            folder.mkdir(parents=True)
            for i in range(n):
                a = rng.integers(0, 80, (32, 32, 3), dtype=np.uint8)
                a[..., channel] += 150
                Image.fromarray(a).save(folder / f"{i}.png")
    return root


def overrides(dataset: Path, run_dir: Path, **extra: Any) -> list[str]:
    values: dict[str, Any] = {
        "data.dataset": dataset,
        "data.cache": "false",
        "model.width": 0.125,
        "train.batch_size": 8,
        "train.epochs": EPOCHS,
        "train.run_dir": run_dir,
        "train.progress": "false",
        "train.device": "cpu",
        "train.num_threads": 1,  # the machine is shared: stay on one core
        "train.log_every": 1,
        "train.checkpoint_every": 1,
        "optim.warmup_epochs": 1,
        "eval.linear_epochs": 2,
        "eval.knn_k": 5,
    }
    values.update(extra)
    return [f"{k}={v}" for k, v in values.items()]


def run(*argv: str | Path | int) -> tuple[int, str, str]:
    """``selfsup argv...`` in-process: (exit status, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main([str(a) for a in argv])
        except SystemExit as e:  # argparse's --help and usage errors
            code = e.code if isinstance(e.code, int) else 1
    return code, out.getvalue(), err.getvalue()


def assert_user_error(result: tuple[int, str, str], *fragments: str, code: int = 2) -> str:
    """A clean failure: the exit status, no traceback, one message holding every fragment."""
    status, _, err = result
    assert status == code, err
    assert "Traceback" not in err
    assert err.startswith("selfsup: error: "), err
    for fragment in fragments:
        assert fragment in err, (fragment, err)
    return err


def top1_line(out: str, name: str) -> float:
    match = re.search(rf"^{name} top-1: (\S+) %", out, re.MULTILINE)
    assert match, out
    value = float(match.group(1))
    assert math.isfinite(value) and 0 <= value <= 100
    return value


def read_metrics(run_dir: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (run_dir / METRICS_FILE).read_text().splitlines()]


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # a default run_dir (runs/simclr) never lands in the repo


@pytest.fixture(scope="module")
def trained(data: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """One complete run with the kNN monitor every epoch and --eval: (run_dir, stdout)."""
    run_dir = tmp_path_factory.mktemp("run") / "simclr"
    code, out, err = run(
        "pretrain", "simclr", *overrides(data, run_dir, **{"train.knn_every_epochs": 1}), "--eval"
    )
    assert code == 0, err
    return run_dir, out


# ---------------------------------------------------------------------------- happy paths


def test_pretrain_with_eval_writes_checkpoint_metrics_and_prints_accuracies(
    trained: tuple[Path, str],
) -> None:
    run_dir, out = trained
    ckpt = load_checkpoint(run_dir / "last.pt")
    assert ckpt["step"] == EPOCHS * 2
    meta = ckpt["meta"]
    assert meta["method"] == "simclr" and meta["image_size"] == 32
    assert meta["encoder"] == {"name": "resnet18", "kwargs": {"width": 0.125, "cifar_stem": True}}
    assert meta["config"]["train"]["batch_size"] == 8
    assert f"checkpoint: {run_dir / 'last.pt'}" in out
    knn, linear = top1_line(out, "knn"), top1_line(out, "linear")
    # Red versus blue images: even a barely trained encoder separates them by kNN.
    assert knn > 50 and linear >= 0

    records = read_metrics(run_dir)
    assert [r["step"] for r in records] == [1, 2, 3, 4]
    assert all(math.isfinite(r["loss"]) for r in records)
    # The kNN monitor ran at the end of each epoch (every 2 steps) and only then.
    monitored = [r["step"] for r in records if "knn_top1" in r]
    assert monitored == [2, 4]
    # The monitor (KNNMonitor, during training) and --eval (evaluation.evaluate, from the
    # checkpoint) are separate code paths on the same final weights and settings.
    assert round(records[-1]["knn_top1"], 2) == knn


def test_eval_knn_and_linear_on_the_checkpoint(trained: tuple[Path, str]) -> None:
    run_dir, out = trained
    ckpt = run_dir / "last.pt"
    code, text, err = run("eval", "knn", "--checkpoint", ckpt, "--k", 5, "--device", "cpu")
    assert code == 0, err
    assert top1_line(text, "knn") == top1_line(out, "knn")
    assert "linear" not in text

    code, text, err = run(
        "eval", "linear", "--checkpoint", ckpt, "--epochs", 2, "--device", "cpu", "--json"
    )
    assert code == 0, err
    result = json.loads(text)
    assert set(result) == {"feature_seconds", "linear_top1", "linear_top5"}
    assert all(math.isfinite(v) for v in result.values())
    # Same data (read from the checkpoint's config), encoder and epochs as --eval's probe.
    assert round(result["linear_top1"], 2) == top1_line(out, "linear")
    assert result["linear_top5"] == 100.0  # two classes


def record_eval_input_sides(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, int]]:
    """The (H, W) of every batch that encoders rebuilt from checkpoints receive from now on."""
    import selfsup.evaluation as evaluation

    seen: list[tuple[int, int]] = []
    rebuild = evaluation.encoder_from_checkpoint

    def recording(*args: Any, **kwargs: Any) -> tuple[torch.nn.Module, dict[str, Any]]:
        encoder, meta = rebuild(*args, **kwargs)
        encoder.register_forward_pre_hook(lambda _m, inp: seen.append(tuple(inp[0].shape[-2:])))
        return encoder, meta

    monkeypatch.setattr(evaluation, "encoder_from_checkpoint", recording)
    return seen


def test_eval_image_size_sets_the_test_resolution(
    trained: tuple[Path, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """--image-size resizes what the encoder sees; without it, the training size (32)."""
    seen = record_eval_input_sides(monkeypatch)
    ckpt = trained[0] / "last.pt"
    base = ("eval", "knn", "--checkpoint", ckpt, "--k", 5, "--device", "cpu", "--json")
    for extra, side in (((), 32), (("--image-size", 40), 40)):
        seen.clear()
        code, text, err = run(*base, *extra)
        assert code == 0, err
        assert seen and set(seen) == {(side, side)}
        assert math.isfinite(json.loads(text)["knn_top1"])
    assert_user_error(run(*base, "--image-size", 0), "--image-size", "positive")


@pytest.mark.filterwarnings("ignore:precision=bf16 on a CPU")  # emulated bf16: slow, not wrong
def test_eval_image_size_key_sets_the_test_resolution_of_eval_and_the_monitor(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Trained at 24 px with eval.image_size=32: the kNN monitor, --eval and selfsup eval's
    default all feed the encoder 32 x 32 images; bad sizes fail before training. The monitor
    runs in the training precision (bf16 here)."""
    import selfsup.eval.monitor as monitor

    monitor_sizes: list[int | None] = []
    extract = monitor.extract_features

    def recording_extract(*args: Any, **kwargs: Any) -> torch.Tensor:
        monitor_sizes.append(kwargs.get("image_size"))
        assert kwargs.get("precision") == "bf16"
        return extract(*args, **kwargs)

    monkeypatch.setattr(monitor, "extract_features", recording_extract)
    seen = record_eval_input_sides(monkeypatch)
    data, run_dir = make_dataset(tmp_path / "data"), tmp_path / "run"
    keys = overrides(
        data,
        run_dir,
        **{
            "augment.size": 24,
            "eval.image_size": 32,
            "train.knn_every_epochs": 1,
            "train.precision": "bf16",
        },
    )
    code, out, err = run("pretrain", "simclr", *keys, "--eval")
    assert code == 0, err
    assert monitor_sizes and set(monitor_sizes) == {32}
    assert seen and set(seen) == {(32, 32)}
    assert load_checkpoint(run_dir / "last.pt")["meta"]["image_size"] == 32
    seen.clear()
    code, _, err = run("eval", "knn", "--checkpoint", run_dir / "last.pt", "--k", 5)
    assert code == 0, err
    assert seen and set(seen) == {(32, 32)}
    for bad in (0, -4):
        result = run(
            "pretrain", "simclr", *overrides(data, tmp_path / "bad", **{"eval.image_size": bad})
        )
        assert_user_error(result, f"eval.image_size must be a positive number of pixels, got {bad}")
    assert not (tmp_path / "bad" / "last.pt").exists()


def test_eval_finetune_writes_result_and_subset_beside_each_other(
    trained: tuple[Path, str], tmp_path: Path
) -> None:
    ckpt = trained[0] / "last.pt"
    out = tmp_path / "ft"
    args = ("--epochs", 2, "--device", "cpu", "--train-batch-size", 4, "--out", out)
    code, text, err = run("eval", "finetune", "--checkpoint", ckpt, "--labels", "50%", *args)
    assert code == 0, err
    assert "finetune (50% labels: 8 images, 2 epochs) top-1:" in text
    result = json.loads((out / "finetune.json").read_text())
    assert result["num_labels"] == 8 and result["steps"] == 4 and result["batch_size"] == 4
    assert result["lr"] == pytest.approx(0.05 * 4 / 256)  # the paper's rule
    assert 0 <= result["finetune_top1"] <= 100 and result["finetune_top5"] == 100.0
    rows = (out / "subset.csv").read_text().splitlines()
    assert rows[0] == "index,file,class" and len(rows) == 9
    picked = [row.split(",") for row in rows[1:]]
    assert sorted(c for _, _, c in picked) == ["blue"] * 4 + ["red"] * 4  # class-balanced
    assert all(f == f"{c}/{Path(f).name}" for _, f, c in picked)  # real files of the split
    # Default folder: beside the checkpoint, named after the budget and seed; --json.
    code, text, err = run(
        "eval", "finetune", "--checkpoint", ckpt, "--labels", "2-per-class", "--json",
        "--seed", 1, "--epochs", 1, "--device", "cpu",
    )  # fmt: skip
    assert code == 0, err
    assert json.loads(text)["num_labels"] == 4
    assert (trained[0] / "finetune_2-per-class_seed1" / "subset.csv").is_file()


def test_eval_finetune_bad_label_budgets(trained: tuple[Path, str]) -> None:
    ckpt = trained[0] / "last.pt"
    assert_user_error(run("eval", "finetune", "--checkpoint", ckpt), "needs --labels", "1%")
    assert_user_error(
        run("eval", "knn", "--checkpoint", ckpt, "--labels", "1%"), "--labels", "finetune only"
    )
    assert_user_error(
        run("eval", "finetune", "--checkpoint", ckpt, "--labels", "lots"), "'lots'", "1%"
    )
    assert_user_error(
        run("eval", "finetune", "--checkpoint", ckpt, "--labels", "9-per-class"),
        "9 images of every class",
        "has 8",
    )


def test_models_lists_the_registry() -> None:
    code, out, _ = run("models")
    assert code == 0
    assert out.split() == list_models() and "resnet18" in out.split()


def test_pretrain_help_lists_every_config_key() -> None:
    code, out, _ = run("pretrain", "--help")
    assert code == 0
    for key, type_name, default, help_text in describe(SimCLRConfig):
        line = next((x for x in out.splitlines() if x.split()[:1] == [key]), None)
        assert line is not None, f"{key} missing from --help"
        assert help_text, f"{key} has no help text"
        assert f"{key} = {default}" in line and line.rstrip().endswith(
            f"({type_name}) {help_text}"
        ), line


class Interrupted(Exception):
    """Stands for a crash or a killed job in the middle of a run."""


def test_resume_after_an_interruption_repeats_the_uninterrupted_run(
    trained: tuple[Path, str], data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    reference, _ = trained
    run_dir = tmp_path / "interrupted"
    args = overrides(data, run_dir, **{"train.knn_every_epochs": 1})
    step = SimCLR.training_step

    def crash_at_third_step(self: SimCLR, images: torch.Tensor, index: int) -> Any:
        if index == 2:
            raise Interrupted
        return step(self, images, index)

    monkeypatch.setattr(SimCLR, "training_step", crash_at_third_step)
    with pytest.raises(Interrupted):
        run("pretrain", "simclr", *args)
    assert load_checkpoint(run_dir / "last.pt")["step"] == 2
    monkeypatch.undo()

    code, _, err = run("pretrain", "simclr", *args, "--resume")
    assert code == 0, err
    mine, ref = load_checkpoint(run_dir / "last.pt"), load_checkpoint(reference / "last.pt")
    assert mine["step"] == ref["step"] == EPOCHS * 2
    # Same batches and random numbers: the weights equal the uninterrupted run's bit for bit.
    assert mine["method_state"].keys() == ref["method_state"].keys()
    for key, value in ref["method_state"].items():
        assert torch.equal(mine["method_state"][key], value), key
    records = read_metrics(run_dir)
    assert [r["step"] for r in records] == [1, 2, 3, 4]
    assert [r["loss"] for r in records] == [r["loss"] for r in read_metrics(reference)]


def test_non_finite_loss_stops_cleanly_and_keeps_the_last_good_checkpoint(
    data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    step = SimCLR.training_step

    def nan_at_third_step(self: SimCLR, images: torch.Tensor, index: int) -> Any:
        result = step(self, images, index)
        if index == 2:
            result.loss = result.loss * float("nan")
        return result

    monkeypatch.setattr(SimCLR, "training_step", nan_at_third_step)
    run_dir = tmp_path / "nan"
    result = run("pretrain", "simclr", *overrides(data, run_dir))
    assert_user_error(result, "Non-finite loss", "step 3", "(step 2) is kept", code=1)
    ckpt = load_checkpoint(run_dir / "last.pt")
    assert ckpt["step"] == 2
    assert all(
        torch.isfinite(v).all() for v in ckpt["method_state"].values() if v.is_floating_point()
    )


# ------------------------------------------------------------------------------ bad input


def test_progressive_resizing_trains_at_the_ramped_sides(data: Path, tmp_path: Path) -> None:
    run_dir = tmp_path / "ramp"
    extra = {"augment.start_size": 16, "augment.size_ramp": "[0.25,0.75]"}
    code, _, err = run("pretrain", "simclr", *overrides(data, run_dir, **extra))
    assert code == 0, err
    # Step indices 0..3 are t = 0, 0.25, 0.5, 0.75 of the run: 16 until the ramp starts,
    # 16 + 16 * 0.5 = 24 half-way up it, the full 32 from its end on.
    assert [r["resolution"] for r in read_metrics(run_dir)] == [16.0, 16.0, 24.0, 32.0]


def test_bad_progressive_resizing_is_refused_before_training(data: Path, tmp_path: Path) -> None:
    bad = overrides(data, tmp_path / "a", **{"augment.start_size": 48})
    assert_user_error(run("pretrain", "simclr", *bad), "augment.start_size", "end_size")
    vit = overrides(data, tmp_path / "b", **{"augment.start_size": 16, "model.encoder": "vit_tiny"})
    assert_user_error(run("pretrain", "simclr", *vit), "progressive resizing needs")
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_unknown_config_key_is_named_with_a_suggestion(data: Path, tmp_path: Path) -> None:
    result = run("pretrain", "simclr", *overrides(data, tmp_path / "r"), "train.epoch=3")
    assert_user_error(result, "'train.epoch'", "Did you mean 'train.epochs'?")


def test_unknown_model_is_named_with_a_suggestion(data: Path, tmp_path: Path) -> None:
    args = overrides(data, tmp_path / "r", **{"model.encoder": "resnet19"})
    err = assert_user_error(run("pretrain", "simclr", *args), "model.encoder 'resnet19'")
    assert "Did you mean 'resnet18'?" in err
    assert not (tmp_path / "r").exists()  # refused before anything was written


def test_unknown_method_and_protocol_are_named_with_suggestions(tmp_path: Path) -> None:
    assert_user_error(run("pretrain", "simclrr"), "'simclrr'", "Did you mean 'simclr'?")
    result = run("eval", "knnn", "--checkpoint", tmp_path / "x.pt")
    assert_user_error(result, "protocol 'knnn'", "Did you mean 'knn'?")


def test_unknown_dataset_name_and_empty_folder(tmp_path: Path) -> None:
    args = overrides(Path("cifar100"), tmp_path / "r")
    assert_user_error(run("pretrain", "simclr", *args), "'cifar100'", "'cifar10'")
    args = overrides(tmp_path / "nope", tmp_path / "r")
    assert_user_error(run("pretrain", "simclr", *args), "nope does not exist")
    (tmp_path / "empty").mkdir()
    args = overrides(tmp_path / "empty", tmp_path / "r")
    assert_user_error(run("pretrain", "simclr", *args), "No image files", "empty")


def test_batch_of_one_is_refused(data: Path, tmp_path: Path) -> None:
    args = overrides(data, tmp_path / "r", **{"train.batch_size": 1})
    assert_user_error(run("pretrain", "simclr", *args), "NT-Xent needs at least 2 images")


def test_a_run_that_would_be_all_warm_up_is_refused(data: Path, tmp_path: Path) -> None:
    # A shortened run with the recipe's warm-up would never reach the peak learning rate.
    args = overrides(data, tmp_path / "r", **{"train.epochs": 2, "optim.warmup_epochs": 2})
    err = assert_user_error(run("pretrain", "simclr", *args), "optim.warmup_epochs=2")
    assert "train.epochs=2" in err and "optim.warmup_epochs=0.2" in err
    assert not (tmp_path / "r" / "last.pt").exists()


def test_missing_and_foreign_checkpoints(tmp_path: Path) -> None:
    missing = tmp_path / "missing.pt"
    assert_user_error(run("eval", "knn", "--checkpoint", missing), "No checkpoint", "missing.pt")
    foreign = tmp_path / "foreign.pt"
    torch.save({"state_dict": {"w": torch.zeros(2)}}, foreign)
    assert_user_error(run("eval", "knn", "--checkpoint", foreign), "not a selfsup checkpoint")


def copy_run(trained: tuple[Path, str], dest: Path, **meta: Any) -> Path:
    """A run_dir holding the shared run's last.pt, with ``meta`` entries replaced."""
    dest.mkdir()
    ckpt = load_checkpoint(trained[0] / "last.pt")
    ckpt["meta"] = {**ckpt["meta"], **meta}
    save_checkpoint(dest / "last.pt", ckpt)
    return dest


def test_eval_reads_any_methods_checkpoint_with_an_encoder(
    trained: tuple[Path, str], tmp_path: Path
) -> None:
    # An I-JEPA-like checkpoint: another method and another config schema; only the
    # encoder description and the data section matter to `selfsup eval`.
    config = load_checkpoint(trained[0] / "last.pt")["meta"]["config"]
    other = {"data": config["data"], "mask": {"num_targets": 4}, "model": {"patch_size": 4}}
    run_dir = copy_run(trained, tmp_path / "ijepa", method="ijepa", config=other)
    code, out, err = run("eval", "knn", "--checkpoint", run_dir / "last.pt", "--k", 5)
    assert code == 0, err
    assert top1_line(out, "knn") == top1_line(trained[1], "knn")

    run_dir = copy_run(trained, tmp_path / "noconfig", config={})
    result = run("eval", "knn", "--checkpoint", run_dir / "last.pt")
    assert_user_error(result, "--data")


def test_resume_refuses_another_method_or_model_before_training(
    trained: tuple[Path, str], data: Path, tmp_path: Path
) -> None:
    run_dir = copy_run(trained, tmp_path / "ijepa", method="ijepa")
    before = (run_dir / "last.pt").read_bytes()
    result = run("pretrain", "simclr", *overrides(data, run_dir), "--resume")
    assert_user_error(result, "'ijepa'", "simclr")

    run_dir = copy_run(trained, tmp_path / "wider")
    result = run(
        "pretrain", "simclr", *overrides(data, run_dir, **{"model.width": 0.25}), "--resume"
    )
    assert_user_error(result, "model.width", "0.125", "0.25")

    # A longer run would follow another learning-rate schedule from the resumed step.
    longer = copy_run(trained, tmp_path / "longer")
    result = run(
        "pretrain", "simclr", *overrides(data, longer, **{"train.epochs": EPOCHS * 2}), "--resume"
    )
    assert_user_error(result, "train.epochs")
    for d in (tmp_path / "ijepa", run_dir, longer):
        assert sorted(p.name for p in d.iterdir()) == ["last.pt"]  # nothing logged or trained
    assert (tmp_path / "ijepa" / "last.pt").read_bytes() == before

    result = run("pretrain", "simclr", *overrides(data, tmp_path / "none"), "--resume")
    assert_user_error(result, "No checkpoint")


def test_fresh_run_into_a_used_run_dir_is_refused(
    trained: tuple[Path, str], data: Path, tmp_path: Path
) -> None:
    run_dir = copy_run(trained, tmp_path / "used")
    result = run("pretrain", "simclr", *overrides(data, run_dir))
    assert_user_error(result, "last.pt", "--resume", "train.run_dir")
    assert sorted(p.name for p in run_dir.iterdir()) == ["last.pt"]


def test_overrides_may_follow_the_flags() -> None:
    # argparse alone would reject key=value after --eval; the CLI takes them as overrides.
    code, _, err = run("pretrain", "simclr", "--eval", "optim.lrr=1")
    assert code == 2 and "Unknown config key 'optim.lrr'" in err and "optim.lr" in err
    code, _, err = run("pretrain", "simclr", "--eval", "--bogus")
    assert code == 2 and "unrecognized arguments: --bogus" in err
