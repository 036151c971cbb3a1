"""Schedules as pure functions of the step, plus the batch-size rule for the learning rate.

Every function maps a 0-based optimiser step to a value; the trainer evaluates them once
per iteration (SimCLR steps its schedule per iteration, not per epoch). Past
``total_steps`` a schedule holds its final value, so a run extended on resume keeps a
defined value instead of failing.
"""

from __future__ import annotations

import difflib
import math
from typing import Literal

LRScaling = Literal["linear", "sqrt", "none"]
_SCALING_RULES = ("linear", "sqrt", "none")


def _check_step(step: int, total_steps: int) -> None:
    if total_steps < 1:
        raise ValueError(f"total_steps must be >= 1; got {total_steps}.")
    if step < 0:
        raise ValueError(f"step must be >= 0 (0 is the first optimiser step); got {step}.")


def warmup_cosine(
    step: int,
    *,
    total_steps: int,
    warmup_steps: int,
    base_value: float,
    final_value: float = 0.0,
    warmup_start_value: float = 0.0,
) -> float:
    """Linear warm-up from ``warmup_start_value`` to ``base_value``, then cosine decay.

    For ``step < warmup_steps``: ``start + (base - start) * step / warmup_steps`` (SimCLR's
    official code warms up from 0, so its first step has learning rate 0; I-JEPA starts
    from 2e-4). Afterwards, with ``t = (step - warmup) / (total - warmup)`` in [0, 1],
    ``final + (base - final) * (1 + cos(pi * t)) / 2`` (SGDR, Loshchilov & Hutter 2017,
    as used by SimCLR's ``cosine_decay`` and I-JEPA's ``WarmupCosineSchedule``).
    """
    _check_step(step, total_steps)
    if not 0 <= warmup_steps <= total_steps:
        raise ValueError(
            f"warmup_steps must lie in [0, total_steps={total_steps}]; got {warmup_steps}."
        )
    if step < warmup_steps:
        return warmup_start_value + (base_value - warmup_start_value) * step / warmup_steps
    decay_steps = total_steps - warmup_steps
    if decay_steps == 0:  # all warm-up: hold the peak
        return base_value
    t = min(1.0, (step - warmup_steps) / decay_steps)
    return final_value + (base_value - final_value) * 0.5 * (1.0 + math.cos(math.pi * t))


def linear_schedule(step: int, *, total_steps: int, start: float, end: float) -> float:
    """``start + (end - start) * min(step, total) / total``.

    I-JEPA's EMA momentum goes linearly from 0.996 to 1.0 over training this way.
    """
    _check_step(step, total_steps)
    return start + (end - start) * min(step, total_steps) / total_steps


def cosine_schedule(step: int, *, total_steps: int, start: float, end: float) -> float:
    """Half a cosine from ``start`` (step 0) to ``end`` (step ``total_steps``), no warm-up.

    ``end + (start - end) * (1 + cos(pi * t)) / 2`` with ``t = min(step / total, 1)``;
    ``end`` may exceed ``start``: I-JEPA's weight decay rises from 0.04 to 0.4 this way.
    """
    _check_step(step, total_steps)
    t = min(1.0, step / total_steps)
    return end + (start - end) * 0.5 * (1.0 + math.cos(math.pi * t))


def ramp_size(
    step: int,
    *,
    total_steps: int,
    start_size: int,
    end_size: int,
    ramp: tuple[float, float],
    multiple: int = 1,
) -> int:
    """Progressive resizing: the training side (pixels) at ``step``.

    ``start_size`` until ``ramp[0] x total_steps``, then linear up to ``end_size`` at
    ``ramp[1] x total_steps``, held afterwards; in between, rounded down to a multiple of
    ``multiple`` (never below ``start_size``), so that only a few sizes occur. FFCV's
    ImageNet ResNet recipes train this way (low resolution early, cheap; full resolution at
    the end, so that batch-norm statistics and filters match the evaluation resolution), and
    a train resolution below the test resolution is no handicap (Touvron et al., NeurIPS
    2019, "Fixing the train-test resolution discrepancy").
    """
    _check_step(step, total_steps)
    if not 1 <= start_size <= end_size:
        raise ValueError(
            f"sizes must satisfy 1 <= start_size <= end_size; got {start_size}, {end_size}."
        )
    lo, hi = ramp
    if not 0.0 <= lo <= hi <= 1.0:
        raise ValueError(f"ramp must satisfy 0 <= start <= end <= 1; got {ramp}.")
    if multiple < 1:
        raise ValueError(f"multiple must be >= 1; got {multiple}.")
    t = step / total_steps
    if t >= hi:
        return end_size
    if t <= lo:
        return start_size
    side = start_size + (end_size - start_size) * (t - lo) / (hi - lo)
    return max(start_size, int(side) // multiple * multiple)


def ramp_sides(start_size: int, end_size: int, multiple: int = 1) -> list[int]:
    """Every side :func:`ramp_size` can return for these arguments, ascending: the start,
    the multiples of ``multiple`` between start and end, the end (what a budget calibrates)."""
    inner = range(start_size - start_size % multiple + multiple, end_size, multiple)
    return sorted({start_size, *inner, end_size})


def scale_learning_rate(base_lr: float, batch_size: int, rule: LRScaling | str) -> float:
    """The learning rate for a (global) batch size under a scaling rule.

    ``"linear"``: ``base_lr * batch_size / 256`` (SimCLR: 0.3 x B/256, Goyal et al. 2017);
    ``"sqrt"``: ``base_lr * sqrt(batch_size)`` (SimCLR's 0.075 x sqrt(B), Appendix B.1,
    better for small batches and long training); ``"none"``: ``base_lr`` unchanged.
    """
    if not math.isfinite(base_lr) or base_lr < 0:
        raise ValueError(f"base_lr must be a finite number >= 0; got {base_lr}.")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1; got {batch_size}.")
    if rule == "linear":
        return base_lr * batch_size / 256
    if rule == "sqrt":
        return base_lr * math.sqrt(batch_size)
    if rule == "none":
        return base_lr
    close = difflib.get_close_matches(str(rule), _SCALING_RULES, n=1)
    hint = f" Did you mean '{close[0]}'?" if close else ""
    raise ValueError(
        f"Unknown learning-rate scaling rule '{rule}'; choose one of {', '.join(_SCALING_RULES)}."
        + hint
    )
