"""``selfsup study``: SimCLR (ResNet and ViT-tiny) and I-JEPA (ViT-tiny) pre-trained for the
same wall-clock budget on the same data, measured by the same code, and a report.

selfsup study [--data cifar10] [--budget 60m] [--out runs/study] [--arms a,b] [key=value ...]
selfsup study --sweep encoder=resnet18,resnet34,resnet50 --budget 10m --out runs/sweep
selfsup study --quick --out /tmp/study        (a smoke test: under 10 minutes on 2 CPU cores)
"""

from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path
from typing import Any

from selfsup.config import ConfigError


def add_parsers(sub: Any) -> None:
    """Add the ``study`` sub-command to ``sub`` (argparse subparsers)."""
    from selfsup.study.arms import ARMS, KEY_ALIASES
    from selfsup.study.plan import MIN_BUDGET_S

    p = sub.add_parser(
        "study",
        help="SimCLR vs I-JEPA on the same data and budget, with a report",
        description="Pre-train every arm for the same wall-clock budget on the same data, "
        "evaluate each with the same code (kNN, linear, 1 % and 10 % labels, transformation, "
        "counting and depth probes, cost), and write report.md and report.html with the "
        "papers' claims beside our measurements. Running the same command again resumes.",
        epilog=f"arms: {', '.join(f'{a.name} ({a.title}, {a.recipe})' for a in ARMS.values())}."
        f"\nsweep key aliases: {', '.join(f'{k} = {v}' for k, v in KEY_ALIASES.items())}.",
    )
    p.add_argument("--data", default="cifar10", help="dataset name or folder (cifar10)")
    p.add_argument(
        "--budget",
        default="60m",
        help=f"pre-training wall time per run: 90s, 60m, 1.5h (60m; at least "
        f"{MIN_BUDGET_S / 60:.0f}m)",
    )
    p.add_argument("--out", default="runs/study", help="output folder (runs/study)")
    p.add_argument("--arms", help=f"comma-separated subset of: {', '.join(ARMS)}")
    p.add_argument(
        "--sweep",
        help="KEY=V1,V2,...: one run per value of a config key (e.g. encoder=resnet18,resnet50, "
        "batch_size=64,256, temperature=0.1,0.5, 'augment.ops=[crop],[color],[crop,color]')",
    )
    p.add_argument("--quick", action="store_true", help="smoke test: 15 s runs, small evals")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, mps")
    p.add_argument("--threads", type=int, help="torch CPU threads (default: torch's)")
    p.add_argument("--snapshots", type=int, default=6, help="accuracy-vs-time points per run")
    p.add_argument("--shapes-n", type=int, help="images of the shapes dataset (20000)")
    p.add_argument("--knn-train", type=int, help="evaluation bank / probe training images (all)")
    p.add_argument("--knn-test", type=int, help="evaluation test images (all)")
    p.add_argument("--no-figures", action="store_true", help="skip the papers' figures")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides (all arms)")


def run_study(args: argparse.Namespace) -> int:
    from selfsup.study.measure import EvalSizes
    from selfsup.study.plan import StudySettings
    from selfsup.study.runner import run_study as run

    if args.snapshots < 1:
        raise ConfigError(f"--snapshots must be >= 1; got {args.snapshots}.")
    if args.threads is not None and args.threads < 1:
        raise ConfigError(f"--threads must be >= 1; got {args.threads}.")
    settings = StudySettings(
        out_dir=Path(args.out),
        data=args.data,
        budget=args.budget,
        arms=args.arms,
        overrides=tuple(args.overrides),
        sweep=args.sweep,
        quick=args.quick,
        device=args.device,
        threads=args.threads,
        snapshots=args.snapshots,
        figures=not args.no_figures,
    )
    if args.shapes_n is not None:
        if not args.shapes_n >= 10:
            raise ConfigError(f"--shapes-n must be >= 10; got {args.shapes_n}.")
        settings = replace(settings, shapes_n=args.shapes_n)
    if args.knn_train is not None or args.knn_test is not None:
        sizes: EvalSizes = replace(settings.sizes, knn_train=args.knn_train, knn_test=args.knn_test)
        settings = replace(settings, sizes=sizes)
    paths = run(settings)
    print(f"report: {paths['markdown']}\n        {paths['html']}")
    return 0
