"""``selfsup data`` and ``selfsup probe``: the shapes dataset and the probes that read it.

selfsup data shapes --out DIR [--n 60000] [--seed 0] [--size 32|64]
selfsup probe counting|depth --checkpoint PATH --data DIR [--epochs 100] [--json]
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from selfsup.config import unknown_name_error

DATASETS = ("shapes",)
PROBES = ("counting", "depth")


def add_parsers(sub: Any) -> None:
    """Add the ``data`` and ``probe`` sub-commands to ``sub`` (argparse subparsers)."""
    data = sub.add_parser(
        "data",
        help="generate a dataset (shapes: counting and depth scenes)",
        description="Generate the shapes dataset: Clevr-like scenes of 3 to 10 objects, "
        "labelled with their count and the depth of the nearest object.",
    )
    data.add_argument("dataset", help=f"which dataset: {', '.join(DATASETS)}")
    data.add_argument("--out", required=True, help="a new or empty folder")
    data.add_argument("--n", type=int, default=60000, help="number of images (60000)")
    data.add_argument("--seed", type=int, default=0, help="dataset seed (0)")
    data.add_argument("--size", type=int, default=32, help="image side: 32 or 64 (32)")
    data.add_argument("--test-fraction", type=float, default=1 / 6, help="test share (1/6)")
    data.add_argument("--no-progress", action="store_true", help="no progress bar")

    probe = sub.add_parser(
        "probe",
        help="low-level probes of a checkpoint (counting, depth on the shapes dataset)",
        description="Train a linear head on frozen features of the shapes dataset: "
        "classification of the object count, regression of the nearest object's depth.",
    )
    probe.add_argument("task", help=f"which probe: {', '.join(PROBES)}")
    probe.add_argument("--checkpoint", required=True, help="a checkpoint written by pretrain")
    probe.add_argument("--data", required=True, help="a folder written by `selfsup data shapes`")
    probe.add_argument("--device", default="auto", help="auto, cpu, cuda, mps")
    probe.add_argument("--batch-size", type=int, default=512, help="feature extraction batch")
    probe.add_argument("--epochs", type=int, default=100, help="counting: linear probe epochs")
    probe.add_argument("--json", action="store_true", help="print the result as JSON")


def run_data(args: argparse.Namespace) -> int:
    from pathlib import Path

    from selfsup.data.shapes import write_shapes_dataset

    if args.dataset not in DATASETS:
        raise unknown_name_error("dataset", args.dataset, DATASETS)
    out = write_shapes_dataset(
        Path(args.out),
        args.n,
        seed=args.seed,
        size=args.size,
        test_fraction=args.test_fraction,
        progress=not args.no_progress,
    )
    print(f"wrote {args.n} images of {args.size} px to {out} (labels: {out / 'labels.csv'})")
    return 0


def run_probe(args: argparse.Namespace) -> int:
    from selfsup import evaluation
    from selfsup.engine.runtime import select_device
    from selfsup.probes import shapes_probes

    if args.task not in PROBES:
        raise unknown_name_error("probe", args.task, PROBES)
    encoder, meta = evaluation.encoder_from_checkpoint(args.checkpoint)
    device = select_device(args.device)
    result = shapes_probes(
        encoder.to(device),
        args.data,
        tasks=(args.task,),
        image_size=meta.get("image_size"),
        linear_epochs=args.epochs,
        batch_size=args.batch_size,
        device=device,
    )
    if args.json:
        print(json.dumps(result))
    elif args.task == "counting":
        print(
            f"counting top-1: {result['counting_top1']:.2f} %  "
            f"(most frequent count: {result['counting_chance']:.2f} %)"
        )
    else:
        print(
            f"depth MAE: {result['depth_mae']:.4f}  (constant predictor: "
            f"{result['depth_baseline_mae']:.4f}; R^2 {result['depth_r2']:.3f})"
        )
    return 0
