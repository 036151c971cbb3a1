"""Pre-train one study run inside the wall-clock budget, in its own process.

Each run trains in a fresh child process (``multiprocessing`` spawn): its peak memory is its
own (``ru_maxrss`` of the child, or CUDA's peak allocation), and a crash or a kill leaves the
study's other results intact. The child calibrates the method's step time, fixes the run
length that fills the budget (:mod:`selfsup.study.timing`), saves that plan, trains, and
writes ``train.json``. Killed mid-run, the next study call resumes from the run's last
checkpoint with the same plan.

Files in ``run_dir``: ``plan.json`` (calibration, fitted config), ``last.pt``,
``metrics.jsonl``, ``elapsed.json`` (wall time at each checkpoint step),
``snapshots/step_<n>.pt`` (the evaluation encoder's weights at evenly spaced steps, with the
wall time since the run started: the accuracy-vs-time curve) and ``train.json``. Wall times
of a resumed run include its earlier segments (up to the checkpoint it resumed from).
"""

from __future__ import annotations

import json
import multiprocessing
import sys
import time
from pathlib import Path
from typing import Any

import torch

from selfsup.config import apply_overrides, from_dict, to_dict
from selfsup.engine.protocol import Method
from selfsup.study.arms import SCHEMAS
from selfsup.study.timing import (
    Calibration,
    calibrate_run,
    run_steps,
    set_run_length,
    synchronize,
)

PLAN_FILE = "plan.json"
RESULT_FILE = "train.json"
SNAPSHOT_DIR = "snapshots"
ELAPSED_FILE = "elapsed.json"


class SnapshotSaver:
    """Trainer callback: save the evaluation encoder's weights every ``every_steps`` steps
    with the seconds elapsed since ``start`` (a ``time.perf_counter()`` reading)."""

    def __init__(self, folder: Path, every_steps: int, start: float, device: torch.device):
        self.folder = folder
        self.every_steps = max(1, every_steps)
        self.start = start
        self.device = device

    def __call__(self, step: int, method: Method) -> dict[str, float]:
        synchronize(self.device)
        elapsed = time.perf_counter() - self.start
        state = {k: v.detach().cpu() for k, v in method.eval_encoder().state_dict().items()}
        self.folder.mkdir(parents=True, exist_ok=True)
        torch.save(
            {"step": step, "elapsed_s": elapsed, "state": state}, self.folder / f"step_{step}.pt"
        )
        return {}


class ElapsedLog:
    """Trainer callback: record the run's wall time so far (since ``start``, a
    ``time.perf_counter()`` reading moved back by the earlier segments' time) at every
    checkpoint step in ``path`` (JSON step -> seconds), so that a resumed run reports its
    whole wall time, not only its last segment."""

    def __init__(self, path: Path, every_steps: int, start: float) -> None:
        self.path = path
        self.every_steps = max(1, every_steps)
        self.start = start
        self.log: dict[str, float] = json.loads(path.read_text()) if path.is_file() else {}

    def __call__(self, step: int, method: Method) -> dict[str, float]:
        self.log[str(step)] = time.perf_counter() - self.start
        self.path.write_text(json.dumps(self.log) + "\n")
        return {}


def _prior_elapsed(run_dir: Path) -> float:
    """Wall time of the earlier segments up to the checkpoint a resume starts from."""
    from selfsup.engine.checkpoint import load_checkpoint
    from selfsup.engine.trainer import CHECKPOINT_NAME

    path = run_dir / ELAPSED_FILE
    if not path.is_file():
        return 0.0
    step = int(load_checkpoint(run_dir / CHECKPOINT_NAME).get("step", 0))
    log = {int(k): float(v) for k, v in json.loads(path.read_text()).items()}
    return max((v for k, v in log.items() if k <= step), default=0.0)


def peak_memory_mb(device: torch.device) -> float:
    """This process's peak memory in MiB: CUDA's peak allocation, else the peak resident set."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    try:
        import resource
    except ImportError:  # not on a POSIX system
        return float("nan")
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / 2**20 if sys.platform == "darwin" else rss / 2**10  # bytes on macOS, KiB else


def _train(request: dict[str, Any]) -> dict[str, Any]:
    """The child's work: calibrate (or read the saved plan), train, report."""
    from selfsup.build import load_split, pretrain_simclr
    from selfsup.build.ijepa import pretrain_ijepa
    from selfsup.engine.runtime import select_device
    from selfsup.engine.trainer import CHECKPOINT_NAME

    method, run_dir = request["method"], Path(request["run_dir"])
    cfg: Any = from_dict(SCHEMAS[method], request["config"])
    if cfg.train.num_threads:
        torch.set_num_threads(cfg.train.num_threads)
    device = select_device(cfg.train.device)
    plan_path = run_dir / PLAN_FILE
    resume = plan_path.is_file() and (run_dir / CHECKPOINT_NAME).is_file()
    if resume:
        plan = json.loads(plan_path.read_text())
        cfg = from_dict(SCHEMAS[method], plan["config"])
    else:
        images = load_split(cfg.data, cfg.data.train_split, labelled=False).images
        cal = calibrate_run(
            cfg,
            images,
            warmup=request["calibrate_warmup"],
            steps=request["calibrate_steps"],
            device=device,
        )
        steps = run_steps(request["budget_s"], cfg, cal)
        # The study's calibration sets the length: a recipe's own train.budget steps aside.
        cfg = apply_overrides(set_run_length(cfg, len(images), steps), ["train.budget=none"])
        plan = {
            "calibration": cal.__dict__ | {"images_per_s": cal.images_per_s},
            "steps": steps,
            "budget_s": request["budget_s"],
            "config": to_dict(cfg),
        }
        run_dir.mkdir(parents=True, exist_ok=True)
        plan_path.write_text(json.dumps(plan, indent=2) + "\n")
        del images
    pretrain = pretrain_ijepa if method == "ijepa" else pretrain_simclr
    prior = _prior_elapsed(run_dir) if resume else 0.0
    start = time.perf_counter() - prior  # snapshot times count the earlier segments too
    saver = SnapshotSaver(
        run_dir / SNAPSHOT_DIR, plan["steps"] // max(1, request["snapshots"]), start, device
    )
    clock = ElapsedLog(run_dir / ELAPSED_FILE, cfg.train.checkpoint_every, start)
    outcome = pretrain(cfg, resume=resume, callbacks=[saver, clock])
    wall = time.perf_counter() - start
    s = outcome.summary
    return {
        "method": method,
        "steps": s.steps,
        "batch_size": cfg.train.batch_size,
        "epochs": s.epochs,
        "wall_s": wall,
        "budget_s": request["budget_s"],
        "images_per_s": s.steps_this_run * cfg.train.batch_size / (wall - prior),
        "train_loop_images_per_s": s.images_per_second,
        "final_loss": s.final_loss,
        "peak_memory_mb": peak_memory_mb(device),
        "resumed": resume,
        "calibration": plan["calibration"],
        "checkpoint": str(outcome.checkpoint),
        "device": str(device),
        "threads": torch.get_num_threads(),
    }


def _child(request: dict[str, Any]) -> None:
    result = _train(request)
    Path(request["run_dir"], RESULT_FILE).write_text(json.dumps(result, indent=2) + "\n")


def train_run(
    method: str,
    config: dict[str, Any],
    run_dir: Path,
    *,
    budget_s: float,
    calibrate_warmup: int,
    calibrate_steps: int,
    snapshots: int,
) -> dict[str, Any]:
    """Train one run in a child process (see the module docstring); its ``train.json``.

    ``config``: the run's full config as plain data (``to_dict``), its ``train.run_dir``
    already ``run_dir``. A finished run (``train.json`` present) is not trained again.
    """
    result_path = run_dir / RESULT_FILE
    if result_path.is_file():
        return dict(json.loads(result_path.read_text()))
    request = {
        "method": method,
        "config": config,
        "run_dir": str(run_dir),
        "budget_s": budget_s,
        "calibrate_warmup": calibrate_warmup,
        "calibrate_steps": calibrate_steps,
        "snapshots": snapshots,
    }
    process = multiprocessing.get_context("spawn").Process(target=_child, args=(request,))
    process.start()
    process.join()
    if process.exitcode != 0 or not result_path.is_file():
        raise RuntimeError(
            f"Pre-training in {run_dir} failed (exit code {process.exitcode}); its error is "
            "printed above. Fix it and run the study again: finished runs are kept."
        )
    return dict(json.loads(result_path.read_text()))


def snapshot_files(run_dir: Path) -> list[Path]:
    """The run's encoder snapshots, by step."""
    files = (run_dir / SNAPSHOT_DIR).glob("step_*.pt")
    return sorted(files, key=lambda p: int(p.stem.split("_")[1]))


__all__ = ["Calibration", "SnapshotSaver", "peak_memory_mb", "snapshot_files", "train_run"]
