"""The benchmarks' shared helpers: rounds (``common.measure_rounds``: order, pooling, medians)
and the overrides of fixed-length runs (``common.fixed_length_keys``)."""

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


def test_fixed_length_benchmarks_turn_a_recipes_budget_off() -> None:
    """probe_simclr / probe_ijepa / accuracy_budget_ijepa set the length in steps: a
    recipe's own ``train.budget`` (the 10-minute preset's 9.5m) would re-fit it to the
    clock and silently train another number of steps."""
    import torch

    from selfsup.config import load_config
    from selfsup.recipes import SimCLRConfig
    from selfsup.study.timing import set_run_length

    recipe = Path(__file__).resolve().parents[1] / "configs" / "simclr_cifar10_cpu10m.yaml"
    assert load_config(SimCLRConfig, str(recipe), []).train.budget == "9.5m"
    keys = common.fixed_length_keys(torch.device("cpu"), 1)
    cfg = set_run_length(load_config(SimCLRConfig, str(recipe), keys), 50_000, 1877)
    assert cfg.train.budget is None
    assert (cfg.train.num_threads, cfg.train.knn_every_epochs, cfg.train.progress) == (1, 0, False)
    unset = common.fixed_length_keys(torch.device("cpu"), None)  # the recipe's threads stay
    assert not any(key.startswith("train.num_threads=") for key in unset)


def test_round_ratios_and_the_rounds_option(capsys: pytest.CaptureFixture[str]) -> None:
    import argparse

    per_round = [
        {"ours": 10.0, "theirs": 4.0},
        {"ours": 9.0, "theirs": 3.0},
        {"ours": 8.0, "theirs": 4.0},
    ]
    out = common.round_ratios(per_round, "ours", "theirs", "ratio")
    assert out == {"ratio_per_round": [2.5, 3.0, 2.0], "ratio_round_median": 2.5}
    assert "per round [2.50, 3.00, 2.00], median 2.50x" in capsys.readouterr().out
    assert common.round_ratios(per_round[:1], "ours", "theirs", "ratio") == {}  # one round

    p = argparse.ArgumentParser()
    common.add_rounds_option(p)
    assert p.parse_args([]).rounds == 1
    assert p.parse_args(["--rounds", "3"]).rounds == 3
    with pytest.raises(SystemExit):
        p.parse_args(["--rounds", "0"])
    assert "run at least one round" in capsys.readouterr().err


def test_step_benchmarks_time_one_mask_draw_per_image(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """throughput_ijepa (against lightly's one-draw collator) and cost_ijepa_vs_simclr (the
    paper's step) pin ``masks.repeats=1`` whatever the recipe says."""
    import cost_ijepa_vs_simclr
    import throughput_ijepa
    import torch

    from selfsup.recipes import IJEPAConfig

    recipe = tmp_path / "multi_mask.yaml"
    recipe.write_text("masks:\n  repeats: 3\n")
    monkeypatch.setattr(throughput_ijepa, "RECIPE", str(recipe))
    monkeypatch.setattr(cost_ijepa_vs_simclr, "IJEPA_RECIPE", str(recipe))
    cpu = torch.device("cpu")
    args = throughput_ijepa.parse_args([])
    assert throughput_ijepa.selfsup_config(args, cpu, "truncate").masks.repeats == 1
    args = cost_ijepa_vs_simclr.parse_args([])
    for run in ("truncate", "pad"):
        cfg = cost_ijepa_vs_simclr.config(run, args, cpu)
        assert isinstance(cfg, IJEPAConfig) and cfg.masks.repeats == 1


def test_hardware_names_a_missing_lightly_instead_of_failing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A lent GPU machine has no registry: `--skip lightly` must run ours without lightly.
    import importlib.metadata

    import torch

    real_version = importlib.metadata.version

    def version(name: str) -> str:
        if name == "lightly":
            raise importlib.metadata.PackageNotFoundError(name)
        return real_version(name)

    monkeypatch.setattr(importlib.metadata, "version", version)
    assert common.hardware(torch.device("cpu"))["lightly"] == "not installed"
