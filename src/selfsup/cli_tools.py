"""``selfsup data`` and ``selfsup probe``: the shapes dataset and the probes that read it.

selfsup data shapes --out DIR [--n 60000 --seed 0 --size 32|64 --min-objects 3 --max-objects 10]
selfsup probe counting|depth --checkpoint PATH --data DIR [--epochs 100] [--json]
selfsup probe transforms --checkpoint PATH [--data NAME_OR_FOLDER] [--epochs 30] [--json]
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from selfsup.config import ConfigError, unknown_name_error

DATASETS = ("shapes",)
PROBES = ("counting", "depth", "transforms")


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
    data.add_argument("--min-objects", type=int, default=3, help="fewest objects, >= 1 (3)")
    data.add_argument("--max-objects", type=int, default=10, help="most objects, <= 10 (10)")
    data.add_argument("--no-progress", action="store_true", help="no progress bar")

    probe = sub.add_parser(
        "probe",
        help="probes of a checkpoint: counting, depth (shapes dataset), transforms",
        description="Probes on frozen features. counting / depth: a linear head on the "
        "shapes dataset classifies the object count / regresses the nearest object's depth. "
        "transforms: an MLP on h and on g(h) predicts which transformation was applied "
        "(SimCLR Table 3).",
    )
    probe.add_argument("task", help=f"which probe: {', '.join(PROBES)}")
    probe.add_argument("--checkpoint", required=True, help="a checkpoint written by pretrain")
    probe.add_argument(
        "--data",
        help="counting, depth: a folder written by `selfsup data shapes`; transforms: a "
        "dataset name or folder (default: the checkpoint's)",
    )
    probe.add_argument("--device", default="auto", help="auto, cpu, cuda, mps")
    probe.add_argument("--batch-size", type=int, default=512, help="feature extraction batch")
    probe.add_argument(
        "--epochs", type=int, help="counting: linear probe epochs (100); transforms: MLP (30)"
    )
    probe.add_argument("--train-images", type=int, default=10000, help="transforms (10000)")
    probe.add_argument("--test-images", type=int, default=2000, help="transforms (2000)")
    probe.add_argument("--seed", type=int, default=0, help="transforms: images and labels")
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
        min_objects=args.min_objects,
        max_objects=args.max_objects,
    )
    print(f"wrote {args.n} images of {args.size} px to {out} (labels: {out / 'labels.csv'})")
    return 0


def run_probe(args: argparse.Namespace) -> int:
    from selfsup import evaluation
    from selfsup.engine.runtime import select_device
    from selfsup.probes import shapes_probes

    if args.task not in PROBES:
        raise unknown_name_error("probe", args.task, PROBES)
    if args.task == "transforms":
        return _probe_transforms(args)
    if args.data is None:
        raise ConfigError(
            f"probe {args.task} needs --data: a folder written by `selfsup data shapes`."
        )
    encoder, meta = evaluation.encoder_from_checkpoint(args.checkpoint)
    device = select_device(args.device)
    result = shapes_probes(
        encoder.to(device),
        args.data,
        tasks=(args.task,),
        image_size=meta.get("image_size"),
        linear_epochs=args.epochs or 100,
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


def _probe_transforms(args: argparse.Namespace) -> int:
    import torch

    from selfsup import build, evaluation
    from selfsup.cli import checkpoint_data
    from selfsup.engine.runtime import select_device
    from selfsup.probes.transforms import format_table, transforms_probe

    if args.train_images < 2 or args.test_images < 1:
        raise ConfigError("--train-images must be >= 2 and --test-images >= 1.")
    encoder, meta = evaluation.encoder_from_checkpoint(args.checkpoint)
    width: int = getattr(encoder, "num_features")  # noqa: B009 - the registry contract
    head = evaluation.head_from_checkpoint(args.checkpoint, width)
    data = checkpoint_data(meta, args.checkpoint, args.data)
    images = []
    for split, n, seed in (("train", args.train_images, 0), ("test", args.test_images, 1)):
        split_images = build.load_split(data, split, labelled=False).images
        pick = torch.randperm(len(split_images), generator=torch.Generator().manual_seed(seed))
        images.append(split_images[pick[:n]].contiguous())
    device = select_device(args.device)
    result = transforms_probe(
        encoder.to(device),
        head,
        *images,
        image_size=meta.get("image_size"),
        epochs=args.epochs or 30,
        batch_size=args.batch_size,
        device=device,
        seed=args.seed,
    )
    if args.json:
        print(json.dumps(result))
        return 0
    if head is None:
        print(f"{meta.get('method', 'this')} checkpoint: no projection head, h only")
    print(format_table(result))
    return 0
