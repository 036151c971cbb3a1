"""The cost of one I-JEPA step against one SimCLR step with the same ViT encoder and batch.

The paper's efficiency claim (Assran et al. 2023, Sec. 1 and 7, Fig. 1): I-JEPA runs the
encoder with gradients on one partial view (the context patches only) plus one no-grad
pass of the target encoder over the full image and a narrow predictor, while SimCLR runs it
with gradients on two full views. Both sides here: selfsup's ViT-tiny (width 192, depth 12,
3 heads) on CIFAR-10 at 32 px, patch 4 (an 8x8 grid), the same batch, bf16 autocast, AdamW,
through the real trainers (``selfsup.build.simclr_trainer`` with ``model.encoder=vit_tiny``,
its patch tokens mean-pooled by ``TokenPooling``; ``selfsup.build.ijepa_trainer`` with
``configs/ijepa_cifar10_vit_tiny.yaml``, predictor width 96, depth 6), I-JEPA in both
batching modes (``truncate`` processes the batch's shortest context, ``pad`` its longest).

Printed per run:

* images/s of full training steps: median over timed windows of one ``Trainer.fit()``
  (clock reads by ``common.StepClock`` after a warm-up);
* FLOPs per image of one training step, forward + backward, counted by
  ``torch.utils.flop_counter.FlopCounterMode`` (matrix products, convolutions and
  attention; element-wise work is not counted) over ``--flop-steps`` steps of a freshly
  built method on real batches, in fp32 with SDPA's math backend so that attention is seen
  as matrix products on every device; broken down by module: SimCLR's encoder (both views)
  and head, I-JEPA's target encoder, context encoder and predictor ("other": everything
  outside them, e.g. the collapse monitor's covariance);
* the tokens each step processes, and the ratios I-JEPA / SimCLR.

Usage (from the repository root)::

    python benchmarks/cost_ijepa_vs_simclr.py --json bench_cost.json   # the measurement
    python benchmarks/cost_ijepa_vs_simclr.py --quick                    # a smoke test
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, TypeAlias

import torch
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402 - the benchmarks' shared module, beside this script

from selfsup.build import build_simclr, load_split, simclr_trainer  # noqa: E402
from selfsup.build.ijepa import build_ijepa, ijepa_trainer  # noqa: E402
from selfsup.config import apply_overrides, load_config  # noqa: E402
from selfsup.engine.runtime import select_device  # noqa: E402
from selfsup.methods.ijepa import IJEPA  # noqa: E402
from selfsup.methods.simclr import SimCLR  # noqa: E402
from selfsup.recipes import IJEPAConfig, SimCLRConfig  # noqa: E402

IJEPA_RECIPE = "configs/ijepa_cifar10_vit_tiny.yaml"
RUNS = ("simclr", "truncate", "pad")
NAMES = {"simclr": "SimCLR", "truncate": "I-JEPA truncate", "pad": "I-JEPA pad"}
Config: TypeAlias = SimCLRConfig | IJEPAConfig


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, help="steps per repeat (default: 5 CPU, 50 GPU)")
    p.add_argument("--repeats", type=int, help="timed windows (default: 3 CPU, 5 GPU)")
    p.add_argument("--warmup", type=int, help="untimed first steps (default: 2 CPU, 10 GPU)")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--flop-steps", type=int, default=3, help="steps averaged for FLOPs")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, ...")
    p.add_argument("--threads", type=int, help="torch threads (default: torch's)")
    p.add_argument("--skip", action="append", default=[], choices=RUNS, help="leave a run out")
    p.add_argument("--no-timing", action="store_true", help="count FLOPs only")
    p.add_argument("--quick", action="store_true", help="smoke test: 2 steps, 1 repeat, batch 16")
    p.add_argument("--json", help="also write the results to this JSON file")
    args = p.parse_args(argv)
    if args.quick:
        args.steps, args.repeats, args.warmup, args.batch_size = 2, 1, 1, 16
        args.flop_steps = 1
    if args.flop_steps < 1:
        p.error("--flop-steps must be >= 1")
    return args


def config(run: str, args: argparse.Namespace, device: torch.device) -> Config:
    common_keys = [
        "data.dataset=cifar10",
        "augment.size=32",
        "model.patch_size=4",
        "train.precision=bf16",
        f"train.batch_size={args.batch_size}",
        f"train.device={device}",
        "train.progress=false",
        "train.knn_every_epochs=0",
    ]
    if run == "simclr":
        # AdamW as I-JEPA's (the usual ViT optimiser); a sane lr so that no step diverges.
        simclr = ["model.encoder=vit_tiny", "optim.name=adamw", "optim.lr=1e-3"]
        keys = [*simclr, "optim.lr_scaling=none", "optim.weight_decay=0.05"]
        return load_config(SimCLRConfig, None, [*keys, *common_keys])
    # One mask draw per image (the paper's step), whatever the recipe's multi-mask setting.
    ijepa_keys = [f"masks.batching={run}", "masks.repeats=1"]
    return load_config(IJEPAConfig, IJEPA_RECIPE, [*ijepa_keys, *common_keys])


def time_run(
    cfg: Config, images: torch.Tensor, marks: list[int], device: torch.device
) -> list[float]:
    """Clock reads at ``marks`` completed steps of one real ``fit()``."""

    def make(clock: common.StepClock, run_dir: str) -> Any:
        c = apply_overrides(
            cfg, [f"train.run_dir={run_dir}", f"train.checkpoint_every={marks[-1]}"]
        )
        if isinstance(c, SimCLRConfig):
            return simclr_trainer(c, images, total_steps=marks[-1], callbacks=[clock])
        return ijepa_trainer(c, images, total_steps=marks[-1], callbacks=[clock])

    return common.time_fit(make, marks, device)


def build(cfg: Config, total_steps: int) -> tuple[SimCLR | IJEPA, dict[str, str], dict[str, float]]:
    """The method, its parts (label -> FlopCounterMode module name) and fixed token counts."""
    if isinstance(cfg, SimCLRConfig):
        simclr = build_simclr(cfg)
        net = type(simclr.net).__name__
        grid = cfg.augment.size // cfg.model.patch_size
        parts = {"encoder (2 views)": f"{net}.encoder", "head": f"{net}.head"}
        return simclr, parts, {"encoder_tokens": 2.0 * grid * grid}
    ijepa = build_ijepa(cfg, total_steps)
    online = type(ijepa.online).__name__
    parts = {
        "target encoder": type(ijepa.target_encoder).__name__,  # called on its own
        "context encoder": f"{online}.encoder",
        "predictor": f"{online}.predictor",
    }
    patches = ijepa.target_encoder.num_patches  # the ViT's, typed Module | Tensor on nn.Module
    assert isinstance(patches, int)
    return ijepa, parts, {"target_tokens": float(patches)}


def count_flops(
    cfg: Config, images: torch.Tensor, steps: int, device: torch.device
) -> tuple[dict[str, float], dict[str, float]]:
    """FLOPs per image (forward + backward) by part, and tokens per image; mean of ``steps``
    training steps on consecutive real batches."""
    torch.manual_seed(cfg.train.seed)
    b = cfg.train.batch_size
    method, parts, tokens = build(cfg, steps)
    method.to(device).train()
    totals: dict[str, float] = dict.fromkeys([*parts, "other", "total"], 0.0)
    widths: list[tuple[float, float]] = []
    for i in range(steps):
        batch = images[i * b : (i + 1) * b].to(device)
        with sdpa_kernel([SDPBackend.MATH]), FlopCounterMode(display=False) as fc:
            result = method.training_step(batch, i)
            result.loss.backward()
        method.zero_grad(set_to_none=True)
        flops = common.flops_by_module(fc)
        for part, key in parts.items():
            totals[part] += flops.get(key, 0) / (steps * b)
        totals["total"] += flops["Global"] / (steps * b)
        if isinstance(method, IJEPA):  # the processed (truncated or padded) widths
            widths.append(
                (float(result.logs["context_patches"]), float(result.logs["target_patches"]))
            )
    totals["other"] = totals["total"] - sum(totals[p] for p in parts)
    if isinstance(cfg, IJEPAConfig):
        ctx = sum(w[0] for w in widths) / steps
        tgt = sum(w[1] for w in widths) / steps
        tokens |= {"context_tokens": ctx, "target_tokens_per_block": tgt}
        # The predictor sees each image's context once per target block, plus the block.
        tokens["predictor_tokens"] = cfg.masks.num_targets * (ctx + tgt)
    return totals, tokens


def measure(args: argparse.Namespace, marks: list[int], device: torch.device) -> dict[str, Any]:
    """Per run: images/s of each timed window, FLOPs per image by part, tokens per image."""
    steps, b = marks[1] - marks[0], args.batch_size
    images = load_split(config("truncate", args, device).data, "train", labelled=False).images
    runs: dict[str, Any] = {}
    for run in (r for r in RUNS if r not in args.skip):
        cfg = config(run, args, device)
        print(f"running: {NAMES[run]} ...", flush=True)
        flops, tokens = count_flops(cfg, images, args.flop_steps, device)
        runs[NAMES[run]] = {"flops_per_image": flops, "tokens_per_image": tokens}
        if not args.no_timing:
            rates = common.window_rates(time_run(cfg, images, marks, device), steps, b)
            runs[NAMES[run]]["images_per_s"] = rates
    return runs


def report(runs: dict[str, Any]) -> dict[str, float]:
    """Print the tables and the ratios I-JEPA / SimCLR; returns the summary numbers."""
    print(f"\n{'run':16s} {'median img/s':>12s} {'GFLOP/img':>10s}   per part (GFLOP/img)")
    medians: dict[str, float] = {}
    for name, r in runs.items():
        rates = r.get("images_per_s")
        medians[name] = common.median(rates) if rates else float("nan")
        f = r["flops_per_image"]
        parts = ", ".join(f"{k} {v / 1e9:.3f}" for k, v in f.items() if k != "total")
        print(f"{name:16s} {medians[name]:12.1f} {f['total'] / 1e9:10.3f}   {parts}")
    print("\ntokens per image:")
    for name, r in runs.items():
        print(
            f"  {name:16s} " + ", ".join(f"{k} {v:.1f}" for k, v in r["tokens_per_image"].items())
        )
    summary: dict[str, float] = {}
    base = NAMES["simclr"]
    for run in ("truncate", "pad"):
        name = NAMES[run]
        if base not in runs or name not in runs:
            continue
        flops = runs[base]["flops_per_image"]["total"] / runs[name]["flops_per_image"]["total"]
        speed = medians[name] / medians[base]
        summary[f"flops_ratio_simclr_over_{run}"] = flops
        summary[f"speed_ratio_{run}_over_simclr"] = speed
        print(f"{name}: {flops:.2f}x fewer FLOPs per image than SimCLR, {speed:.2f}x its images/s")
    return summary


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = select_device(args.device)
    windows = common.timing_windows(args, device)
    marks = windows.marks
    info = common.hardware(device)
    settings = {
        "batch_size": args.batch_size,
        "image_size": 32,
        "patch_size": 4,
        "encoder": "vit_tiny",
        "ijepa_recipe": IJEPA_RECIPE,
        "precision": "bf16 (timing); fp32, SDPA math backend (FLOP counting)",
        **windows.settings(),
        "flop_steps": args.flop_steps,
    }
    common.print_header("I-JEPA vs SimCLR step cost, CIFAR-10 32 px, ViT-tiny/4", info, settings)
    runs = measure(args, marks, device)
    summary = report(runs)
    payload = {"benchmark": "cost_ijepa_vs_simclr", "hardware": info, "settings": settings}
    common.write_json(args.json, {**payload, "runs": runs, **summary})
    return 0


if __name__ == "__main__":
    common.run_main(main)
