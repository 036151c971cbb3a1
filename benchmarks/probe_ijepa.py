"""Fixed-length I-JEPA probes: pre-train for a fixed number of images, then score the target
and the context encoder with kNN and a linear probe.

This is how the recipe search of ``benchmarks/RESULTS.md`` ("The small-image I-JEPA recipe:
what was tried") was run: every probe sees the same number of images (default 100,000, about
7 minutes of ViT-tiny on 2 CPU cores), whatever its batch size, so that a change of batch
size or learning rate is compared at equal data rather than equal time. The run length is
``--images // batch`` steps; the warm-up keeps the recipe's fraction of the run (15 % for
``configs/ijepa_cifar10_vit_tiny.yaml``), and EMA momentum and weight decay follow the length
by themselves. Evaluation is ``accuracy_budget_ijepa.score``: kNN (k = 200, T = 0.1) and a
linear probe (default 30 epochs) on a seeded 10,000-image train subset as bank and probe
training set, 2,000 test images as queries. The target (EMA) encoder is what ``selfsup eval``
reads; the context encoder is scored too because the gap between the two shows whether the
target lags a collapsing or a learning context encoder. Usage (repository root)::

    python benchmarks/probe_ijepa.py optim.lr=2.5e-4 optim.start_lr=5e-5 --json l.json
    python benchmarks/probe_ijepa.py --quick                      # smoke test, ~1 min
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402 - the benchmarks' shared module, beside this script
from accuracy_budget_ijepa import IJEPA_RECIPE, score  # noqa: E402

from selfsup.build import load_split  # noqa: E402
from selfsup.build.ijepa import pretrain_ijepa  # noqa: E402
from selfsup.config import load_config  # noqa: E402
from selfsup.engine.runtime import select_device  # noqa: E402
from selfsup.evaluation import encoder_from_checkpoint  # noqa: E402
from selfsup.recipes import IJEPAConfig  # noqa: E402
from selfsup.study import timing  # noqa: E402
from selfsup.study.measure import subset  # noqa: E402

# The context encoder's weights in an I-JEPA checkpoint (selfsup.methods.ijepa.IJEPA.online).
CONTEXT_PREFIX = "online.encoder."
DEFAULTS = {"images": 100_000, "knn_train": 10_000, "knn_test": 2_000, "linear_epochs": 30}
QUICK_DEFAULTS = {"images": 320, "knn_train": 500, "knn_test": 200, "linear_epochs": 5}
QUICK_OVERRIDES = ("train.batch_size=32",)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("overrides", nargs="*", help="key=value overrides of the I-JEPA recipe")
    p.add_argument("--config", default=IJEPA_RECIPE, help=f"({IJEPA_RECIPE})")
    p.add_argument("--images", type=int, help="images to pre-train on (default 100000)")
    common.add_eval_options(p, linear_epochs=30)
    p.add_argument("--no-context", action="store_true", help="score the target encoder only")
    p.add_argument(
        "--quick",
        action="store_true",
        help="smoke test: 320 images at batch 32, eval on 500 train / 200 test images, "
        "5 probe epochs (explicit options win)",
    )
    p.add_argument("--json", help="also write the results to this JSON file")
    args = p.parse_args(argv)
    common.fill_defaults(args, DEFAULTS, QUICK_DEFAULTS, QUICK_OVERRIDES)
    if args.images < 1:
        p.error(f"--images must be >= 1; got {args.images}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    device = select_device(args.device)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory(prefix="bench_ijepa_probe_") as tmp:
        keys = common.fixed_length_keys(device, args.threads)
        keys += [*args.quick_overrides, f"train.run_dir={tmp}/run", *args.overrides]
        cfg = load_config(IJEPAConfig, args.config, keys)
        info = common.hardware(device)
        settings = {k: v for k, v in vars(args).items() if k not in ("json", "device")}
        common.print_header(
            f"I-JEPA probe: {args.images} images, {cfg.data.dataset}", info, settings
        )
        d = cfg.data
        train = subset(load_split(d, d.train_split, labelled=True), args.knn_train, 0)
        test = subset(load_split(d, d.test_split, labelled=True), args.knn_test, 1)
        n_images = len(load_split(d, d.train_split, labelled=False))  # fills the decode cache
        steps = max(1, args.images // cfg.train.batch_size)
        cfg = timing.set_run_length(cfg, n_images, steps)
        print(f"training: {steps} steps of {cfg.train.batch_size} ...", flush=True)
        threads = torch.get_num_threads()
        start = time.perf_counter()
        outcome = pretrain_ijepa(cfg)
        wall = time.perf_counter() - start
        torch.set_num_threads(threads)  # the recipe may set its own; restore for evaluation
        s = outcome.summary
        row = {"steps": s.steps, "batch_size": cfg.train.batch_size, "wall_s": wall}
        row["final_loss"] = s.final_loss
        parts = {"target": None} if args.no_context else {"target": None, "context": CONTEXT_PREFIX}
        for part, prefix in parts.items():
            print(f"evaluating: {part} encoder ...", flush=True)
            encoder, meta = encoder_from_checkpoint(outcome.checkpoint, prefix=prefix)
            scores = score(args, encoder, (train, test), device, meta.get("image_size"))
            row.update({f"{part}_{key}": value for key, value in scores.items()})
    loss = "-" if s.final_loss is None else f"{s.final_loss:.4f}"
    print(f"\n{s.steps} steps x {cfg.train.batch_size}, {wall:.1f} s, final loss {loss}")
    for part in parts:
        knn, linear = row[f"{part}_knn_top1"], row[f"{part}_linear_top1"]
        print(f"  {part:8s} encoder: kNN top-1 {knn:6.2f}   linear top-1 {linear:6.2f}")
    payload = {"benchmark": "probe_ijepa", "hardware": info, "settings": settings}
    common.write_json(args.json, {**payload, "results": row})
    return 0


if __name__ == "__main__":
    common.run_main(main)
