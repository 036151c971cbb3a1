"""``selfsup study --quick`` end to end on CIFAR-10 (../shared), in-process: every arm
trains for 15 s in its own process, every measurement runs on small subsets, and the
report's structure and numbers are checked. A second call resumes from disk; a sweep
writes its own section. (A few minutes on 2 CPU cores: the suite's longest test.)"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any

import pytest
from test_cli import run

from selfsup.study.arms import ARMS

pytestmark = pytest.mark.filterwarnings("ignore")


@pytest.fixture(scope="module")
def study_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("study") / "quick"
    code, text, err = run("study", "--quick", "--out", out, "--threads", 2)
    assert code == 0, err
    assert f"report: {out / 'report.md'}" in text
    return out


def finite(value: Any) -> bool:
    return isinstance(value, int | float) and math.isfinite(value)


def test_every_number_is_present_and_finite(study_dir: Path) -> None:
    study = json.loads((study_dir / "study.json").read_text())
    assert set(study["runs"]) == set(ARMS)
    for name, r in study["runs"].items():
        t = r["train"]
        assert t["steps"] >= 1 and finite(t["wall_s"]) and finite(t["images_per_s"]), name
        assert finite(t["peak_memory_mb"]) and t["peak_memory_mb"] > 0
        for key in ("knn_top1", "knn_top5", "linear_top1", "linear_top5"):
            assert 0 <= r["knn_linear"][key] <= 100, (name, key)
        for labels in ("1%", "10%"):
            assert 0 <= r[f"finetune_{labels}"]["finetune_top1"] <= 100
        assert (study_dir / name / "finetune_1pct" / "subset.csv").is_file()
        assert 0 <= r["shapes"]["counting_top1"] <= 100 and finite(r["shapes"]["depth_mae"])
        assert r["cost"]["train_flops_per_image"] > 0 and r["cost"]["encoder_parameters"] > 0
        tasks = r["transforms"]["tasks"]
        assert set(tasks) == {"grayscale", "rotation", "corrupted", "sobel"}
        assert all(("g(h)" in v) == (r["method"] == "simclr") for v in tasks.values())
        assert r["curve"]["points"] and all(finite(p["knn_top1"]) for p in r["curve"]["points"])
        assert all(finite(x) for x in r["embedding"]["x"] + r["embedding"]["y"])
    # I-JEPA's one partial view costs fewer FLOPs than SimCLR's two full ones (same ViT).
    runs = study["runs"]
    ij, sc = runs["ijepa_vit"]["cost"], runs["simclr_vit"]["cost"]
    assert ij["train_flops_per_image"] < sc["train_flops_per_image"]
    assert set(study["baselines"]) == {"random_resnet18", "random_vit_tiny"}
    assert len(study["figures"]["paths"]) == 4
    for figure in study["figures"]["paths"].values():
        assert (study_dir / figure).stat().st_size > 1000
    assert all(finite(v) for v in study["figures"]["predictor_mse"].values())


def test_report_sets_claims_beside_measurements(study_dir: Path) -> None:
    md = (study_dir / "report.md").read_text()
    for heading in (
        "# selfsup study: cifar10",
        "## Results",
        "## The papers' claims against our measurements",
        "## What h and g(h) know (SimCLR Table 3)",
        "## Figures",
    ):
        assert heading in md
    for arm in ARMS.values():
        assert f"| {arm.title} |" in md
    assert "nan" not in md.lower().replace("nanoseconds", "")
    verdicts = [
        line.rsplit("| **", 1)[1].split("**")[0]
        for line in md.splitlines()
        if line.startswith("| ") and "| **" in line
    ]
    assert len(verdicts) >= 9 and set(verdicts) <= {"agrees", "disagrees", "partly", "not measured"}
    page = (study_dir / "report.html").read_text()
    assert page.count("data:image/png;base64,") >= 7  # 3 study plots + 4 paper figures
    assert 'src="http' not in page and 'src="figures' not in page  # self-contained


def test_running_again_resumes_from_disk(study_dir: Path) -> None:
    trained = {n: (study_dir / n / "train.json").stat().st_mtime_ns for n in ARMS}
    start = time.perf_counter()
    code, _, err = run("study", "--quick", "--out", study_dir, "--threads", 2)
    assert code == 0, err
    assert {n: (study_dir / n / "train.json").stat().st_mtime_ns for n in ARMS} == trained
    assert time.perf_counter() - start < 120  # no training, no measurement: reading and drawing


def test_quick_sweep_writes_its_section(tmp_path: Path) -> None:
    out = tmp_path / "sweep"
    code, _, err = run(
        "study",
        "--quick",
        "--sweep",
        "temperature=0.2,0.5",
        "--arms",
        "simclr_resnet",
        "--out",
        out,
        "--threads",
        2,
    )
    assert code == 0, err
    study = json.loads((out / "study.json").read_text())
    assert [r["sweep_value"] for r in study["runs"].values()] == ["0.2", "0.5"]
    md = (out / "report.md").read_text()
    assert "## Sweep over loss.temperature" in md and "figures/sweep.png" in md
    assert "The temperature sets how hard negatives weigh" in md
