"""kNN accuracy on CIFAR-10 after a fixed wall-clock budget of SimCLR pre-training.

Both sides get the same minutes (default 10) on the same machine, one after the other:

* **lightly**: lightly 1.6's example pipeline (``lightly_examples.lightly_*``: ImageFolder over the
  JPEG files, ``SimCLRTransform(input_size=32, gaussian_blur=0.0)``, DataLoader with 2
  workers, batch 256, SGD lr 0.06, fp32, ResNet-18 with the CIFAR stem). The clock starts
  before the dataset and the DataLoader are built (worker start-up counts) and the time is
  checked after every step; training stops at the first step that ends past the budget.
* **selfsup**: a recipe (default ``configs/simclr_cifar10_cpu10m.yaml``) run through
  ``selfsup.build.pretrain_simclr`` (the CLI's path) into a temporary run folder, timed
  from the call to its return (data loading, model building, training, final
  checkpoint). Its ``train.budget`` is set to the same minutes (a calibration of 25 steps
  then fixes the run's length, :mod:`selfsup.build.budget`), so it is not cut at the
  budget: its wall time is reported and flagged when it overshoots.
  The decoded-image cache is filled before the clock starts, as lightly's JPEG files are
  already on disk.

Evaluation, identical for every row: the frozen encoder's pooled features h (no
projection head) of un-augmented [0, 1] images, through ``selfsup.evaluation.evaluate`` (=
``extract_features`` + ``knn_evaluate``: weighted cosine kNN, k = 200, T = 0.1), train
split as the bank, test split as queries. selfsup's encoder comes from its checkpoint and
sees images at the checkpoint's test resolution (``meta["image_size"]``: the recipe's
``eval.image_size``, else its training size; 32 px for the CPU presets). lightly's
backbone was trained on views normalised with ImageNet statistics (SimCLRTransform's
default), so it is evaluated behind that same normalisation
(``lightly_examples.ImageNetNormalize``), as lightly's own kNN evaluation does. Baselines in
the same table: a randomly initialised ResNet-18 (CIFAR stem) and raw pixels (flattened
[0, 1] pixels as features).

Usage (from the repository root)::

    python benchmarks/accuracy_budget_simclr.py                 # 10 minutes per side
    python benchmarks/accuracy_budget_simclr.py --quick         # smoke test
    python benchmarks/accuracy_budget_simclr.py --config configs/other.yaml train.epochs=30

Positional ``key=value`` arguments override the recipe (after the budget: a fixed length
needs ``train.budget=none`` beside ``train.epochs``).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402 - the benchmarks' shared module, beside this script
import lightly_examples  # noqa: E402 - lightly's reference pipelines, beside this script

from selfsup.build import load_split, pretrain_simclr  # noqa: E402
from selfsup.config import ConfigError, load_config  # noqa: E402
from selfsup.data import ImageData  # noqa: E402
from selfsup.engine.runtime import select_device  # noqa: E402
from selfsup.eval import knn_evaluate  # noqa: E402
from selfsup.evaluation import encoder_from_checkpoint, evaluate  # noqa: E402
from selfsup.models import create_model  # noqa: E402
from selfsup.recipes import SimCLRConfig  # noqa: E402
from selfsup.study.measure import subset  # noqa: E402

DEFAULT_CONFIG = "configs/simclr_cifar10_cpu10m.yaml"
PARTS = ("lightly", "selfsup", "baselines")
# Quick mode shortens selfsup's recipe to a few steps (before the user's overrides).
QUICK_OVERRIDES = ("train.budget=none", "train.epochs=0.02")
LIGHTLY = "lightly example (fp32)"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("overrides", nargs="*", help="key=value overrides of selfsup's recipe")
    p.add_argument("--config", default=DEFAULT_CONFIG, help=f"selfsup recipe ({DEFAULT_CONFIG})")
    p.add_argument("--minutes", type=float, help="wall-clock budget per side (default 10)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, ...")
    p.add_argument("--batch-size", type=int, default=256, help="lightly's batch (example: 256)")
    p.add_argument("--workers", type=int, default=lightly_examples.LIGHTLY_WORKERS)
    p.add_argument("--knn-train", type=int, help="evaluate on a random subset of train")
    p.add_argument("--knn-test", type=int, help="evaluate on a random subset of test")
    p.add_argument("--k", type=int, default=200)
    p.add_argument("--temperature", type=float, default=0.1)
    p.add_argument("--eval-batch-size", type=int, default=512)
    p.add_argument("--skip", action="append", default=[], choices=PARTS)
    p.add_argument(
        "--quick",
        action="store_true",
        help="smoke test: 0.2 minutes, selfsup train.epochs=0.02, kNN on 2000 train / 1000 "
        "test images (explicit options and overrides still win)",
    )
    p.add_argument(
        "--lightly-threads",
        type=int,
        help="torch threads of lightly's main process (default: torch's, as the example)",
    )
    p.add_argument("--json", help="also write the results to this JSON file")
    args = p.parse_args(argv)
    args.quick_overrides = list(QUICK_OVERRIDES) if args.quick else []
    if args.quick:
        args.knn_train = args.knn_train or 2000
        args.knn_test = args.knn_test or 1000
    if args.minutes is None:
        args.minutes = 0.2 if args.quick else 10.0
    if not args.minutes > 0:
        p.error(f"--minutes must be > 0; got {args.minutes}")
    return args


def train_lightly(
    args: argparse.Namespace, device: torch.device
) -> tuple[nn.Module, dict[str, Any]]:
    """lightly's example loop until ``--minutes`` have passed; returns (encoder, stats)."""
    budget = 60.0 * args.minutes
    torch.manual_seed(0)
    start = time.perf_counter()
    loader = lightly_examples.lightly_loader(args.batch_size, args.workers)
    model = lightly_examples.lightly_model(device)
    model.train()
    step = lightly_examples.lightly_trainer(model, device)
    batches = common.endless(loader)
    steps = 0
    try:
        while True:
            loss = step(next(batches))
            steps += 1
            common.synchronize(device)  # the step must be done when the clock is read
            if time.perf_counter() - start >= budget:
                break
        wall = time.perf_counter() - start
    finally:
        batches.close()
    n = len(loader.dataset)  # type: ignore[arg-type]
    del loader
    images = steps * args.batch_size
    stats = {
        "steps": steps,
        "batch_size": args.batch_size,
        "epochs": images / n,
        "images_per_s": images / wall,
        "wall_s": wall,
        "final_loss": float(loss),
    }
    return lightly_examples.ImageNetNormalize(model.backbone), stats


def train_selfsup(cfg: SimCLRConfig) -> tuple[nn.Module, int | None, dict[str, Any]]:
    """``pretrain_simclr(cfg)`` timed end to end; returns (encoder, image_size, stats)."""
    threads = torch.get_num_threads()
    start = time.perf_counter()
    outcome = pretrain_simclr(cfg)
    wall = time.perf_counter() - start
    torch.set_num_threads(threads)  # the recipe may set its own; restore for evaluation
    encoder, meta = encoder_from_checkpoint(outcome.checkpoint)
    s = outcome.summary
    images = s.steps * cfg.train.batch_size
    stats = {
        "steps": s.steps,
        "batch_size": cfg.train.batch_size,
        "epochs": s.epochs,
        "images_per_s": images / wall,
        "wall_s": wall,
        "final_loss": s.final_loss,
        "train_loop_s": s.wall_time_s,
        "train_loop_images_per_s": s.images_per_second,
        "width": cfg.model.width,
        "augment_size": cfg.augment.size,
    }
    return encoder, meta.get("image_size"), stats


def knn(
    args: argparse.Namespace,
    encoder: nn.Module,
    train: ImageData,
    test: ImageData,
    device: torch.device,
    image_size: int | None,
) -> dict[str, float]:
    """kNN top-1/top-5 of a frozen encoder: the same code for every row."""
    r = evaluate(
        encoder.to(device),
        train,
        test,
        image_size=image_size,
        protocols=("knn",),
        k=args.k,
        temperature=args.temperature,
        batch_size=args.eval_batch_size,
        device=str(device),
    )
    return {"knn_top1": r["knn_top1"], "knn_top5": r["knn_top5"]}


def knn_pixels(args: argparse.Namespace, train: ImageData, test: ImageData) -> dict[str, float]:
    """kNN with flattened [0, 1] pixels as features (cosine, as for the encoders)."""
    assert train.labels is not None and test.labels is not None
    r = knn_evaluate(
        train.images.flatten(1).float() / 255,
        train.labels,
        test.images.flatten(1).float() / 255,
        test.labels,
        num_classes=train.num_classes,
        k=args.k,
        temperature=args.temperature,
    )
    return {"knn_top1": r["top1"], "knn_top5": r["top5"]}


def print_table(rows: dict[str, dict[str, Any]], budget_s: float) -> None:
    def cell(row: dict[str, Any], key: str, fmt: str) -> str:
        return format(row[key], fmt) if row.get(key) is not None else "-"

    print(
        f"\n{'run':34s} {'steps':>6s} {'epochs':>7s} {'images/s':>9s} {'wall s':>8s} "
        f"{'kNN top-1':>9s} {'top-5':>6s}"
    )
    for name, row in rows.items():
        print(
            f"{name:34s} {cell(row, 'steps', 'd'):>6s} {cell(row, 'epochs', '.3f'):>7s} "
            f"{cell(row, 'images_per_s', '.1f'):>9s} {cell(row, 'wall_s', '.1f'):>8s} "
            f"{cell(row, 'knn_top1', '.2f'):>9s} {cell(row, 'knn_top5', '.2f'):>6s}"
        )
    for name, row in rows.items():
        # lightly stops at the first step past the budget (it overshoots by < 1 step);
        # selfsup's recipe fixes its length in advance, so it can overshoot by any amount.
        if row.get("recipe_over_budget"):
            print(
                f"WARNING: {name} took {row['wall_s']:.1f} s, over the {budget_s:.0f} s "
                "budget by more than 2 %: shorten its recipe (train.epochs) for a fair row."
            )


def run(
    args: argparse.Namespace,
    cfg: SimCLRConfig,
    device: torch.device,
    train: ImageData,
    test: ImageData,
) -> dict[str, dict[str, Any]]:
    """Train both sides (one after the other), then evaluate them and the baselines."""
    rows: dict[str, dict[str, Any]] = {}
    trained: dict[str, tuple[nn.Module, int | None]] = {}
    if "lightly" not in args.skip:
        print(f"training: lightly example, {args.minutes:g} min ...", flush=True)
        with common.torch_threads(args.lightly_threads):
            encoder, rows[LIGHTLY] = train_lightly(args, device)
        trained[LIGHTLY] = (encoder, None)
    if "selfsup" not in args.skip:
        print(f"training: selfsup {args.config} ...", flush=True)
        name = f"selfsup {Path(args.config).stem}"
        encoder, size, rows[name] = train_selfsup(cfg)
        rows[name]["recipe_over_budget"] = rows[name]["wall_s"] > 1.02 * 60.0 * args.minutes
        trained[name] = (encoder, size)
    for name, (encoder, size) in trained.items():
        print(f"evaluating: {name} ...", flush=True)
        rows[name].update(knn(args, encoder, train, test, device, size))
    if "baselines" not in args.skip:
        print("evaluating: baselines ...", flush=True)
        torch.manual_seed(0)
        random_net = create_model("resnet18", cifar_stem=True)
        rows["random-init ResNet-18 (CIFAR stem)"] = knn(
            args, random_net, train, test, device, None
        )
        rows["raw pixels"] = knn_pixels(args, train, test)
    return rows


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    device = select_device(args.device)
    with tempfile.TemporaryDirectory(prefix="bench_budget_") as run_dir:
        base = [f"train.run_dir={run_dir}", "train.progress=false", f"train.device={device}"]
        base += [f"train.budget={args.minutes:g}m"]  # selfsup fills the same minutes
        cfg = load_config(
            SimCLRConfig, args.config, [*base, *args.quick_overrides, *args.overrides]
        )
        if cfg.data.dataset != "cifar10":
            raise ConfigError(
                f"This benchmark compares on CIFAR-10 (lightly's example); the "
                f"recipe has data.dataset={cfg.data.dataset}."
            )
        info = common.hardware(device)
        settings = {
            "minutes": args.minutes,
            "config": args.config,
            "overrides": args.overrides,
            "quick": args.quick,
            "lightly_batch_size": args.batch_size,
            "lightly_workers": args.workers,
            "lightly_torch_threads": args.lightly_threads or torch.get_num_threads(),
            "knn_k": args.k,
            "knn_temperature": args.temperature,
            "knn_train_images": args.knn_train or "all",
            "knn_test_images": args.knn_test or "all",
        }
        common.print_header(
            f"SimCLR kNN after {args.minutes:g} min of pre-training, CIFAR-10", info, settings
        )
        train = subset(load_split(cfg.data, cfg.data.train_split, labelled=True), args.knn_train, 0)
        test = subset(load_split(cfg.data, cfg.data.test_split, labelled=True), args.knn_test, 1)
        load_split(cfg.data, cfg.data.train_split, labelled=False)  # fill the decode cache
        if 0 < cfg.train.knn_every_epochs <= cfg.train.epochs:
            print(
                f"note: the recipe's kNN monitor (every {cfg.train.knn_every_epochs} epochs) "
                "runs inside selfsup's timed budget."
            )

        rows = run(args, cfg, device, train, test)
    print_table(rows, 60.0 * args.minutes)
    common.write_json(
        args.json,
        {
            "benchmark": "accuracy_budget_simclr",
            "hardware": info,
            "settings": settings,
            "results": rows,
        },
    )
    return 0


if __name__ == "__main__":
    common.run_main(main)
