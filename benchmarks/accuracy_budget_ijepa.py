"""kNN and linear accuracy on CIFAR-10 of I-JEPA and SimCLR after the same wall-clock budget.

Each method gets ``--minutes`` (default 60) of pre-training, one after the other, with the
same ViT: I-JEPA (Assran et al. 2023) from ``configs/ijepa_cifar10_vit_tiny.yaml`` through
``selfsup.build.pretrain_ijepa``, SimCLR from ``configs/simclr_cifar10_vit_tiny.yaml`` (the
ViT pooled by ``TokenPooling``) through ``pretrain_simclr``, each into a temporary run folder.

Run length: a short real ``fit()`` of the method's own trainer (``--calibrate-warmup`` untimed
steps, then ``--calibrate-steps`` timed ones) gives its seconds per step, and the rest of that
call's wall time a fixed cost; the run gets ``(budget - fixed) / seconds per step`` steps via
``train.epochs``, with ``optim.warmup_epochs`` rescaled to keep the recipe's warm-up fraction
(EMA momentum and I-JEPA's weight decay follow the length by themselves). The run is timed
from the call to its return; one more than 2 % off the budget is flagged. The kNN monitor is
switched off (before the user's overrides) so that it does not eat the budget.

Evaluation, the same code for every row: ``selfsup.evaluation.evaluate`` on the frozen mean
patch tokens (I-JEPA: target encoder; SimCLR: encoder without head), kNN (k = 200, T = 0.1)
and the linear probe, CIFAR-10 train as bank and probe training set, test as queries; and a
randomly initialised ViT of the same shape as the baseline. Usage (repository root)::

    python benchmarks/accuracy_budget_ijepa.py --json ijepa_vs_simclr.json   # 60 min each
    python benchmarks/accuracy_budget_ijepa.py --quick                       # smoke test
    python benchmarks/accuracy_budget_ijepa.py masks.batching=pad --simclr-override optim.lr=1e-3

Positional ``key=value`` arguments override the I-JEPA recipe, ``--simclr-override`` the
SimCLR one (``train.epochs`` only sets the warm-up fraction: the budget sets the length).
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, TypeAlias

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402 - the benchmarks' shared module, beside this script

from selfsup.build import load_split, pretrain_simclr  # noqa: E402
from selfsup.build.common import test_resolution  # noqa: E402
from selfsup.build.ijepa import encoder_init as ijepa_init  # noqa: E402
from selfsup.build.ijepa import encoder_spec as ijepa_spec  # noqa: E402
from selfsup.build.ijepa import pretrain_ijepa  # noqa: E402
from selfsup.build.simclr import encoder_spec as simclr_spec  # noqa: E402
from selfsup.config import ConfigError, load_config  # noqa: E402
from selfsup.data import ImageData  # noqa: E402
from selfsup.engine.runtime import select_device  # noqa: E402
from selfsup.evaluation import encoder_from_checkpoint, evaluate  # noqa: E402
from selfsup.models import create_model  # noqa: E402
from selfsup.models.pooling import TokenPooling  # noqa: E402
from selfsup.recipes import IJEPAConfig, SimCLRConfig  # noqa: E402
from selfsup.study import timing  # noqa: E402
from selfsup.study.measure import subset  # noqa: E402

IJEPA_RECIPE = "configs/ijepa_cifar10_vit_tiny.yaml"
SIMCLR_RECIPE = "configs/simclr_cifar10_vit_tiny.yaml"
PARTS = ("ijepa", "simclr", "baseline")
NAMES = {"ijepa": "I-JEPA", "simclr": "SimCLR"}
# Quick mode: small batches so that calibration and a 12 s budget still take a few steps.
QUICK_OVERRIDES = ("train.batch_size=32",)
Config: TypeAlias = IJEPAConfig | SimCLRConfig
# fmt: off
DEFAULTS = {"minutes": 60.0, "calibrate_steps": 20, "calibrate_warmup": 5, "linear_epochs": 100}
QUICK_DEFAULTS = {"minutes": 0.2, "calibrate_steps": 3, "calibrate_warmup": 2, "linear_epochs": 10,
                  "knn_train": 500, "knn_test": 200}
# The table: header, row key, format.
COLUMNS = (("steps", "steps", "d"), ("epochs", "epochs", ".2f"),
           ("images/s", "images_per_s", ".1f"), ("wall s", "wall_s", ".1f"),
           ("kNN top-1", "knn_top1", ".2f"), ("top-5", "knn_top5", ".2f"),
           ("lin top-1", "linear_top1", ".2f"), ("top-5", "linear_top5", ".2f"))
# fmt: on


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("overrides", nargs="*", help="key=value overrides of the I-JEPA recipe")
    p.add_argument(
        "--simclr-override",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override of the SimCLR recipe (repeatable)",
    )
    p.add_argument("--ijepa-config", default=IJEPA_RECIPE, help=f"({IJEPA_RECIPE})")
    p.add_argument("--simclr-config", default=SIMCLR_RECIPE, help=f"({SIMCLR_RECIPE})")
    p.add_argument("--minutes", type=float, help="wall-clock budget per method (default 60)")
    p.add_argument("--calibrate-steps", type=int, help="timed calibration steps (default 20)")
    p.add_argument("--calibrate-warmup", type=int, help="untimed first steps (default 5)")
    common.add_eval_options(p, linear_epochs=100)
    p.add_argument("--skip", action="append", default=[], choices=PARTS)
    p.add_argument(
        "--quick",
        action="store_true",
        help="smoke test: 0.2 minutes, batch 32, calibration 2 + 3 steps, eval on "
        "500 train / 200 test images, 10 probe epochs (explicit options win)",
    )
    p.add_argument("--json", help="also write the results to this JSON file")
    args = p.parse_args(argv)
    common.fill_defaults(args, DEFAULTS, QUICK_DEFAULTS, QUICK_OVERRIDES)
    if not args.minutes > 0:
        p.error(f"--minutes must be > 0; got {args.minutes}")
    if args.calibrate_steps < 1 or args.calibrate_warmup < 1:
        p.error("--calibrate-steps and --calibrate-warmup must be >= 1")
    return args


def calibrate(
    cfg: Config, images: torch.Tensor, warmup: int, steps: int, device: torch.device
) -> dict[str, float]:
    """Seconds per step over one timed window of a short real ``fit()`` of the method's own
    trainer, and the call's fixed cost (``selfsup.study.timing.calibrate``)."""
    with common.torch_threads(cfg.train.num_threads):  # as pretrain_* will run
        cal = timing.calibrate(cfg, images, warmup=warmup, steps=steps, device=device)
    return {
        "calibration_steps": steps,
        "calibration_s_per_step": cal.seconds_per_step,
        "calibration_images_per_s": cal.images_per_s,
        "calibration_fixed_s": cal.fixed_s,
    }


def fit_budget(cfg: Config, n_images: int, budget_s: float, cal: dict[str, float]) -> Config:
    """``cfg`` with the run length that fills ``budget_s`` at the calibrated speed."""
    steps = max(
        1, math.floor((budget_s - cal["calibration_fixed_s"]) / cal["calibration_s_per_step"])
    )
    return timing.set_run_length(cfg, n_images, steps)


def pretrain_timed(cfg: Config) -> tuple[nn.Module, int | None, dict[str, Any]]:
    """``pretrain_ijepa`` / ``pretrain_simclr`` timed end to end; (encoder, size, stats)."""
    threads = torch.get_num_threads()
    start = time.perf_counter()
    outcome = pretrain_ijepa(cfg) if isinstance(cfg, IJEPAConfig) else pretrain_simclr(cfg)
    wall = time.perf_counter() - start
    torch.set_num_threads(threads)  # the recipe may set its own; restore for evaluation
    encoder, meta = encoder_from_checkpoint(outcome.checkpoint)
    s = outcome.summary
    stats = {
        "steps": s.steps,
        "batch_size": cfg.train.batch_size,
        "epochs": s.epochs,
        "images_per_s": s.steps * cfg.train.batch_size / wall,
        "wall_s": wall,
        "final_loss": s.final_loss,
        "train_loop_s": s.wall_time_s,
        "train_loop_images_per_s": s.images_per_second,
        "warmup_epochs": cfg.optim.warmup_epochs,
    }
    return encoder, meta.get("image_size"), stats


def score(
    args: argparse.Namespace,
    encoder: nn.Module,
    data: tuple[ImageData, ImageData],
    device: torch.device,
    image_size: int | None,
) -> dict[str, float]:
    """kNN and linear top-1/top-5 of a frozen encoder: the same code for every row."""
    start = time.perf_counter()
    r = evaluate(
        encoder.to(device),
        *data,
        image_size=image_size,
        k=args.k,
        temperature=args.temperature,
        linear_epochs=args.linear_epochs,
        batch_size=args.eval_batch_size,
        device=str(device),
    )
    keys = ("knn_top1", "knn_top5", "linear_top1", "linear_top5")
    return {**{key: r[key] for key in keys}, "eval_s": time.perf_counter() - start}


def print_table(rows: dict[str, dict[str, Any]], budget_s: float) -> None:
    def cell(row: dict[str, Any], key: str, fmt: str) -> str:
        return format(row[key], fmt) if row.get(key) is not None else "-"

    print("\n" + f"{'method':40s} " + " ".join(f"{h:>9s}" for h, _, _ in COLUMNS))
    for name, row in rows.items():
        print(f"{name:40s} " + " ".join(f"{cell(row, k, f):>9s}" for _, k, f in COLUMNS))
    for name, row in rows.items():
        if "wall_s" in row and abs(row["wall_s"] / budget_s - 1) > 0.02:
            off = 100 * (row["wall_s"] / budget_s - 1)
            print(f"WARNING: {name} took {row['wall_s']:.1f} s, {off:+.1f} % off the budget.")


def run(
    args: argparse.Namespace,
    cfgs: dict[str, Config],
    images: torch.Tensor,
    data: tuple[ImageData, ImageData],
    device: torch.device,
) -> dict[str, dict[str, Any]]:
    """Per method: calibrate, fit the run length to the budget, pre-train; then evaluate."""
    budget = 60.0 * args.minutes
    rows: dict[str, dict[str, Any]] = {}
    trained: dict[str, tuple[nn.Module, int | None]] = {}
    for key, cfg in cfgs.items():
        name = f"{NAMES[key]} {Path(getattr(args, f'{key}_config')).stem}"
        print(f"calibrating: {name} ...", flush=True)
        cal = calibrate(cfg, images, args.calibrate_warmup, args.calibrate_steps, device)
        cfg = fit_budget(cfg, len(images), budget, cal)
        steps = math.ceil(cfg.train.epochs * (len(images) // cfg.train.batch_size))
        print(
            f"  {cal['calibration_images_per_s']:.1f} images/s over {args.calibrate_steps} steps "
            f"(batch {cfg.train.batch_size}), fixed cost {cal['calibration_fixed_s']:.1f} s -> "
            f"run length set to {steps} steps ({cfg.train.epochs:.2f} epochs, warm-up "
            f"{cfg.optim.warmup_epochs:.2f}) to fill {budget:.0f} s",
            flush=True,
        )
        print(f"training: {name} ...", flush=True)
        encoder, size, rows[name] = pretrain_timed(cfg)
        rows[name].update(cal)
        trained[name] = (encoder, size)
    for name, (encoder, size) in trained.items():
        print(f"evaluating: {name} ...", flush=True)
        rows[name].update(score(args, encoder, data, device, size))
    if "baseline" not in args.skip:
        cfg = next(iter(cfgs.values()), None) or load_config(IJEPAConfig, args.ijepa_config)
        spec = ijepa_spec(cfg) if isinstance(cfg, IJEPAConfig) else simclr_spec(cfg)
        # The I-JEPA recipe's initialisation (model.patch_embed_std), where training starts.
        init = ijepa_init(cfg) if isinstance(cfg, IJEPAConfig) else {}
        name = f"random-init {spec['name']} (pooled tokens)"
        print(f"evaluating: {name} ...", flush=True)
        torch.manual_seed(0)
        net = create_model(spec["name"], **spec["kwargs"], **init)
        net = TokenPooling(net) if getattr(net, "token_output", False) else net
        # The trained rows' test side (their checkpoints' image_size), not the files' own.
        side = test_resolution(
            cfg.eval.image_size, cfg.augment.size, patch_size=cfg.model.patch_size
        )
        rows[name] = score(args, net, data, device, side)
    return rows


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    device = select_device(args.device)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory(prefix="bench_ijepa_budget_") as tmp:
        # This script fits both lengths itself: a recipe's own train.budget steps aside.
        base = [*common.fixed_length_keys(device, args.threads), *args.quick_overrides]
        cfgs: dict[str, Config] = {}
        if "ijepa" not in args.skip:
            keys = [*base, f"train.run_dir={tmp}/ijepa", *args.overrides]
            cfgs["ijepa"] = load_config(IJEPAConfig, args.ijepa_config, keys)
        if "simclr" not in args.skip:
            keys = [*base, f"train.run_dir={tmp}/simclr", *args.simclr_override]
            cfgs["simclr"] = load_config(SimCLRConfig, args.simclr_config, keys)
        datasets = {c.data.dataset for c in cfgs.values()}
        if len(datasets) > 1:
            raise ConfigError(
                f"The two recipes train on different data ({sorted(datasets)}); "
                "set data.dataset to the same value for both."
            )
        data_cfg = next(iter(cfgs.values()), None) or load_config(IJEPAConfig, args.ijepa_config)
        info = common.hardware(device)
        # Every option; "device" is the hardware's (the resolved one, not "auto").
        settings = {k: v for k, v in vars(args).items() if k not in ("json", "device")}
        common.print_header(
            f"I-JEPA vs SimCLR after {args.minutes:g} min of pre-training each, "
            f"{data_cfg.data.dataset}",
            info,
            settings,
        )
        d = data_cfg.data
        train = subset(load_split(d, d.train_split, labelled=True), args.knn_train, 0)
        test = subset(load_split(d, d.test_split, labelled=True), args.knn_test, 1)
        images = load_split(d, d.train_split, labelled=False).images  # fills the decode cache
        rows = run(args, cfgs, images, (train, test), device)
    print_table(rows, 60.0 * args.minutes)
    payload = {"benchmark": "accuracy_budget_ijepa", "hardware": info, "settings": settings}
    common.write_json(args.json, {**payload, "results": rows})
    return 0


if __name__ == "__main__":
    common.run_main(main)
