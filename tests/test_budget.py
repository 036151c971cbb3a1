"""``train.budget``: a run sized by wall-clock time (calibration, then a fixed step count
kept by ``--resume``)."""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

import pytest
import torch
from test_cli import assert_user_error, overrides, run

import selfsup.build.budget as budget
from selfsup.engine.checkpoint import load_checkpoint
from selfsup.methods.simclr import SimCLR
from selfsup.study.timing import Calibration

STEPS_PER_EPOCH = 2  # test_cli's 16 training images at batch 8


class Interrupted(Exception):
    pass


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)


def fake_calibration(monkeypatch: pytest.MonkeyPatch, seconds_per_step: float) -> list[int]:
    """Replace the timing by a fixed speed; the returned list counts the calibrations."""
    calls: list[int] = []

    def calibrate_run(cfg: Any, images: torch.Tensor, **kw: Any) -> Calibration:
        calls.append(len(images))
        return Calibration(steps=20, seconds_per_step=seconds_per_step, fixed_s=0.0, batch_size=8)

    monkeypatch.setattr(budget, "calibrate_run", calibrate_run)
    return calls


def test_a_real_budget_calibrates_and_sets_the_run_length(data: Path, tmp_path: Path) -> None:
    start = time.perf_counter()
    code, out, err = run(
        "pretrain", "simclr", *overrides(data, tmp_path / "r", **{"train.budget": "6s"})
    )
    wall = time.perf_counter() - start
    assert code == 0, err
    match = re.search(r"train\.budget=6s: (\S+) s per step here .* -> (\d+) steps", out)
    assert match, out
    steps = int(match.group(2))
    saved = load_checkpoint(tmp_path / "r" / "last.pt")
    assert saved["step"] == steps
    train = saved["meta"]["config"]["train"]
    optim = saved["meta"]["config"]["optim"]
    assert train["budget"] == "6s"
    assert train["epochs"] * STEPS_PER_EPOCH == pytest.approx(steps - 0.5)
    # test_cli's recipe warms up for 1 of its 2 epochs: the fitted run keeps that half.
    assert optim["warmup_epochs"] / train["epochs"] == pytest.approx(0.5)
    assert wall < 3 * 6 + 10  # loose: a loaded machine slows the calibration as much


def test_the_budget_fills_what_the_calibration_left(
    data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = fake_calibration(monkeypatch, seconds_per_step=0.5)
    code, out, err = run(
        "pretrain", "simclr", *overrides(data, tmp_path / "r", **{"train.budget": "3s"})
    )
    assert code == 0, err
    assert calls == [16]  # the training split only
    # 3 s at 0.5 s per step, less the (instant) calibration: 5 whole steps.
    assert "-> 5 steps, 2.25 epochs" in out
    assert load_checkpoint(tmp_path / "r" / "last.pt")["step"] == 5


def test_the_knn_monitors_passes_come_out_of_the_budget(
    data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_calibration(monkeypatch, seconds_per_step=0.5)
    monkeypatch.setattr(budget, "_time_monitor", lambda cfg, images, make: (1.0, 4))
    args = overrides(data, tmp_path / "r", **{"train.budget": "10s", "train.knn_every_epochs": 2})
    code, out, err = run("pretrain", "simclr", *args)
    assert code == 0, err
    # 19 steps fit 10 s; their 4 passes of 1 s leave 6 s: 11 steps (and 2 passes).
    assert "kNN monitor 1.0 s a pass" in out and "-> 11 steps" in out
    assert load_checkpoint(tmp_path / "r" / "last.pt")["step"] == 11


def test_one_monitor_pass_is_timed_on_the_run_s_own_monitor(data: Path, tmp_path: Path) -> None:
    from selfsup.build import simclr_trainer
    from selfsup.build.common import load_split
    from selfsup.config import load_config
    from selfsup.recipes import SimCLRConfig

    cfg = load_config(
        SimCLRConfig, None, overrides(data, tmp_path / "r", **{"train.knn_every_epochs": 1})
    )
    images = load_split(cfg.data, "train", labelled=False).images
    seconds, every = budget._time_monitor(cfg, images, simclr_trainer)
    assert seconds > 0 and every == STEPS_PER_EPOCH
    quiet = load_config(SimCLRConfig, None, overrides(data, tmp_path / "q"))
    assert budget._time_monitor(quiet, images, simclr_trainer) == (0.0, 0)
    assert not (tmp_path / "r").exists() and not (tmp_path / "q").exists()  # nothing written


def test_resume_keeps_the_fitted_length_without_calibrating_again(
    data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_calibration(monkeypatch, seconds_per_step=0.5)
    reference = tmp_path / "whole"
    code, _, err = run("pretrain", "simclr", *overrides(data, reference, **{"train.budget": "3s"}))
    assert code == 0, err

    run_dir = tmp_path / "interrupted"
    args = overrides(data, run_dir, **{"train.budget": "3s"})
    step = SimCLR.training_step

    def crash_at_fourth_step(self: SimCLR, images: torch.Tensor, index: int) -> Any:
        if index == 3:
            raise Interrupted
        return step(self, images, index)

    with monkeypatch.context() as m:
        m.setattr(SimCLR, "training_step", crash_at_fourth_step)
        with pytest.raises(Interrupted):
            run("pretrain", "simclr", *args)
    assert load_checkpoint(run_dir / "last.pt")["step"] == 3

    # This machine now looks 5x faster: a new calibration would fit 29 steps, not 5.
    calls = fake_calibration(monkeypatch, seconds_per_step=0.1)
    code, _, err = run("pretrain", "simclr", *args, "--resume")
    assert code == 0, err
    assert calls == []
    mine, ref = load_checkpoint(run_dir / "last.pt"), load_checkpoint(reference / "last.pt")
    assert mine["step"] == ref["step"] == 5
    for key, value in ref["method_state"].items():
        assert torch.equal(mine["method_state"][key], value), key

    # Another budget is another run: refused, naming the key.
    result = run(
        "pretrain", "simclr", *overrides(data, run_dir, **{"train.budget": "6s"}), "--resume"
    )
    assert_user_error(result, "train.budget", "'3s' in the checkpoint")


def test_a_budget_the_calibration_fills_is_refused(
    data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_calibration(monkeypatch, seconds_per_step=10.0)
    result = run("pretrain", "simclr", *overrides(data, tmp_path / "r", **{"train.budget": "3s"}))
    assert_user_error(result, "train.budget=3s", "leaves no time for training")
    assert not (tmp_path / "r" / "last.pt").exists()


@pytest.mark.parametrize("value", ["soon", "0m", "-5m"])
def test_a_bad_budget_is_refused_before_any_data_is_read(
    data: Path, tmp_path: Path, value: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = fake_calibration(monkeypatch, seconds_per_step=0.5)
    result = run(
        "pretrain",
        "simclr",
        *overrides(tmp_path / "missing", tmp_path / "r", **{"train.budget": value}),
    )
    assert_user_error(result, "train.budget", "not a positive duration", "60m")
    assert calls == []


def test_ijepa_takes_a_budget_too(
    data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from test_ijepa_cli import ijepa_overrides

    calls = fake_calibration(monkeypatch, seconds_per_step=0.5)
    args = ijepa_overrides(data, tmp_path / "r", **{"train.budget": "3s"})
    code, out, err = run("pretrain", "ijepa", *args)
    assert code == 0, err
    assert calls == [16] and "-> 5 steps" in out
    saved = load_checkpoint(tmp_path / "r" / "last.pt")
    assert saved["meta"]["method"] == "ijepa" and saved["step"] == 5


def test_two_processes_share_the_main_process_s_length(data: Path, tmp_path: Path) -> None:
    """torchrun, gloo on the CPU: both calibrate (the steps are collective), the main
    process times the kNN monitor (it runs there only), and all take its step count."""
    import os
    import subprocess
    import sys

    src = Path(__file__).resolve().parent.parent / "src"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(src)}
    run_dir = tmp_path / "ddp"
    args = overrides(data, run_dir, **{"train.budget": "8s", "train.knn_every_epochs": 1})
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2",
        "-m", "selfsup.cli", "pretrain", "simclr", *args,
    ]  # fmt: skip
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    lines = re.findall(r"train\.budget=8s: .*kNN monitor .* -> (\d+) steps", proc.stdout)
    assert len(lines) == 1, proc.stdout  # printed by the main process only
    saved = load_checkpoint(run_dir / "last.pt")
    assert saved["world_size"] == 2 and saved["step"] == int(lines[0])
