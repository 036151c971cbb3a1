"""Throughput of full SimCLR training steps on CIFAR-10: selfsup vs lightly 1.6's example.

A full step is what training costs per batch: reading and augmenting two views of each
image, the forward pass of ResNet-18 (CIFAR stem) and projection head over both views,
NT-Xent, the backward pass and the optimiser step. The unit is pairs/s: images per second,
each image contributing its two views.

Runs, one after the other in one process on the same machine:

* **model only** (selfsup's network, same precision and layout, no data): forward,
  NT-Xent, backward and SGD step on pre-made random views (2 x batch). The ceiling that
  a data pipeline can at best reach; ``overhead = 1 - selfsup / model only`` is what
  everything outside the network costs (batch indexing, augmentation, host-to-device
  copy, the engine's per-step loss check, schedules and logging). Target: < 10 %.
* **selfsup**: the real engine. ``selfsup.engine.Trainer`` is built as
  ``selfsup.build.pretrain_simclr`` builds it (``selfsup.build.simclr_trainer``) from a
  ``SimCLRConfig`` (ResNet-18, CIFAR stem, width 1, ``precision=auto``: bf16 autocast
  where the device has it natively, else fp32; channels-last, SGD),
  over the decoded uint8 CIFAR-10 tensor, and runs ``warmup + repeats x steps`` steps in
  one ``fit()``. A trainer callback (``common.StepClock``, called only at the window
  boundaries) synchronises the device and reads the clock after ``warmup``, ``warmup +
  steps``, ... completed steps, so each repeat is one window of ``steps`` consecutive
  engine steps, and nothing is added to the timed steps. The final checkpoint is written
  after the last clock read.
* **lightly**: lightly's example loop (``lightly_examples.lightly_*``): ImageFolder over the JPEG
  files, ``SimCLRTransform(input_size=32, gaussian_blur=0.0)``, DataLoader (batch 256,
  shuffle, drop_last, 2 persistent workers), one forward pass per view, NT-Xent, SGD
  lr 0.06, fp32; the same backbone as selfsup. Windows as above, over consecutive steps of
  one loader (epochs roll over as in the example, their restart cost included).
* **lightly bf16+cl** (``--lightly-bf16``): the same with bf16 autocast and channels-last,
  to separate the gain from precision from the gain from the pipeline.

Usage (from the repository root)::

    python benchmarks/throughput_simclr.py                    # the measurement
    python benchmarks/throughput_simclr.py --quick            # a smoke test (seconds)
    python benchmarks/throughput_simclr.py --lightly-bf16 --rounds 3  # a drifting machine
    python benchmarks/throughput_simclr.py --lightly-bf16 --json out.json train.precision=fp32

Positional ``key=value`` arguments override selfsup's config (e.g. ``train.precision=fp32``).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402 - the benchmarks' shared module, beside this script
import lightly_examples  # noqa: E402 - lightly's reference pipelines, beside this script

from selfsup.build import build_simclr, load_split, simclr_trainer  # noqa: E402
from selfsup.config import ConfigError, apply_overrides, load_config  # noqa: E402
from selfsup.engine.optim import build_optimizer, parameter_groups  # noqa: E402
from selfsup.engine.runtime import resolve_precision, select_device  # noqa: E402
from selfsup.engine.schedules import scale_learning_rate  # noqa: E402
from selfsup.losses import nt_xent  # noqa: E402
from selfsup.recipes import SimCLRConfig  # noqa: E402

RUNS = ("model", "selfsup", "lightly")
MODEL = "model only (selfsup net, no data)"
OURS = "selfsup Trainer"
LIGHTLY = "lightly example (fp32)"
LIGHTLY_BF16 = "lightly example (bf16+cl)"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("overrides", nargs="*", help="key=value overrides of selfsup's config")
    p.add_argument("--steps", type=int, help="steps per repeat (default: 5 CPU, 50 GPU)")
    p.add_argument("--repeats", type=int, help="timed windows (default: 3 CPU, 5 GPU)")
    p.add_argument("--warmup", type=int, help="untimed first steps (default: 2 CPU, 10 GPU)")
    common.add_rounds_option(p)
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, ...")
    p.add_argument(
        "--workers",
        type=int,
        default=lightly_examples.LIGHTLY_WORKERS,
        help="lightly's DataLoader workers (the example's setting here: 2)",
    )
    p.add_argument(
        "--lightly-bf16",
        action="store_true",
        help="also run lightly's pipeline with bf16 autocast and channels-last",
    )
    p.add_argument(
        "--skip", action="append", default=[], choices=RUNS, help="leave a run out (repeatable)"
    )
    p.add_argument(
        "--quick",
        action="store_true",
        help="smoke test: 2 steps, 1 repeat, 1 warm-up step, batch 32",
    )
    p.add_argument(
        "--lightly-threads",
        type=int,
        help="torch threads of lightly's main process (default: torch's, as the example)",
    )
    p.add_argument("--json", help="also write the results to this JSON file")
    args = p.parse_args(argv)
    if args.quick:
        args.steps, args.repeats, args.warmup, args.batch_size = 2, 1, 1, 32
    return args


def selfsup_config(args: argparse.Namespace, device: torch.device) -> SimCLRConfig:
    base = [
        "data.dataset=cifar10",
        "model.encoder=resnet18",
        "model.cifar_stem=true",
        "model.width=1",
        "augment.size=32",
        "train.precision=auto",  # bf16 where native (the Zen 4 CPU, GPUs), else fp32
        "train.channels_last=true",
        "optim.name=sgd",
        f"optim.lr={lightly_examples.LIGHTLY_LR}",
        f"train.batch_size={args.batch_size}",
        f"train.device={device}",
        "train.progress=false",
        "train.knn_every_epochs=0",
    ]
    return load_config(SimCLRConfig, None, [*base, *args.overrides])


def time_selfsup(
    cfg: SimCLRConfig, images: torch.Tensor, marks: list[int], device: torch.device
) -> list[float]:
    """Clock reads at ``marks`` completed steps of one real ``Trainer.fit()``."""
    clock = common.StepClock(marks, device)
    with tempfile.TemporaryDirectory(prefix="bench_simclr_") as run_dir:
        cfg = apply_overrides(
            cfg, [f"train.run_dir={run_dir}", f"train.checkpoint_every={marks[-1]}"]
        )
        trainer = simclr_trainer(cfg, images, total_steps=marks[-1], callbacks=[clock])
        trainer.fit()
    return [clock.times[m] for m in marks]


def time_model_only(cfg: SimCLRConfig, marks: list[int], device: torch.device) -> list[float]:
    """The network alone on pre-made views: forward, NT-Xent, backward, optimiser step."""
    torch.manual_seed(cfg.train.seed)
    net = build_simclr(cfg).net.to(device)
    if cfg.train.channels_last:
        net.to(memory_format=torch.channels_last)
    o, b, s = cfg.optim, cfg.train.batch_size, cfg.augment.size
    lr = scale_learning_rate(o.lr, b, o.lr_scaling)
    optimizer = build_optimizer(
        o.name,
        parameter_groups([net], o.weight_decay),
        lr=lr,
        weight_decay=o.weight_decay,
        momentum=o.momentum,
    )
    views = torch.rand(2 * b, 3, s, s, device=device)
    bf16 = resolve_precision(cfg.train.precision, device) == "bf16"  # as the Trainer
    net.train()
    return _timed_loop(
        marks,
        device,
        lambda: _model_step(net, optimizer, views, b, bf16, cfg.loss.temperature, device),
    )


def _model_step(
    net: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    views: torch.Tensor,
    b: int,
    bf16: bool,
    temperature: float,
    device: torch.device,
) -> None:
    optimizer.zero_grad(set_to_none=True)
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
        z = net(views)
        loss = nt_xent(z[:b], z[b:], temperature=temperature)
    loss.backward()
    optimizer.step()


def time_lightly(
    args: argparse.Namespace, marks: list[int], device: torch.device, bf16: bool
) -> list[float]:
    """lightly's example loop over its own DataLoader (workers started before the clock)."""
    torch.manual_seed(0)
    loader = lightly_examples.lightly_loader(args.batch_size, args.workers)
    model = lightly_examples.lightly_model(device, channels_last=bf16)
    model.train()
    step = lightly_examples.lightly_trainer(model, device, bf16=bf16)
    batches = common.endless(loader)
    try:
        return _timed_loop(marks, device, lambda: step(next(batches)))
    finally:
        batches.close()  # ends the epoch iterator; deleting the loader stops its workers
        del loader


def _timed_loop(marks: list[int], device: torch.device, step: Callable[[], Any]) -> list[float]:
    times: list[float] = []
    for done in range(1, marks[-1] + 1):
        step()
        if done in marks:
            common.synchronize(device)
            times.append(time.perf_counter())
    return times


def measure(
    args: argparse.Namespace,
    cfg: SimCLRConfig,
    marks: list[int],
    device: torch.device,
    *,
    reverse: bool = False,
) -> dict[str, list[float]]:
    """Pairs/s of each timed window, per run (runs one after the other; ``reverse``: in the
    opposite order, so that rounds alternating it cancel a steady drift of the machine)."""
    steps, b = marks[1] - marks[0], args.batch_size
    runs: list[tuple[str, Callable[[], list[float]]]] = []
    if "model" not in args.skip:
        runs.append((MODEL, lambda: time_model_only(cfg, marks, device)))
    if "selfsup" not in args.skip:

        def ours() -> list[float]:
            images = load_split(cfg.data, cfg.data.train_split, labelled=False).images
            return time_selfsup(cfg, images, marks, device)

        runs.append((OURS, ours))
    if "lightly" not in args.skip:
        for name, bf16 in ((LIGHTLY, False), (LIGHTLY_BF16, True))[: 1 + args.lightly_bf16]:

            def theirs(bf16: bool = bf16) -> list[float]:
                with common.torch_threads(args.lightly_threads):
                    return time_lightly(args, marks, device, bf16=bf16)

            runs.append((name, theirs))
    rates: dict[str, list[float]] = {}
    for name, run in reversed(runs) if reverse else runs:
        print(f"running: {name} ...", flush=True)
        rates[name] = common.window_rates(run(), steps, b)
    return {name: rates[name] for name, _ in runs}


def report(
    runs: dict[str, list[float]], per_round: list[dict[str, float]]
) -> tuple[dict[str, float], dict[str, Any]]:
    """Print the table, the ratios and the overhead; returns (medians, summary). With
    several rounds, also each round's ratio (runs adjacent in time) and their median."""
    medians = {name: common.median(rates) for name, rates in runs.items()}
    print(f"\n{'run':38s} {'median pairs/s':>15s}   per-repeat pairs/s")
    for name, rates in runs.items():
        per = ", ".join(f"{r:.1f}" for r in rates)
        print(f"{name:38s} {medians[name]:15.1f}   [{per}]")
    summary: dict[str, Any] = {}
    ours = medians.get(OURS)
    for key, other in (("lightly", LIGHTLY), ("lightly_bf16", LIGHTLY_BF16)):
        if ours is not None and other in medians:
            summary[f"ratio_selfsup_over_{key}"] = ours / medians[other]
            print(f"ratio selfsup / {other}: {ours / medians[other]:.2f}x")
            summary |= common.round_ratios(per_round, OURS, other, f"ratio_selfsup_over_{key}")
    if ours is not None and MODEL in medians:
        overhead = 1.0 - ours / medians[MODEL]
        summary["pipeline_overhead"] = overhead
        verdict = "meets" if overhead < 0.10 else "MISSES"
        print(
            f"selfsup pipeline overhead, 1 - selfsup/model-only: {100 * overhead:.1f} % "
            f"({verdict} the < 10 % target)"
        )
    return medians, summary


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    device = select_device(args.device)
    windows = common.timing_windows(args, device)
    marks = windows.marks
    cfg = selfsup_config(args, device)
    if cfg.train.batch_size != args.batch_size:
        raise ConfigError(
            f"train.batch_size={cfg.train.batch_size} differs from --batch-size "
            f"{args.batch_size}; set the batch with --batch-size only (both sides use it)."
        )
    info = common.hardware(device)
    settings = {
        "batch_size": args.batch_size,
        **windows.settings(),
        "rounds": args.rounds,
        "lightly_workers": args.workers,
        "lightly_torch_threads": args.lightly_threads or torch.get_num_threads(),
        "selfsup_precision": f"{cfg.train.precision} -> "
        f"{resolve_precision(cfg.train.precision, device)}",
        "selfsup_channels_last": cfg.train.channels_last,
        "selfsup_width": cfg.model.width,
        "selfsup_augment_size": cfg.augment.size,
        "overrides": args.overrides,
    }
    title = "SimCLR training throughput, CIFAR-10, ResNet-18 (CIFAR stem)"
    common.print_header(title, info, settings)
    runs, per_round = common.measure_rounds(
        lambda reverse: measure(args, cfg, marks, device, reverse=reverse), args.rounds
    )
    medians, summary = report(runs, per_round)
    common.write_json(
        args.json,
        {
            "benchmark": "throughput_simclr",
            "hardware": info,
            "settings": settings,
            "pairs_per_second": runs,
            "median_pairs_per_second": medians,
            **summary,
        },
    )
    return 0


if __name__ == "__main__":
    common.run_main(main)
