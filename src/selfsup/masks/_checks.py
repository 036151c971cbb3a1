"""Argument checks of the mask sampler: each bad value is a ValueError naming the
parameter, what it got and the valid range."""

from __future__ import annotations

import math
from collections.abc import Sequence
from numbers import Integral, Real
from typing import Any


def _is_int(value: Any) -> bool:
    return isinstance(value, Integral) and not isinstance(value, bool)


def check_int(name: str, value: Any, low: int, high: int | None, why: str) -> int:
    """``value`` as an int in ``[low, high]`` (``high=None``: no upper bound)."""
    if not _is_int(value) or value < low or (high is not None and value > high):
        bound = f"an integer >= {low}" if high is None else f"an integer in [{low}, {high}]"
        raise ValueError(f"{name} must be {bound} ({why}); got {value!r}.")
    return int(value)


def check_grid(grid: Any) -> tuple[int, int]:
    """``(H, W)`` patch counts, both positive integers."""
    if (
        not isinstance(grid, Sequence)
        or len(grid) != 2
        or not all(_is_int(v) and v >= 1 for v in grid)
    ):
        raise ValueError(
            f"grid must be (H, W), two positive integers counting patches (image size // "
            f"patch size, e.g. (14, 14) for 224 px with patch 16); got {grid!r}."
        )
    return int(grid[0]), int(grid[1])


def check_range(name: str, value: Any, unit: bool) -> tuple[float, float]:
    """An ordered pair ``(low, high)``: in ``(0, 1]`` if ``unit`` (a fraction of the grid),
    else positive and finite (an aspect ratio). ``low == high`` fixes the value."""
    valid = "0 < low <= high <= 1" if unit else "0 < low <= high (finite)"
    if (
        not isinstance(value, Sequence)
        or len(value) != 2
        or not all(isinstance(v, Real) and not isinstance(v, bool) for v in value)
    ):
        raise ValueError(f"{name} must be a pair (low, high) with {valid}; got {value!r}.")
    low, high = float(value[0]), float(value[1])
    ok = math.isfinite(low) and math.isfinite(high) and 0 < low <= high
    if not ok or (unit and high > 1):
        raise ValueError(f"{name} must satisfy {valid}; got {value!r}.")
    return low, high
