"""Fit a run to a wall-clock budget: time a few real steps, then set the run's length.

A budget is wall-clock time, but a run is set by its step count (the learning-rate, EMA and
weight-decay schedules are pure functions of the step, so they must know the length up
front). :func:`calibrate` times a short real ``Trainer.fit()`` of the method's own trainer;
:func:`fit_to_budget` sets ``train.epochs`` to the steps that fill the budget at that speed
and rescales ``optim.warmup_epochs`` to keep the recipe's warm-up fraction.
"""

from __future__ import annotations

import itertools
import math
import re
import statistics
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeAlias, TypeVar

import torch

from selfsup import dist
from selfsup.config import ConfigError, apply_overrides
from selfsup.engine.protocol import Method
from selfsup.recipes import IJEPAConfig, SimCLRConfig

Config: TypeAlias = IJEPAConfig | SimCLRConfig
#: One recipe type in, the same type out (a run length changes no method).
ConfigT = TypeVar("ConfigT", bound=Config)
_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0}


def parse_budget(text: str, key: str = "--budget") -> float:
    """Seconds in a budget written ``90s``, ``60m``, ``1.5h`` (a bare number is minutes);
    a ConfigError naming ``key`` for anything else, zero included."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smh]?)\s*", str(text))
    if not match or float(match.group(1)) <= 0:
        raise ConfigError(
            f"{key} {text!r} is not a positive duration; write e.g. 60m, 90s or 1.5h "
            "(a bare number is minutes)."
        )
    return float(match.group(1)) * _UNITS[match.group(2) or "m"]


def synchronize(device: torch.device) -> None:
    """Wait for the device's queued work, so that a clock read covers it."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


class StepClock:
    """A trainer callback that reads the clock after given completed-step counts.

    Called every ``gcd`` of the marks (not every step) so that it adds nothing to the
    other steps; at a mark it synchronises the device first.
    """

    def __init__(self, marks: Sequence[int], device: torch.device) -> None:
        self.marks = set(marks)
        self.every_steps = math.gcd(*marks)
        self.device = device
        self.times: dict[int, float] = {}

    def __call__(self, step: int, method: Method) -> dict[str, float]:
        if step in self.marks:
            synchronize(self.device)
            self.times[step] = time.perf_counter()
        return {}


def time_fit(
    make_trainer: Callable[[StepClock, str], Any], marks: Sequence[int], device: torch.device
) -> list[float]:
    """Clock reads at ``marks`` completed steps of one real ``Trainer.fit()``.

    ``make_trainer(clock, run_dir)`` builds the trainer with ``clock`` among its callbacks
    and a fresh temporary ``run_dir`` (removed afterwards). The trainer calls callbacks on
    the main process only: elsewhere (the other processes of a multi-process run, which
    must take the same collective steps) the list is empty.
    """
    clock = StepClock(marks, device)
    with tempfile.TemporaryDirectory(prefix="selfsup_timing_") as run_dir:
        make_trainer(clock, run_dir).fit()
    if not dist.is_main_process():
        return []
    return [clock.times[m] for m in marks]


@dataclass(frozen=True)
class Calibration:
    """Speed of a method's real training steps: ``seconds_per_step`` in steady state,
    ``fixed_s`` the rest of the calibration call's wall time (building, the slower first
    steps, the checkpoint), which a budgeted run also pays once."""

    steps: int
    seconds_per_step: float
    fixed_s: float
    batch_size: int
    # Progressive resizing (SimCLR's augment.start_size): each side's seconds per step;
    # seconds_per_step is then the full side's. Empty when every step has the same size.
    seconds_per_side: dict[int, float] = field(default_factory=dict)

    @property
    def images_per_s(self) -> float:
        return self.batch_size / self.seconds_per_step


def steady_step_seconds(durations: Sequence[float], outlier_factor: float = 1.5) -> float:
    """Mean of ``durations`` (seconds per step, at least one) without the outliers: those
    above ``outlier_factor`` times their median (steps slowed by outside load)."""
    if not durations:
        raise ValueError("steady_step_seconds needs at least one step duration.")
    limit = outlier_factor * statistics.median(durations)
    return statistics.fmean(d for d in durations if d <= limit)


def calibrate(
    cfg: Config, images: torch.Tensor, *, warmup: int, steps: int, device: torch.device
) -> Calibration:
    """Time ``steps`` steps after ``warmup`` untimed ones of the method's own trainer.

    ``images``: (N, 3, H, W) uint8, the training images. The run writes only to a
    temporary folder. The speed is the mean of the per-step durations that lie within 1.5x
    of their median: a few seconds of outside load during the window (another process on a
    shared machine) slows a few steps far more than that, and must not shorten the whole
    budgeted run; the steps' own spread (logging, allocator) stays in the mean.
    """
    from selfsup.build import simclr_trainer
    from selfsup.build.ijepa import ijepa_trainer

    if warmup < 1 or steps < 1:
        raise ValueError(f"calibration needs warmup >= 1 and steps >= 1; got {warmup}, {steps}.")
    marks = list(range(warmup, warmup + steps + 1))

    def make(clock: StepClock, run_dir: str) -> Any:
        c = apply_overrides(
            cfg,
            [
                f"train.run_dir={run_dir}",
                f"train.checkpoint_every={marks[-1]}",
                "train.progress=false",
            ],
        )
        if isinstance(c, IJEPAConfig):
            return ijepa_trainer(c, images, total_steps=marks[-1], callbacks=[clock])
        return simclr_trainer(c, images, total_steps=marks[-1], callbacks=[clock])

    start = time.perf_counter()
    times = time_fit(make, marks, device)
    wall = time.perf_counter() - start
    if not times:  # not the main process: it took the steps, the main one timed them
        return Calibration(steps, math.nan, math.nan, cfg.train.batch_size)
    per_step = steady_step_seconds([b - a for a, b in itertools.pairwise(times)])
    return Calibration(
        steps=steps,
        seconds_per_step=per_step,
        fixed_s=max(0.0, wall - marks[-1] * per_step),
        batch_size=cfg.train.batch_size,
    )


def calibrate_run(
    cfg: Config, images: torch.Tensor, *, warmup: int, steps: int, device: torch.device
) -> Calibration:
    """:func:`calibrate` for any recipe: with progressive resizing (SimCLR's
    ``augment.start_size``) a step's cost depends on its side, so every side the ramp visits
    is calibrated on its own (the whole calibration at that side) and the result holds
    ``seconds_per_side``; :func:`run_steps` then sums the run's per-step costs. Timing one
    short run through the ramp instead would mix the sides in the wrong proportions (its
    warm-up steps are all at the start side) and drop the slow full-size steps as outliers.
    """
    from selfsup.build import side_schedule
    from selfsup.engine.schedules import ramp_sides

    if not isinstance(cfg, SimCLRConfig) or side_schedule(cfg) is None:
        return calibrate(cfg, images, warmup=warmup, steps=steps, device=device)
    a = cfg.augment
    assert a.start_size is not None  # side_schedule is None without it
    seconds: dict[int, float] = {}
    fixed = 0.0
    for side in ramp_sides(a.start_size, a.size, a.size_multiple):
        # A ramp that never starts: every calibration step at this side.
        at = apply_overrides(cfg, [f"augment.start_size={side}", "augment.size_ramp=[1.0,1.0]"])
        cal = calibrate(at, images, warmup=warmup, steps=steps, device=device)
        seconds[side], fixed = cal.seconds_per_step, max(fixed, cal.fixed_s)
    return Calibration(
        steps=steps,
        seconds_per_step=seconds[a.size],
        fixed_s=fixed,
        batch_size=cfg.train.batch_size,
        seconds_per_side=seconds,
    )


def run_steps(budget_s: float, cfg: Config, calibration: Calibration) -> int:
    """Steps of ``cfg`` that fill ``budget_s`` at the calibrated speed (>= 1): per side
    (:func:`steps_for_sides`) when the calibration has sides, else :func:`steps_for_budget`."""
    if not calibration.seconds_per_side:
        return steps_for_budget(budget_s, calibration)
    from selfsup.build import side_schedule

    side_at = side_schedule(cfg) if isinstance(cfg, SimCLRConfig) else None
    if side_at is None:
        raise ValueError("a calibration per side needs a recipe with augment.start_size.")
    return steps_for_sides(budget_s, calibration.seconds_per_side, side_at, calibration.fixed_s)


def set_run_length(cfg: ConfigT, n_images: int, steps: int) -> ConfigT:
    """``cfg`` with ``train.epochs`` set to exactly ``steps`` steps over ``n_images`` images
    and the warm-up rescaled to keep the recipe's fraction of the run."""
    per_epoch = n_images // cfg.train.batch_size
    if per_epoch < 1:
        raise ConfigError(
            f"train.batch_size={cfg.train.batch_size} exceeds the {n_images} training images."
        )
    # The trainers take ceil(epochs * per_epoch) steps: half a step below lands on `steps`.
    epochs = (steps - 0.5) / per_epoch
    warmup = cfg.optim.warmup_epochs * epochs / cfg.train.epochs
    # Ten decimals: close enough that ceil(epochs * per_epoch) still lands on `steps`.
    return apply_overrides(
        cfg, [f"train.epochs={epochs:.10f}", f"optim.warmup_epochs={warmup:.10f}"]
    )


def steps_for_budget(budget_s: float, calibration: Calibration) -> int:
    """Steps that fill ``budget_s`` at the calibrated speed, after its fixed cost (>= 1)."""
    usable = budget_s - calibration.fixed_s
    return max(1, math.floor(usable / calibration.seconds_per_step))


def steps_for_sides(
    budget_s: float,
    seconds_per_side: dict[int, float],
    side_at: Callable[[int, int], int],
    fixed_s: float = 0.0,
) -> int:
    """Steps that fill ``budget_s`` when step costs depend on the training side (>= 1).

    Progressive resizing makes a step's cost a function of its side, and the side of step
    ``i`` a function of the run length ``n`` (the ramp spans fixed fractions of the run):
    ``side_at(i, n)``. ``seconds_per_side`` holds each side's calibrated seconds per step.
    Returns the largest ``n`` with ``fixed_s + sum(seconds_per_side[side_at(i, n)] for i <
    n) <= budget_s`` (bisection: the cost grows with ``n``, up to rounding of the sides).
    """

    def cost(n: int) -> float:
        return fixed_s + sum(seconds_per_side[side_at(i, n)] for i in range(n))

    fastest = min(seconds_per_side.values())
    if fastest <= 0:
        raise ValueError(f"seconds per step must be > 0; got {seconds_per_side}.")
    lo, hi = 1, max(1, math.floor((budget_s - fixed_s) / fastest)) + 1
    while hi - lo > 1:  # invariant: cost(lo) fits (or lo == 1), cost(hi) does not
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if cost(mid) <= budget_s else (lo, mid)
    return lo


def fit_to_budget(
    cfg: ConfigT, n_images: int, budget_s: float, calibration: Calibration
) -> ConfigT:
    """``cfg`` with the run length that fills ``budget_s`` at the calibrated speed."""
    return set_run_length(cfg, n_images, steps_for_budget(budget_s, calibration))
