"""Where the time of a real training step goes: ``torch.profiler`` over ``Trainer.fit()``.

Written to find the engine's overhead on a GPU (``RESULTS.md``, "SimCLR and I-JEPA on one
GPU": our I-JEPA Trainer ran at 0.28x its own network's rate there, for reasons not
established). One process builds the method's real trainer (``selfsup.build``), runs
``--warmup`` untimed steps, then profiles ``--steps`` steps and prints:

* each step's host time (clock read at the step's end; with ``--sync`` after a device
  synchronisation, so it is the step's full time), and for I-JEPA the context and target
  widths of its masks, with steps whose widths are new to the run marked ``new``: shapes
  seen for the first time pay for autotuning and allocations that later ones do not;
* the operators that take the most host time and the most device time;
* the host's waits for the device: synchronisations and scalar reads, with counts.

``--trace FILE`` also writes a Chrome trace (open it in https://ui.perfetto.dev). Usage
(repository root)::

    python benchmarks/profile_step.py ijepa --device cuda --batch-size 256 \\
        augment.size=56 model.patch_size=4          # throughput_ijepa.py's setting
    python benchmarks/profile_step.py simclr --device cuda --batch-size 512
    python benchmarks/profile_step.py ijepa --quick                   # a smoke test
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
from torch.profiler import ProfilerActivity, profile, schedule

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402 - the benchmarks' shared module, beside this script

from selfsup.build import load_split  # noqa: E402
from selfsup.build.ijepa import ijepa_trainer  # noqa: E402
from selfsup.build.simclr import simclr_trainer  # noqa: E402
from selfsup.config import load_config  # noqa: E402
from selfsup.engine.protocol import Method  # noqa: E402
from selfsup.engine.runtime import select_device  # noqa: E402
from selfsup.engine.trainer import Trainer  # noqa: E402
from selfsup.methods.ijepa import IJEPA  # noqa: E402
from selfsup.recipes import IJEPAConfig, SimCLRConfig  # noqa: E402
from selfsup.study import machine  # noqa: E402

#: Per method: its config schema, default recipe and trainer factory.
METHODS: dict[str, tuple[type[SimCLRConfig] | type[IJEPAConfig], str, Callable[..., Trainer]]] = {
    "simclr": (SimCLRConfig, "configs/simclr_cifar10_gpu.yaml", simclr_trainer),
    "ijepa": (IJEPAConfig, "configs/ijepa_cifar10_vit_tiny.yaml", ijepa_trainer),
}
#: Profiler event names that can make the host wait for the device (a synchronisation, a
#: device scalar read, a copy from pageable memory, an allocation).
WAITS = (
    "cudaStreamSynchronize",
    "cudaDeviceSynchronize",
    "cudaEventSynchronize",
    "cudaMemcpy",
    "cudaMalloc",
    "aten::_local_scalar_dense",
    "aten::nonzero",
)


class ProfilerStep:
    """A trainer callback run after every step: advances the profiler, reads the clock."""

    every_steps = 1

    def __init__(self, prof: Any, device: torch.device, sync: bool) -> None:
        self.prof, self.device, self.sync = prof, device, sync
        self.times: list[float] = []  # the clock before the first step, then after each

    def __call__(self, step: int, method: Method) -> dict[str, float]:
        if self.sync:
            common.synchronize(self.device)
        self.times.append(time.perf_counter())
        self.prof.step()
        return {}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("method", choices=sorted(METHODS))
    p.add_argument("overrides", nargs="*", help="key=value overrides of the recipe")
    p.add_argument("--config", help="recipe (default: the method's GPU / CIFAR recipe)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, ...")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--warmup", type=int, default=20, help="untimed steps first")
    p.add_argument("--steps", type=int, default=10, help="profiled steps")
    p.add_argument("--sync", action="store_true", help="synchronise after every step")
    p.add_argument("--rows", type=int, default=15, help="operators per table")
    p.add_argument("--trace", help="write a Chrome trace of the profiled steps here")
    p.add_argument("--quick", action="store_true", help="smoke test: batch 16, 2 + 2 steps")
    args = p.parse_intermixed_args(argv)
    if args.quick:
        args.batch_size, args.warmup, args.steps = 16, 2, 2
    return args


def build(
    args: argparse.Namespace, device: torch.device, run_dir: str, cb: ProfilerStep
) -> Trainer:
    """The method's trainer for ``warmup + steps`` steps, ``cb`` among its callbacks."""
    keys = [
        f"train.batch_size={args.batch_size}",
        f"train.device={device}",
        f"train.run_dir={run_dir}",
        "train.progress=false",
        "train.knn_every_epochs=0",
        f"train.checkpoint_every={10**9}",
        *args.overrides,
    ]
    schema, recipe, make = METHODS[args.method]
    cfg: SimCLRConfig | IJEPAConfig = load_config(schema, args.config or recipe, keys)
    images = load_split(cfg.data, "train", labelled=False).images
    return make(cfg, images, total_steps=args.warmup + args.steps, callbacks=[cb])


def print_steps(
    args: argparse.Namespace, times: list[float], widths: list[tuple[int, int]]
) -> None:
    """One line per step: host ms, and I-JEPA's mask widths (``new`` on a first sighting)."""
    seen: set[tuple[int, int]] = set()
    print(f"\nper step ({'synchronised' if args.sync else 'host clock, not synchronised'}):")
    for i in range(1, len(times)):
        tag = " (profiled)" if i > args.warmup else ""
        line = f"  step {i:3d}{tag}: {1e3 * (times[i] - times[i - 1]):8.1f} ms"
        if i <= len(widths):
            w = widths[i - 1]
            line += f"   context {w[0]:3d}  target {w[1]:3d}{'  new' if w not in seen else ''}"
            seen.add(w)
        print(line)


def print_tables(prof: Any, device: torch.device, rows: int) -> None:
    """Top operators by host and by device time, then the host's waits."""
    averages = prof.key_averages()
    sorts = ["self_cpu_time_total"] + (["self_device_time_total"] if device.type == "cuda" else [])
    for key in sorts:
        print(f"\ntop {rows} by {key}:")
        print(averages.table(sort_by=key, row_limit=rows, max_name_column_width=60))
    print("host waits (count, host ms in the profiled steps):")
    for event in averages:
        if any(event.key.startswith(name) for name in WAITS):
            print(f"  {event.key:40s} {event.count:6d} {event.self_cpu_time_total / 1e3:10.2f}")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    device = select_device(args.device)
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    plan = schedule(wait=0, warmup=args.warmup, active=args.steps, repeat=1)
    with (
        tempfile.TemporaryDirectory(prefix="selfsup_profile_") as run_dir,
        profile(activities=activities, schedule=plan) as prof,
    ):
        cb = ProfilerStep(prof, device, args.sync)
        trainer = build(args, device, run_dir, cb)
        recorder = None
        if isinstance(trainer.method, IJEPA):
            recorder = trainer.method.collator = common.RecordingCollator(trainer.method.collator)
        cb.times.append(time.perf_counter())
        trainer.fit()
    print(f"== profile of {args.method}, batch {args.batch_size}, device {device}")
    for key, value in machine.hardware(device).items():
        print(f"  {key}: {value}")
    print_steps(args, cb.times, recorder.widths if recorder else [])
    print_tables(prof, device, args.rows)
    if args.trace:
        prof.export_chrome_trace(args.trace)
        print(f"trace: {args.trace}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
