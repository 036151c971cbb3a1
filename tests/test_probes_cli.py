"""``selfsup data shapes`` and ``selfsup probe counting|depth`` end to end, in-process: a
60-image shapes dataset and a 4-step SimCLR checkpoint (ResNet-18 x0.125) on the tiny
red/blue tree of test_cli."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from test_cli import assert_user_error, make_dataset, overrides, run

from selfsup.data import load_dataset
from selfsup.probes.shapes import _labels

N = 60


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)


@pytest.fixture(scope="module")
def shapes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("shapes") / "d"
    code, text, err = run("data", "shapes", "--out", out, "--n", N, "--no-progress")
    assert code == 0, err
    assert f"wrote {N} images of 32 px to {out}" in text
    return out


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    data = make_dataset(tmp_path_factory.mktemp("rb"))
    run_dir = tmp_path_factory.mktemp("run") / "simclr"
    code, _, err = run("pretrain", "simclr", *overrides(data, run_dir))
    assert code == 0, err
    return run_dir / "last.pt"


def test_labels_follow_the_images_loaded(shapes: Path) -> None:
    for split in ("train", "test"):
        data = load_dataset(shapes, split, cache_dir=False)
        counts, depths = _labels(data, shapes, split)
        assert data.labels is not None
        # The class folder of each image is its count: the labels were matched to the files.
        assert counts.tolist() == [int(data.classes[i]) for i in data.labels.tolist()]
        assert torch.isfinite(depths).all() and (depths > 0).all()


def test_probe_counting_and_depth_print_and_json(shapes: Path, checkpoint: Path) -> None:
    args = ("--checkpoint", checkpoint, "--data", shapes, "--device", "cpu")
    code, text, err = run("probe", "counting", *args, "--epochs", 3)
    assert code == 0, err
    assert text.startswith("counting top-1: ") and "most frequent count" in text
    code, text, err = run("probe", "depth", *args, "--json")
    assert code == 0, err
    result = json.loads(text)
    assert set(result) == {"feature_seconds", "depth_mae", "depth_baseline_mae", "depth_r2"}
    assert all(math.isfinite(v) for v in result.values())
    assert 0 < result["depth_mae"] < 5 and result["depth_baseline_mae"] > 0


def test_bad_input_is_named(shapes: Path, checkpoint: Path, tmp_path: Path) -> None:
    args = ("--checkpoint", checkpoint, "--device", "cpu")
    assert_user_error(run("probe", "countin", *args, "--data", shapes), "'countin'", "counting")
    assert_user_error(
        run("probe", "depth", *args, "--data", tmp_path), "not a shapes dataset", "data shapes"
    )
    assert_user_error(run("data", "shape", "--out", tmp_path / "x"), "'shape'", "shapes")
    assert_user_error(run("data", "shapes", "--out", tmp_path / "y", "--size", 48), "size", "48")
    assert_user_error(run("data", "shapes", "--out", tmp_path / "z", "--n", 0), "n")
    too_many = run("data", "shapes", "--out", tmp_path / "w", "--max-objects", 11)
    assert_user_error(too_many, "max_objects", "11")
    assert not (tmp_path / "w").exists()
    assert_user_error(run("data", "shapes", "--out", shapes), "empty")
