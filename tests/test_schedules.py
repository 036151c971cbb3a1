"""Schedules: closed-form values, torch's own schedulers as an outside reference, errors."""

from __future__ import annotations

import math
from functools import partial

import pytest
import torch

from selfsup.engine.schedules import (
    cosine_schedule,
    linear_schedule,
    ramp_sides,
    ramp_size,
    scale_learning_rate,
    warmup_cosine,
)


def test_warmup_cosine_closed_form_points() -> None:
    f = partial(warmup_cosine, total_steps=110, warmup_steps=10, base_value=1.2, final_value=0.2)
    assert f(0) == 0.0  # SimCLR warms up from 0
    assert f(5) == pytest.approx(0.6)
    assert f(10) == pytest.approx(1.2)  # peak right after warm-up
    assert f(60) == pytest.approx(0.7)  # half-way: mean of base and final
    assert f(110) == pytest.approx(0.2)
    assert f(500) == pytest.approx(0.2)  # held after the end
    # A quarter into the decay: final + (base-final) * (1 + cos(pi/4)) / 2.
    assert f(35) == pytest.approx(0.2 + 1.0 * (1 + math.sqrt(0.5)) / 2)


def test_warmup_cosine_matches_torch_schedulers() -> None:
    """torch's LinearLR + CosineAnnealingLR (SequentialLR), stepped once per iteration."""
    total, warmup, base, final, start = 50, 8, 0.4, 0.01, 0.05
    param = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([param], lr=base)
    sched = torch.optim.lr_scheduler.SequentialLR(
        opt,
        [
            torch.optim.lr_scheduler.LinearLR(opt, start / base, 1.0, total_iters=warmup),
            torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=total - warmup, eta_min=final),
        ],
        milestones=[warmup],
    )
    for step in range(total + 1):
        ours = warmup_cosine(
            step,
            total_steps=total,
            warmup_steps=warmup,
            base_value=base,
            final_value=final,
            warmup_start_value=start,
        )
        assert ours == pytest.approx(opt.param_groups[0]["lr"], rel=1e-9, abs=1e-12), step
        opt.step()
        sched.step()


def test_warmup_cosine_edge_cases() -> None:
    assert warmup_cosine(3, total_steps=10, warmup_steps=0, base_value=2.0) == pytest.approx(
        1.0 + math.cos(math.pi * 0.3)
    )
    # All warm-up: linear to the peak, then held.
    assert warmup_cosine(5, total_steps=10, warmup_steps=10, base_value=1.0) == 0.5
    assert warmup_cosine(10, total_steps=10, warmup_steps=10, base_value=1.0) == 1.0


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"step": 0, "total_steps": 0, "warmup_steps": 0}, "total_steps"),
        ({"step": -1, "total_steps": 10, "warmup_steps": 0}, "step must be"),
        ({"step": 0, "total_steps": 10, "warmup_steps": 11}, "warmup_steps"),
        ({"step": 0, "total_steps": 10, "warmup_steps": -1}, "warmup_steps"),
    ],
)
def test_warmup_cosine_rejects_bad_arguments(kwargs: dict[str, int], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        warmup_cosine(base_value=1.0, **kwargs)


def test_linear_schedule_ijepa_momentum() -> None:
    f = partial(linear_schedule, total_steps=1000, start=0.996, end=1.0)
    assert f(0) == 0.996
    assert f(500) == pytest.approx(0.998)
    assert f(1000) == pytest.approx(1.0)
    assert f(5000) == pytest.approx(1.0)
    # I-JEPA's momentum generator: ema0 + i * (ema1 - ema0) / T.
    for i in (1, 17, 999):
        assert f(i) == pytest.approx(0.996 + i * 0.004 / 1000, rel=1e-12)
    with pytest.raises(ValueError, match="total_steps"):
        linear_schedule(0, total_steps=0, start=0.0, end=1.0)


def test_cosine_schedule_ijepa_weight_decay() -> None:
    """I-JEPA's CosineWDSchedule: final + (ref - final) * 0.5 * (1 + cos(pi * t))."""
    f = partial(cosine_schedule, total_steps=300, start=0.04, end=0.4)
    assert f(0) == pytest.approx(0.04)
    assert f(150) == pytest.approx(0.22)
    assert f(300) == pytest.approx(0.4)
    assert f(900) == pytest.approx(0.4)
    for i in (1, 77, 299):
        ref = 0.4 + (0.04 - 0.4) * 0.5 * (1.0 + math.cos(math.pi * i / 300))
        assert f(i) == pytest.approx(ref, rel=1e-12)
    values = [f(i) for i in range(301)]
    assert all(a <= b for a, b in zip(values[:-1], values[1:], strict=True))  # rises monotonically
    with pytest.raises(ValueError, match="step must be"):
        f(-3)


def test_scale_learning_rate_rules() -> None:
    # SimCLR: 0.3 x 4096/256 and 0.075 x sqrt(4096) both give 4.8.
    assert scale_learning_rate(0.3, 4096, "linear") == pytest.approx(4.8)
    assert scale_learning_rate(0.075, 4096, "sqrt") == pytest.approx(4.8)
    assert scale_learning_rate(0.06, 512, "linear") == pytest.approx(0.12)
    assert scale_learning_rate(1e-3, 2048, "none") == 1e-3


def test_scale_learning_rate_errors() -> None:
    with pytest.raises(ValueError, match="Did you mean 'sqrt'"):
        scale_learning_rate(0.1, 256, "sqr")
    with pytest.raises(ValueError, match="linear, sqrt, none"):
        scale_learning_rate(0.1, 256, "cubic")
    with pytest.raises(ValueError, match="batch_size"):
        scale_learning_rate(0.1, 0, "linear")
    with pytest.raises(ValueError, match="base_lr"):
        scale_learning_rate(-0.1, 256, "linear")
    with pytest.raises(ValueError, match="base_lr"):
        scale_learning_rate(float("nan"), 256, "linear")


def test_ramp_size_closed_form_points() -> None:
    size = partial(ramp_size, total_steps=100, start_size=16, end_size=32, ramp=(0.5, 0.9))
    # Held before the ramp, linear (rounded down to 4) inside it, held at the end after it.
    assert [size(s) for s in (0, 25, 50)] == [16, 16, 16]
    # step 60: 16 + 16 * 0.1 / 0.4 = 20; 70: 24; 80: 28; 89: 31.6 -> 28 (multiple 1: 31)
    assert [size(s, multiple=4) for s in (60, 70, 80, 89)] == [20, 24, 28, 28]
    assert size(89) == 31
    assert [size(s) for s in (90, 99, 100, 1000)] == [32, 32, 32, 32]
    # Rounding never drops below the start side, even when it is not a multiple.
    assert (
        ramp_size(55, total_steps=100, start_size=18, end_size=32, ramp=(0.5, 0.9), multiple=8)
        == 18
    )
    # A step ramp (start == end) jumps at that point; a constant side is the identity.
    jump = partial(ramp_size, total_steps=10, start_size=24, end_size=32, ramp=(0.5, 0.5))
    assert [jump(s) for s in (4, 5, 9)] == [24, 32, 32]
    assert {
        ramp_size(s, total_steps=7, start_size=32, end_size=32, ramp=(0, 1)) for s in range(8)
    } == {32}


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"start_size": 40, "end_size": 32}, "start_size <= end_size"),
        ({"start_size": 0, "end_size": 32}, "start_size <= end_size"),
        ({"ramp": (0.9, 0.5)}, "ramp must satisfy"),
        ({"ramp": (0.5, 1.5)}, "ramp must satisfy"),
        ({"multiple": 0}, "multiple must be >= 1"),
    ],
)
def test_ramp_size_rejects_bad_arguments(kwargs: dict[str, object], match: str) -> None:
    args: dict[str, object] = {
        "total_steps": 10,
        "start_size": 24,
        "end_size": 32,
        "ramp": (0.5, 0.8),
        **kwargs,
    }
    with pytest.raises(ValueError, match=match):
        ramp_size(0, **args)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("start", "end", "multiple", "sides"),
    [
        (16, 32, 4, [16, 20, 24, 28, 32]),
        (18, 32, 8, [18, 24, 32]),
        (24, 32, 16, [24, 32]),
        (32, 32, 4, [32]),
        (21, 23, 1, [21, 22, 23]),
    ],
)
def test_ramp_sides_lists_every_side_the_ramp_visits(
    start: int, end: int, multiple: int, sides: list[int]
) -> None:
    assert ramp_sides(start, end, multiple) == sides
    visited = {
        ramp_size(
            s, total_steps=1000, start_size=start, end_size=end, ramp=(0.2, 0.9), multiple=multiple
        )
        for s in range(1001)
    }
    assert visited == set(sides)
