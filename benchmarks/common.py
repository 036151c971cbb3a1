"""Shared pieces of the benchmarks: the machine's description, printing and JSON output,
timing helpers, thread control and the I-JEPA collator that records mask widths.

lightly's reference pipelines live in ``lightly_examples.py``. Run the scripts from the
repository root (``python benchmarks/<script>.py``); they import this module from their own
folder.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import statistics
import sys
import time
from collections.abc import Callable, Generator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from selfsup.config import ConfigError
from selfsup.masks import MaskBatch, MaskCollator
from selfsup.study import machine
from selfsup.study.timing import StepClock, synchronize, time_fit  # noqa: F401 (used by scripts)

#: A 1-minute load average above this before a run means the machine is not idle.
BUSY_LOAD = 0.5


class RecordingCollator(MaskCollator):
    """selfsup's I-JEPA collator, recording each batch's processed widths (context K,
    target T): under ``truncate`` they change from batch to batch."""

    def __init__(self, base: MaskCollator) -> None:
        super().__init__(base.sampler, base.batching)
        self.widths: list[tuple[int, int]] = []

    def __call__(self, batch_size: int, generator: torch.Generator | None = None) -> MaskBatch:
        masks = super().__call__(batch_size, generator)
        self.widths.append((masks.context_idx.shape[1], masks.target_idx.shape[2]))
        return masks


# --------------------------------------------------------------------------- machine
def hardware(device: torch.device) -> dict[str, Any]:
    """What the numbers were measured on (``selfsup.study.machine.hardware``) and lightly's
    version ("not installed" where it is missing: a lent GPU machine has no registry, and
    ``--skip lightly`` runs ours alone)."""
    try:
        lightly = importlib.metadata.version("lightly")
    except importlib.metadata.PackageNotFoundError:
        lightly = "not installed"
    return {**machine.hardware(device), "lightly": lightly}


def print_header(title: str, info: dict[str, Any], settings: dict[str, Any]) -> None:
    """Print the hardware and the settings, one ``key: value`` per line."""
    print(f"== {title}")
    for key, value in {**info, **settings}.items():
        print(f"  {key}: {value}")
    load = info["load_average_1_5_15min"][0]
    if load > BUSY_LOAD:
        # Measured here: with both cores taken by other processes, a CPU step with torch's
        # 2 intra-op threads ran 5-10x slower than on 1 thread (threads wait on each other).
        print(
            f"WARNING: 1-minute load average {load} before the run: other processes share "
            "the CPU, so CPU timings (and what fits in a time budget) are unreliable."
        )
    sys.stdout.flush()


def write_json(path: str | None, payload: dict[str, Any]) -> None:
    """Write ``payload`` to ``path`` (indented JSON) when a path is given."""
    if path:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(json.dumps(payload, indent=2) + "\n")
        print(f"wrote {path}")


# --------------------------------------------------------------------------- timing
def add_eval_options(p: argparse.ArgumentParser, linear_epochs: int) -> None:
    """The options shared by the accuracy benchmarks: device, threads, evaluation subsets,
    kNN settings, linear probe epochs (None until :func:`fill_defaults`)."""
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, ...")
    p.add_argument("--threads", type=int, help="torch threads for everything (default: torch's)")
    p.add_argument("--knn-train", type=int, help="evaluate on a random subset of train")
    p.add_argument("--knn-test", type=int, help="evaluate on a random subset of test")
    p.add_argument("--k", type=int, default=200)
    p.add_argument("--temperature", type=float, default=0.1)
    p.add_argument(
        "--linear-epochs", type=int, help=f"linear probe epochs (default {linear_epochs})"
    )
    p.add_argument("--eval-batch-size", type=int, default=512)


def fill_defaults(
    args: argparse.Namespace,
    defaults: dict[str, Any],
    quick_defaults: dict[str, Any],
    quick_overrides: Sequence[str],
) -> None:
    """Options left unset take ``--quick``'s values or the defaults; ``args.quick_overrides``
    is the config overrides of quick mode ([] otherwise)."""
    args.quick_overrides = list(quick_overrides) if args.quick else []
    for name, value in (quick_defaults if args.quick else defaults).items():
        if getattr(args, name) is None:
            setattr(args, name, value)


def fixed_length_keys(device: torch.device, threads: int | None) -> list[str]:
    """Config overrides of a benchmark that sets the run's length itself, in steps: no
    progress bar, no kNN monitor eating the run's time, and no ``train.budget`` (a budgeted
    recipe would otherwise re-fit the length to the clock and ignore the steps asked for)."""
    keys = ["train.progress=false", f"train.device={device}", "train.knn_every_epochs=0"]
    keys += ["train.budget=none"]
    return keys + ([f"train.num_threads={threads}"] if threads is not None else [])


def add_rounds_option(p: argparse.ArgumentParser) -> None:
    """``--rounds N`` (default 1) of the throughput benchmarks (:func:`measure_rounds`)."""

    def at_least_one(text: str) -> int:
        if int(text) < 1:
            raise argparse.ArgumentTypeError(f"--rounds {text}: run at least one round")
        return int(text)

    p.add_argument(
        "--rounds",
        type=at_least_one,
        default=1,
        help="run everything this many times, every other round in reverse order, and also "
        "report each round's ratio (for a machine whose speed drifts; default 1)",
    )


def round_ratios(
    per_round: Sequence[dict[str, float]], ours: str, other: str, key: str
) -> dict[str, Any]:
    """With several rounds: each round's ``ours / other`` (runs adjacent in time) and their
    median, printed and returned as ``{key}_per_round`` / ``{key}_round_median``."""
    if len(per_round) < 2:
        return {}
    ratios = [r[ours] / r[other] for r in per_round]
    each = ", ".join(f"{x:.2f}" for x in ratios)
    print(f"  per round [{each}], median {median(ratios):.2f}x")
    return {f"{key}_per_round": ratios, f"{key}_round_median": median(ratios)}


def median(values: Sequence[float]) -> float:
    """The median of the repeats (robust to one slow repeat on a shared machine)."""
    if not values:
        raise ValueError("median of no values: run at least one repeat.")
    return float(statistics.median(values))


def measure_rounds(
    measure_once: Callable[[bool], dict[str, list[float]]], rounds: int
) -> tuple[dict[str, list[float]], list[dict[str, float]]]:
    """``rounds`` calls of ``measure_once(reverse)``, every other one with ``reverse`` set
    (its runs in the opposite order): the windows of each run pooled over the rounds, and
    each round's median per run.

    On a machine whose speed drifts (another tenant's load), runs that follow one another
    minutes apart are compared at different speeds. Within one round they are adjacent, and
    alternating the order cancels a steady drift, so the median over rounds of each round's
    ratio is steadier than the ratio of pooled medians."""
    if rounds < 1:
        raise ValueError(f"rounds={rounds}: run at least one round.")
    pooled: dict[str, list[float]] = {}
    per_round: list[dict[str, float]] = []
    for r in range(rounds):
        if rounds > 1:
            print(f"round {r + 1} of {rounds}{' (reversed order)' if r % 2 else ''}", flush=True)
        rates = measure_once(r % 2 == 1)
        for name, values in rates.items():
            pooled.setdefault(name, []).extend(values)
        per_round.append({name: median(values) for name, values in rates.items()})
    return pooled, per_round


def window_marks(warmup: int, steps: int, repeats: int) -> list[int]:
    """Completed-step counts bounding the timed windows: warmup, warmup + steps, ..."""
    if warmup < 1 or steps < 1 or repeats < 1:
        raise ValueError(
            f"warmup, steps and repeats must be >= 1; got {warmup}, {steps}, {repeats} "
            "(one warm-up step at least: the first step pays one-time allocations)."
        )
    return [warmup + i * steps for i in range(repeats + 1)]


@dataclass(frozen=True)
class Windows:
    """The timed windows of a throughput benchmark: ``warmup`` untimed steps, then
    ``repeats`` windows of ``steps`` steps each (one median over the windows)."""

    steps: int
    repeats: int
    warmup: int

    @property
    def marks(self) -> list[int]:
        return window_marks(self.warmup, self.steps, self.repeats)

    def settings(self) -> dict[str, int]:
        return {
            "steps_per_repeat": self.steps,
            "repeats": self.repeats,
            "warmup_steps": self.warmup,
        }


def timing_windows(args: Any, device: torch.device) -> Windows:
    """``--steps``/``--repeats``/``--warmup``, or the defaults for the device: short windows
    on a CPU (a step takes seconds), longer ones on a GPU (a step takes milliseconds)."""
    gpu = device.type == "cuda"
    return Windows(
        steps=args.steps or (50 if gpu else 5),
        repeats=args.repeats or (5 if gpu else 3),
        warmup=args.warmup or (10 if gpu else 2),
    )


def window_rates(times: Sequence[float], steps: int, batch: int) -> list[float]:
    """Pairs per second of each window between consecutive clock reads."""
    return [steps * batch / (b - a) for a, b in zip(times[:-1], times[1:], strict=True)]


@contextmanager
def torch_threads(n: int | None) -> Generator[None, None, None]:
    """Run a block with ``n`` torch intra-op threads (``None``: leave as is), then restore."""
    before = torch.get_num_threads()
    if n is not None:
        if n < 1:
            raise ValueError(f"thread count must be >= 1; got {n}.")
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def endless(loader: torch.utils.data.DataLoader[Any]) -> Generator[Any, None, None]:
    """Batches over epochs (a new shuffled epoch when one ends, as the example's loop)."""
    while True:
        yield from loader


def run_main(main: Callable[[], int]) -> None:
    """Run a benchmark's ``main``; bad input (a config or a missing file) exits with its message."""
    try:
        raise SystemExit(main())
    except (ConfigError, FileNotFoundError) as e:
        sys.exit(f"error: {e}")


def count_parameters(module: nn.Module, exclude: Sequence[str] = ()) -> int:
    """Trainable parameters of ``module`` whose names start with none of ``exclude``."""
    return sum(
        p.numel()
        for name, p in module.named_parameters()
        if p.requires_grad and not any(name.startswith(e) for e in exclude)
    )


def timed_loop(marks: Sequence[int], device: torch.device, step: Callable[[], Any]) -> list[float]:
    """Run ``step`` ``marks[-1]`` times; clock reads after ``marks`` completed steps."""
    times: list[float] = []
    for done in range(1, marks[-1] + 1):
        step()
        if done in marks:
            synchronize(device)
            times.append(time.perf_counter())
    return times


def flops_by_module(counter: Any) -> dict[str, int]:
    """Total FLOPs per module name of a finished ``FlopCounterMode`` ("Global": all)."""
    return {name: int(sum(ops.values())) for name, ops in counter.get_flop_counts().items()}
