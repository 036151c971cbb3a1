"""Throughput of full I-JEPA training steps on CIFAR-10: selfsup vs lightly 1.6's example.

A full step: a random resized crop of each image, the multi-block masks (paper settings:
4 targets, scale (0.15, 0.2), aspect (0.75, 1.5), context (0.85, 1.0), min 10 context
patches), the EMA target encoder on the full image (no grad), the context encoder on the
context patches and the predictor at every target patch (forward and backward), AdamW, the
EMA update. The unit is images/s. Both sides: ViT-tiny (width 192, depth 12, 3 heads) and a
predictor of width 96, depth 6, 3 heads.

The grid is 14x14 (CIFAR-10 cropped to 56 px, patch 4), not the 8x8 of 32 px images: on
8x8 lightly's ``IJEPAMaskCollator`` never returns (docs/masks.md). 56 px with patch 4 is
the cheapest 14x14 setting (112 px with patch 8 has the same tokens, 4x the pixels to crop).

Runs, one after the other in one process (``--rounds N``: the sequence N times, every other
round in reverse order, with each round's ratios and their median; ``common.measure_rounds``):

* **model only** (selfsup, bf16): target encoder, context encoder + predictor forward and
  backward, AdamW, EMA, on one pre-made view and one mask batch (``truncate``). The ceiling.
* **selfsup truncate / pad**: the real engine, ``selfsup.build.ijepa_trainer`` from
  ``configs/ijepa_cifar10_vit_tiny.yaml`` at 56 px (bf16 autocast, the recipe), over the
  in-memory uint8 CIFAR-10 tensor, in both batching modes; each windows of one ``fit()``
  clocked by ``common.StepClock``. ``truncate`` cuts every mask to the batch minimum,
  ``pad`` pads to the maximum: they process different token counts (printed).
* **lightly model only** (bf16): lightly's network on one pre-made batch (its masks).
* **lightly example (fp32)**: ``examples/pytorch/ijepa.py``
  (``lightly_examples.LightlyExampleIJEPA``): ImageFolder over the JPEG files,
  ``IJEPATransform(56, min_scale=0.3)``, ``IJEPAMaskCollator`` with the same settings as the
  loader's ``collate_fn`` (2 persistent workers), ``SmoothL1Loss``, ``AdamW(lr=1.5e-4)``,
  the example's EMA loop; fp32.
* **lightly example (bf16)**: the same under bf16 autocast (selfsup's precision), so the
  ratio separates the gain of precision from the rest.

Usage (from the repository root)::

    python benchmarks/throughput_ijepa.py --json bench_ijepa.json    # the measurement
    python benchmarks/throughput_ijepa.py --rounds 3 --json r3.json   # a drifting machine
    python benchmarks/throughput_ijepa.py --quick                     # a smoke test
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402 - the benchmarks' shared module, beside this script
import lightly_examples  # noqa: E402 - lightly's reference pipelines, beside this script

from selfsup.build import load_split  # noqa: E402
from selfsup.build.common import make_optimizer  # noqa: E402
from selfsup.build.ijepa import build_ijepa, ijepa_trainer  # noqa: E402
from selfsup.config import apply_overrides, load_config  # noqa: E402
from selfsup.engine.runtime import resolve_precision, select_device  # noqa: E402
from selfsup.losses.ijepa import ijepa_loss  # noqa: E402
from selfsup.methods.ijepa import IJEPA, ema_update_, gather_targets  # noqa: E402
from selfsup.recipes import IJEPAConfig  # noqa: E402

RECIPE = "configs/ijepa_cifar10_vit_tiny.yaml"
RUNS = ("model", "truncate", "pad", "lightly-model", "lightly", "lightly-bf16")
NAMES = {
    "model": "model only, selfsup (bf16)",
    "truncate": "selfsup Trainer, truncate (bf16)",
    "pad": "selfsup Trainer, pad (bf16)",
    "lightly-model": "model only, lightly (bf16)",
    "lightly": "lightly example (fp32)",
    "lightly-bf16": "lightly example (bf16)",
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("overrides", nargs="*", help="key=value overrides of selfsup's config")
    p.add_argument("--steps", type=int, help="steps per repeat (default: 5 CPU, 50 GPU)")
    p.add_argument("--repeats", type=int, help="timed windows (default: 3 CPU, 5 GPU)")
    p.add_argument("--warmup", type=int, help="untimed first steps (default: 2 CPU, 10 GPU)")
    common.add_rounds_option(p)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--size", type=int, default=56, help="crop size; 14x14 grid at 56 / patch 4")
    p.add_argument("--patch-size", type=int, default=4)
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, ...")
    p.add_argument("--workers", type=int, default=lightly_examples.LIGHTLY_WORKERS)
    p.add_argument("--threads", type=int, help="torch threads for every run (default: torch's)")
    p.add_argument("--lightly-threads", type=int, help="torch threads of lightly's runs only")
    p.add_argument(
        "--match-predictor-mlp",
        action="store_true",
        help="give lightly's predictor selfsup's MLP width (4 x 96) instead of its 192",
    )
    p.add_argument("--skip", action="append", default=[], choices=RUNS, help="leave a run out")
    p.add_argument("--quick", action="store_true", help="smoke test: 2 steps, 1 repeat, batch 16")
    p.add_argument("--json", help="also write the results to this JSON file")
    args = p.parse_args(argv)
    if args.quick:
        args.steps, args.repeats, args.warmup, args.batch_size = 2, 1, 1, 16
    return args


def selfsup_config(args: argparse.Namespace, device: torch.device, batching: str) -> IJEPAConfig:
    base = [
        f"augment.size={args.size}",
        f"model.patch_size={args.patch_size}",
        "augment.flip=true",  # lightly's IJEPATransform always flips
        f"masks.batching={batching}",
        # One mask draw per image, as lightly's collator: the same work per image on both sides
        # whatever the recipe's multi-mask setting.
        "masks.repeats=1",
        f"train.batch_size={args.batch_size}",
        f"train.device={device}",
        "train.progress=false",
        "train.knn_every_epochs=0",
    ]
    return load_config(IJEPAConfig, RECIPE, [*base, *args.overrides])


def time_selfsup(
    cfg: IJEPAConfig, images: torch.Tensor, marks: list[int], device: torch.device
) -> tuple[list[float], list[tuple[int, int]]]:
    """Clock reads of one real ``fit()`` and the mask widths of its steps."""
    recorded: list[common.RecordingCollator] = []

    def make(clock: common.StepClock, run_dir: str) -> Any:
        c = apply_overrides(
            cfg, [f"train.run_dir={run_dir}", f"train.checkpoint_every={marks[-1]}"]
        )
        trainer = ijepa_trainer(c, images, total_steps=marks[-1], callbacks=[clock])
        method = trainer.method
        assert isinstance(method, IJEPA)
        method.collator = common.RecordingCollator(method.collator)
        recorded.append(method.collator)
        return trainer

    times = common.time_fit(make, marks, device)
    return times, recorded[0].widths


def time_model_only(
    cfg: IJEPAConfig, images: torch.Tensor, marks: list[int], device: torch.device
) -> tuple[list[float], list[tuple[int, int]]]:
    """selfsup's network alone on one pre-made view and mask batch (what a step computes)."""
    torch.manual_seed(cfg.train.seed)
    method = build_ijepa(cfg, marks[-1]).to(device).train()
    o, b = cfg.optim, cfg.train.batch_size
    opt = make_optimizer([method.online], name="adamw", lr=o.lr, weight_decay=o.weight_decay)
    x = method.augment(images[:b].to(device))
    masks = method.collator(b).to(device)
    bf16 = resolve_precision(cfg.train.precision, device) == "bf16"  # "auto": as the Trainer
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16)

    def step() -> None:
        with autocast:
            with torch.no_grad():
                tokens = method.target_encoder(x)
                tokens = F.layer_norm(tokens.float(), tokens.shape[-1:])
                targets = gather_targets(tokens, masks.target_idx)
            loss = ijepa_loss(method.online(x, masks), targets, cfg.loss.kind, masks.target_valid)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        ema_update_(method.target_encoder, method.online.encoder, o.ema_start)

    widths = (masks.context_idx.shape[1], masks.target_idx.shape[2])
    return common.timed_loop(marks, device, step), [widths]


def lightly_model(
    args: argparse.Namespace, device: torch.device
) -> lightly_examples.LightlyExampleIJEPA:
    return lightly_examples.LightlyExampleIJEPA(
        args.size, args.patch_size, 192, 12, 3, 96, 6, match_mlp=args.match_predictor_mlp
    ).to(device)


def time_lightly(
    args: argparse.Namespace, marks: list[int], device: torch.device, bf16: bool, fixed: bool
) -> tuple[list[float], list[tuple[int, int]]]:
    """lightly's example loop over its DataLoader (workers started before the clock), or
    with ``fixed`` its network alone on the loader's first batch."""
    torch.manual_seed(0)
    loader = lightly_examples.lightly_ijepa_loader(
        args.batch_size, args.size, args.patch_size, args.workers
    )
    model = lightly_model(args, device).train()
    train = lightly_examples.lightly_ijepa_trainer(model, device, marks[-1], bf16=bf16)
    batches = common.endless(loader)
    widths: list[tuple[int, int]] = []

    def step(batch: Any) -> None:
        widths.append((batch[1][0].shape[1], batch[2][0].shape[1]))
        train(batch)

    try:
        first = next(batches)
        get: Callable[[], Any] = (lambda: first) if fixed else (lambda: next(batches))
        return common.timed_loop(marks, device, lambda: step(get())), widths
    finally:
        batches.close()
        del loader


def measure(
    args: argparse.Namespace,
    marks: list[int],
    device: torch.device,
    widths: dict[str, list[tuple[int, int]]],
    *,
    reverse: bool = False,
) -> dict[str, list[float]]:
    """Images/s of each timed window, per run (``reverse``: the runs in the opposite order,
    as every other round of ``--rounds`` takes them); each step's mask widths (context K,
    target T) are appended to ``widths[name]``."""
    steps, b = marks[1] - marks[0], args.batch_size
    rates: dict[str, list[float]] = {}
    todo = [r for r in RUNS if r not in args.skip]
    images = load_split(selfsup_config(args, device, "truncate").data, "train", labelled=False)
    for run in reversed(todo) if reverse else todo:
        print(f"running: {NAMES[run]} ...", flush=True)
        if run in ("model", "truncate", "pad"):
            cfg = selfsup_config(args, device, "truncate" if run == "model" else run)
            timer = time_model_only if run == "model" else time_selfsup
            times, run_widths = timer(cfg, images.images, marks, device)
        else:
            with common.torch_threads(args.lightly_threads):
                bf16, fixed = run != "lightly", run == "lightly-model"
                times, run_widths = time_lightly(args, marks, device, bf16, fixed)
        rates[NAMES[run]] = common.window_rates(times, steps, b)
        widths.setdefault(NAMES[run], []).extend(run_widths)
    return {NAMES[run]: rates[NAMES[run]] for run in todo}


def report(runs: dict[str, Any], per_round: list[dict[str, float]]) -> dict[str, Any]:
    """Print the table and the ratios (with several rounds also each round's and their
    median); returns the summary numbers."""
    print(f"\n{'run':34s} {'median img/s':>12s} {'ctx tok':>8s} {'tgt tok':>8s}   per-repeat")
    med = {name: common.median(r["images_per_s"]) for name, r in runs.items()}
    for name, r in runs.items():
        per = ", ".join(f"{x:.1f}" for x in r["images_per_s"])
        ctx, tgt = r["context_tokens"], r["target_tokens_per_block"]
        print(f"{name:34s} {med[name]:12.1f} {ctx:8.1f} {tgt:8.1f}   [{per}]")
    summary: dict[str, Any] = {}
    for ours in ("truncate", "pad"):
        for other in ("lightly", "lightly-bf16"):
            if NAMES[ours] in med and NAMES[other] in med:
                ratio = med[NAMES[ours]] / med[NAMES[other]]
                summary[f"ratio_{ours}_over_{other}"] = ratio
                verdict = "meets" if ratio >= 1.5 else "MISSES"
                print(f"ratio {NAMES[ours]} / {NAMES[other]}: {ratio:.2f}x ({verdict} >= 1.5x)")
                key = f"ratio_{ours}_over_{other}"
                summary |= common.round_ratios(per_round, NAMES[ours], NAMES[other], key)
    if NAMES["model"] in med and NAMES["lightly-model"] in med:
        summary["ratio_model_only"] = med[NAMES["model"]] / med[NAMES["lightly-model"]]
        print(f"ratio model only selfsup / lightly (both bf16): {summary['ratio_model_only']:.2f}x")
    if NAMES["model"] in med and NAMES["truncate"] in med:
        summary["pipeline_overhead"] = 1.0 - med[NAMES["truncate"]] / med[NAMES["model"]]
        print(
            "selfsup pipeline overhead, 1 - truncate / model only: "
            f"{100 * summary['pipeline_overhead']:.1f} %"
        )
    return summary


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = select_device(args.device)
    windows = common.timing_windows(args, device)
    marks = windows.marks
    cfg = selfsup_config(args, device, "truncate")
    ours = build_ijepa(cfg, 1)
    theirs = lightly_model(args, torch.device("cpu"))
    info = common.hardware(device)
    settings = {
        "batch_size": args.batch_size,
        "image_size": args.size,
        "patch_size": args.patch_size,
        "grid": f"{args.size // args.patch_size}x{args.size // args.patch_size}",
        "masks": lightly_examples.IJEPA_MASKS,
        **windows.settings(),
        "rounds": args.rounds,
        "lightly_workers": args.workers,
        "lightly_torch_threads": args.lightly_threads or torch.get_num_threads(),
        "params_selfsup_encoder": common.count_parameters(ours.online.encoder),
        "params_selfsup_predictor": common.count_parameters(ours.online.predictor),
        # torchvision's ViT carries a classifier lightly never calls; the predictor's base
        # class an unused learned position table.
        "params_lightly_encoder": common.count_parameters(theirs.encoder, ["heads"]),
        "params_lightly_predictor": common.count_parameters(theirs.predictor, ["pos_embedding"]),
        "lightly_predictor_mlp": 4 * 96 if args.match_predictor_mlp else 192,
        "overrides": args.overrides,
    }
    del ours, theirs
    title = f"I-JEPA training throughput, CIFAR-10 at {args.size} px, ViT-tiny"
    common.print_header(title, info, settings)
    widths: dict[str, list[tuple[int, int]]] = {}
    rates, per_round = common.measure_rounds(
        lambda reverse: measure(args, marks, device, widths, reverse=reverse), args.rounds
    )
    runs = {
        name: {
            "images_per_s": r,
            "context_tokens": sum(w[0] for w in widths[name]) / len(widths[name]),
            "target_tokens_per_block": sum(w[1] for w in widths[name]) / len(widths[name]),
        }
        for name, r in rates.items()
    }
    summary = report(runs, per_round)
    medians = {name: common.median(r) for name, r in rates.items()}
    payload = {"benchmark": "throughput_ijepa", "hardware": info, "settings": settings}
    common.write_json(
        args.json, {**payload, "runs": runs, "median_images_per_second": medians, **summary}
    )
    return 0


if __name__ == "__main__":
    common.run_main(main)
