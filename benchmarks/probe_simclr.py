"""SimCLR recipe probes at a fixed compute budget: calibrate, then a fixed number of steps.

This is how a CPU recipe is searched (``benchmarks/RESULTS.md``, "How the CPU preset was
chosen"): a budget in minutes becomes a step count from a short calibration of the
recipe's own steps on this machine, and the run then trains exactly that many steps, so its
result does not depend on what else the machine runs afterwards. Calibrate on an idle
machine with the threads the budget is meant for (``--threads 2`` on 2 cores); the training
may then share the machine (``--steps N`` from an earlier calibration, ``--train-threads 1``).

With progressive resizing (``augment.start_size``), a step's cost depends on its side:
``selfsup.study.timing.calibrate_run`` (as in ``selfsup study``) calibrates every side the
schedule visits (20 steps each, the whole calibration at that side), and
``timing.run_steps`` finds the run length whose summed step costs fill the budget.
Evaluation: weighted cosine kNN (k = 200, T = 0.1) of h on the full CIFAR-10 train split as
bank and test split as queries (or seeded subsets), and optionally a linear probe.
Usage (repository root)::

    python benchmarks/probe_simclr.py --minutes 10 --threads 2 --calibrate-only
    python benchmarks/probe_simclr.py --steps 2200 --train-threads 1 augment.start_size=24
    python benchmarks/probe_simclr.py --quick
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402 - the benchmarks' shared module, beside this script

from selfsup.build import load_split, pretrain_simclr  # noqa: E402
from selfsup.config import apply_overrides, load_config  # noqa: E402
from selfsup.engine.runtime import select_device  # noqa: E402
from selfsup.evaluation import encoder_from_checkpoint, evaluate  # noqa: E402
from selfsup.recipes import SimCLRConfig  # noqa: E402
from selfsup.study import timing  # noqa: E402
from selfsup.study.measure import subset  # noqa: E402

RECIPE = "configs/simclr_cifar10_cpu10m.yaml"
DEFAULTS = {"knn_train": None, "knn_test": None, "linear_epochs": 0, "calibration_steps": 20}
QUICK_DEFAULTS = {"knn_train": 500, "knn_test": 200, "linear_epochs": 5, "calibration_steps": 3}
QUICK_OVERRIDES = ("train.batch_size=32", "model.width=0.125")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("overrides", nargs="*", help="key=value overrides of the SimCLR recipe")
    p.add_argument("--config", default=RECIPE, help=f"({RECIPE})")
    length = p.add_mutually_exclusive_group()
    length.add_argument("--minutes", type=float, help="budget: calibrate, then fill it")
    length.add_argument("--steps", type=int, help="train exactly this many steps")
    p.add_argument("--calibrate-only", action="store_true", help="print the steps and stop")
    p.add_argument("--calibration-steps", type=int, help="timed steps per side (20)")
    p.add_argument("--train-threads", type=int, help="torch threads for training (--threads)")
    common.add_eval_options(p, linear_epochs=0)
    p.add_argument("--quick", action="store_true", help="smoke test: 4 steps, tiny subsets")
    p.add_argument("--json", help="also write the results to this JSON file")
    args = p.parse_args(argv)
    common.fill_defaults(args, DEFAULTS, QUICK_DEFAULTS, QUICK_OVERRIDES)
    if args.quick and args.minutes is None and args.steps is None:
        args.steps = 4
    if args.minutes is None and args.steps is None:
        p.error("give the run length: --minutes M (calibrated here) or --steps N")
    if (args.minutes is not None and args.minutes <= 0) or (
        args.steps is not None and args.steps < 1
    ):
        p.error("--minutes must be > 0 and --steps >= 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    device = select_device(args.device)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory(prefix="bench_simclr_probe_") as tmp:
        keys = common.fixed_length_keys(device, args.train_threads or args.threads)
        keys += [*args.quick_overrides, f"train.run_dir={tmp}/run", *args.overrides]
        cfg = load_config(SimCLRConfig, args.config, keys)
        info = common.hardware(device)
        settings = {k: v for k, v in vars(args).items() if k not in ("json", "device")}
        common.print_header(f"SimCLR probe, {cfg.data.dataset}", info, settings)
        d = cfg.data
        train = load_split(d, d.train_split, labelled=True)  # fills the decode cache
        images = train.images
        row: dict[str, Any] = {}
        steps = args.steps
        if args.minutes is not None:
            print(f"calibrating ({args.calibration_steps} steps per side) ...", flush=True)
            calib = apply_overrides(cfg, [f"train.num_threads={torch.get_num_threads()}"])
            cal = timing.calibrate_run(
                calib, images, warmup=3, steps=args.calibration_steps, device=device
            )
            seconds = cal.seconds_per_side or {cfg.augment.size: cal.seconds_per_step}
            for side, s in seconds.items():
                print(f"  side {side:3d} px: {s:.4f} s/step", flush=True)
            steps = timing.run_steps(60 * args.minutes, calib, cal)
            row["seconds_per_step"] = {str(k): v for k, v in seconds.items()}
            print(f"{args.minutes} minutes here: {steps} steps of {cfg.train.batch_size}")
        row["steps"] = steps
        if not args.calibrate_only:
            cfg = timing.set_run_length(cfg, len(images), steps)
            print(f"training: {steps} steps of {cfg.train.batch_size} ...", flush=True)
            threads = torch.get_num_threads()
            start = time.perf_counter()
            outcome = pretrain_simclr(cfg)
            row.update(wall_s=time.perf_counter() - start, final_loss=outcome.summary.final_loss)
            torch.set_num_threads(threads)  # the recipe may set its own; restore for eval
            encoder, meta = encoder_from_checkpoint(outcome.checkpoint)
            train = subset(train, args.knn_train, 0)  # None: the whole split
            test = subset(load_split(d, d.test_split, labelled=True), args.knn_test, 1)
            row.update(
                evaluate(
                    encoder.to(device),
                    train,
                    test,
                    image_size=meta.get("image_size"),
                    protocols=("knn", "linear") if args.linear_epochs > 0 else ("knn",),
                    k=args.k,
                    temperature=args.temperature,
                    linear_epochs=args.linear_epochs,
                    batch_size=args.eval_batch_size,
                    device=str(device),
                )
            )
            line = f"kNN top-1 {row['knn_top1']:.2f}"
            if "linear_top1" in row:
                line += f"   linear top-1 {row['linear_top1']:.2f}"
            print(f"\n{steps} steps x {cfg.train.batch_size}, {row['wall_s']:.1f} s: {line}")
    payload = {"benchmark": "probe_simclr", "hardware": info, "settings": settings}
    common.write_json(args.json, {**payload, "results": row})
    return 0


if __name__ == "__main__":
    common.run_main(main)
