"""A pre-training run sized by wall-clock time (``train.budget``) instead of epochs.

The learning-rate, EMA and weight-decay schedules are pure functions of the step, so they
must know the run's length before the first step; a stop at a deadline would cut them
short. So :func:`fit_budget` times a few real steps of the method's own trainer on this
machine (in a temporary folder, discarded), then sets ``train.epochs`` to the step count
that fills what the calibration left of the budget and rescales ``optim.warmup_epochs`` to
keep the recipe's warm-up fraction: the calibration of ``selfsup study``
(:mod:`selfsup.study.timing`), per training side under progressive resizing.

Why a budget: a recipe's step count is one machine's hour. On a CPU without native bf16
the CPU recipes' steps took 3.6 to 4x longer in fp32, and 11 to 16x longer in emulated
bf16, than on the CPU they were measured on (benchmarks/RESULTS.md). With a budget the
quick-start preset takes its 9.5 minutes on any machine, at whatever accuracy that
machine's steps buy.

The length is fixed once, at the run's start, and saved in its checkpoint's config:
``--resume`` continues to the same step count (:func:`budget_before_data`) and
does not calibrate again. The budget covers the calibration, the training steps and the
kNN monitor's passes; the data's decoding before them and the evaluation after them come
on top.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import torch

from selfsup import dist
from selfsup.config import ConfigError, apply_overrides
from selfsup.engine.checkpoint import load_checkpoint
from selfsup.engine.runtime import resolve_precision, select_device
from selfsup.engine.trainer import CHECKPOINT_NAME, Trainer
from selfsup.eval import KNNMonitor
from selfsup.study.timing import (
    Config,
    calibrate_run,
    parse_budget,
    run_steps,
    set_run_length,
    synchronize,
)

# As `selfsup study`: 5 untimed steps (first-step allocations, kernel choice), 20 timed.
CALIBRATION_WARMUP = 5
CALIBRATION_STEPS = 20


def budget_before_data(cfg: Config, *, resume: bool) -> Config:
    """Check ``train.budget`` before any data is read. For ``--resume`` of a budgeted run:
    ``cfg`` with the run length its checkpoint was fitted to (``train.epochs``,
    ``optim.warmup_epochs``), so the resumed steps follow the same schedules and no
    calibration runs. Unchanged without a budget or a checkpoint (the resume check says why).
    """
    if cfg.train.budget is None:
        return cfg
    parse_budget(cfg.train.budget, "train.budget")
    path = Path(cfg.train.run_dir) / CHECKPOINT_NAME
    if not resume or not path.is_file():
        return cfg
    saved = (load_checkpoint(path).get("meta") or {}).get("config") or {}
    epochs = saved.get("train", {}).get("epochs")
    warmup = saved.get("optim", {}).get("warmup_epochs")
    if epochs is None or warmup is None:
        return cfg
    return apply_overrides(cfg, [f"train.epochs={epochs!r}", f"optim.warmup_epochs={warmup!r}"])


def fit_budget(cfg: Config, images: torch.Tensor, make_trainer: Callable[..., Trainer]) -> Config:
    """``cfg`` with the run length that fills ``train.budget`` on this machine.

    ``images``: (N, 3, H, W) uint8, the training images; ``make_trainer(cfg, images,
    total_steps=...)`` builds the method's trainer. Every process calibrates (the steps of a
    multi-process run are collective) and all take the main process's step count. The kNN
    monitor (``train.knn_every_epochs``) is timed once and its passes are taken out of the
    budget too: on a CPU they can cost minutes an hour. Unchanged without a budget.
    """
    if cfg.train.budget is None:
        return cfg
    budget_s = parse_budget(cfg.train.budget, "train.budget")
    start = time.perf_counter()
    device = select_device(cfg.train.device)
    # Timed apart: the monitor is no part of a step's cost.
    probe = apply_overrides(cfg, ["train.knn_every_epochs=0"])
    cal = calibrate_run(
        probe, images, warmup=CALIBRATION_WARMUP, steps=CALIBRATION_STEPS, device=device
    )
    monitor_s, monitor_every = _time_monitor(cfg, images, make_trainer)
    spent = time.perf_counter() - start
    left = budget_s - spent
    steps = 0  # the main process's clock decides (the others' read nothing)
    if dist.is_main_process() and left > cal.fixed_s + cal.seconds_per_step:
        steps = run_steps(left, cfg, cal)
        if monitor_every:  # the passes the run would take, out of what is left
            steps = run_steps(left - steps // monitor_every * monitor_s, cfg, cal)
    steps = int(dist.broadcast_object(steps))
    if steps < 1:
        raise ConfigError(
            f"train.budget={cfg.train.budget}: the calibration took {spent:.0f} s of it "
            f"({CALIBRATION_WARMUP + CALIBRATION_STEPS} steps, and a kNN monitor pass if the "
            "run has one), which leaves no time for training; give a longer budget, or set "
            "train.epochs and train.budget=none."
        )
    fitted = set_run_length(cfg, len(images), steps)
    if dist.is_main_process():
        precision: str = cfg.train.precision
        if precision == "auto":
            precision += f" -> {resolve_precision(precision, device)}"
        monitor = f", kNN monitor {monitor_s:.1f} s a pass" if monitor_every else ""
        print(
            f"train.budget={cfg.train.budget}: {cal.seconds_per_step:.3f} s per step here "
            f"({precision}{monitor}; calibration {spent:.0f} s) -> {steps} steps, "
            f"{fitted.train.epochs:.2f} epochs",
            flush=True,
        )
    return fitted


def _time_monitor(
    cfg: Config, images: torch.Tensor, make_trainer: Callable[..., Trainer]
) -> tuple[float, int]:
    """Seconds of one pass of the run's kNN monitor (on the main process, where it runs)
    and its period in steps; (0.0, 0) without one. The pass runs on a freshly built
    method: its cost does not depend on the weights."""
    if cfg.train.knn_every_epochs <= 0:
        return 0.0, 0
    trainer = make_trainer(cfg, images, total_steps=1)
    monitors = [cb for cb in trainer.callbacks if isinstance(cb, KNNMonitor)]
    if not monitors or not dist.is_main_process():
        return 0.0, 0
    began = time.perf_counter()
    for monitor in monitors:
        monitor(0, trainer.method)
    synchronize(trainer.device)
    return time.perf_counter() - began, min(m.every_steps for m in monitors)
