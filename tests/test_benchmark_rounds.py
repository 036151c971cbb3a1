"""The benchmarks' rounds (``benchmarks/common.measure_rounds``): order, pooling, medians."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import common  # noqa: E402 - the benchmarks' shared module


def test_rounds_alternate_order_pool_windows_and_keep_each_rounds_medians() -> None:
    calls: list[bool] = []

    def measure_once(reverse: bool) -> dict[str, list[float]]:
        calls.append(reverse)
        r = len(calls)
        return {"ours": [10.0 * r, 10.0 * r + 2, 10.0 * r + 1], "theirs": [float(r)]}

    pooled, per_round = common.measure_rounds(measure_once, 3)
    assert calls == [False, True, False]
    assert pooled == {"ours": [10, 12, 11, 20, 22, 21, 30, 32, 31], "theirs": [1, 2, 3]}
    assert per_round == [
        {"ours": 11.0, "theirs": 1.0},
        {"ours": 21.0, "theirs": 2.0},
        {"ours": 31.0, "theirs": 3.0},
    ]


def test_one_round_is_one_plain_measurement() -> None:
    pooled, per_round = common.measure_rounds(lambda reverse: {"a": [1.0, 3.0]}, 1)
    assert pooled == {"a": [1.0, 3.0]} and per_round == [{"a": 2.0}]


def test_no_round_is_refused() -> None:
    with pytest.raises(ValueError, match="at least one round"):
        common.measure_rounds(lambda reverse: {}, 0)
