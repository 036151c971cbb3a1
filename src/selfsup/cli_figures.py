"""``selfsup figure``: the papers' figures (:mod:`selfsup.figures`) drawn from a dataset.

selfsup figure crops --out FILE.png [--data cifar10] [--images 2] [--strength 1.0]
selfsup figure augmentations --out FILE.png [--data cifar10] [--images 4]
selfsup figure masks --out FILE.png [--data cifar10] [--images 8] [--patch-size 4]
selfsup figure predictor --checkpoint PATH --out FILE.png [--data NAME_OR_FOLDER]
    [--images 4] [--train-images 1000] [--epochs 10] [--device auto]
Every figure also takes --seed S (the images and every random draw) and --split (test).
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from selfsup.config import ConfigError, unknown_name_error

if TYPE_CHECKING:  # torch is imported when a figure is drawn, not with the CLI
    import torch

FIGURES = ("crops", "augmentations", "masks", "predictor")
#: Images drawn by default: up to 3 are used by crops (one column each).
DEFAULT_IMAGES = {"crops": 2, "augmentations": 4, "masks": 8, "predictor": 4}


def add_parsers(sub: Any) -> None:
    """Add the ``figure`` sub-command to ``sub`` (argparse subparsers)."""
    fig = sub.add_parser(
        "figure",
        help="draw a figure of the papers as a PNG (crops, augmentations, masks, predictor)",
        description="Draw a figure of the papers with selfsup's own training code. crops: "
        "SimCLR Fig. 6, colour histograms of random crops without and with colour "
        "distortion. augmentations: SimCLR Fig. 4, each augmentation operator alone. masks: "
        "I-JEPA Fig. 4, context and target blocks. predictor: I-JEPA Fig. 6 analogue, an "
        "I-JEPA checkpoint's predictions decoded to pixels by a deterministic decoder "
        "trained on its target encoder (the paper uses a generative RCDM decoder).",
    )
    fig.add_argument("figure", help=f"which figure: {', '.join(FIGURES)}")
    fig.add_argument("--out", required=True, help="the PNG file to write")
    fig.add_argument(
        "--data",
        help="dataset name or folder (default: cifar10; predictor: the checkpoint's)",
    )
    fig.add_argument("--split", default="test", help="split of the images shown (test)")
    fig.add_argument("--checkpoint", help="predictor: a checkpoint of `selfsup pretrain ijepa`")
    fig.add_argument(
        "--images",
        type=int,
        help="images shown (crops 2, at most 3; augmentations 4; masks 8; predictor 4)",
    )
    fig.add_argument("--seed", type=int, default=0, help="picks the images and draws (0)")
    fig.add_argument("--strength", type=float, default=1.0, help="crops: colour strength s")
    fig.add_argument("--patch-size", type=int, default=4, help="masks: patch side in px (4)")
    fig.add_argument("--epochs", type=int, default=10, help="predictor: decoder epochs (10)")
    fig.add_argument(
        "--train-images", type=int, default=1000, help="predictor: decoder's training images"
    )
    fig.add_argument(
        "--batch-size", type=int, default=256, help="predictor: decoder patches per step"
    )
    fig.add_argument("--device", default="auto", help="predictor: auto, cpu, cuda, mps")


def _pick(images: torch.Tensor, n: int, seed: int) -> torch.Tensor:
    """``n`` images (all if fewer) in a random order fixed by ``seed``."""
    import torch

    order = torch.randperm(len(images), generator=torch.Generator().manual_seed(seed))
    return images[order[:n]].contiguous()


def run_figure(args: argparse.Namespace) -> int:
    """Draw ``args.figure`` to ``args.out``; print the path (and the predictor's metrics)."""
    from selfsup import build, figures
    from selfsup.recipes import DataSection

    if args.figure not in FIGURES:
        raise unknown_name_error("figure", args.figure, FIGURES)
    if args.figure == "predictor" and args.checkpoint is None:
        raise ConfigError("figure predictor needs --checkpoint: a `selfsup pretrain ijepa` run.")
    if args.figure != "predictor" and args.checkpoint is not None:
        raise ConfigError(f"--checkpoint applies to the predictor figure only, not {args.figure}.")
    n = DEFAULT_IMAGES[args.figure] if args.images is None else args.images
    if n < 1:
        raise ConfigError(f"--images must be >= 1; got {n}.")
    if args.figure == "predictor":
        return _predictor(args, n)
    data = DataSection(dataset=args.data or "cifar10")
    images = _pick(build.load_split(data, args.split, labelled=False).images, n, args.seed)
    if args.figure == "crops":
        out = figures.crop_histograms(images, args.out, strength=args.strength, seed=args.seed)
    elif args.figure == "augmentations":
        out = figures.augmentation_grid(images, args.out, seed=args.seed)
    else:
        out = figures.mask_grid(images, args.out, patch_size=args.patch_size, seed=args.seed)
    print(f"wrote {out}")
    return 0


def _predictor(args: argparse.Namespace, n: int) -> int:
    from selfsup import build, figures
    from selfsup.cli import checkpoint_data
    from selfsup.engine.runtime import select_device

    if args.train_images < 2:
        raise ConfigError(f"--train-images must be >= 2; got {args.train_images}.")
    _, meta = figures.ijepa_from_checkpoint(args.checkpoint)  # refuses other methods early
    data = checkpoint_data(meta, args.checkpoint, args.data)
    train = build.load_split(data, data.train_split, labelled=False).images
    if args.split == data.train_split:
        raise ConfigError(
            f"--split {args.split} is the decoder's training split; the predictor figure "
            "shows held-out images: pass another split (test)."
        )
    shown = build.load_split(data, args.split, labelled=False).images
    out, metrics = figures.predictor_figure(
        args.checkpoint,
        _pick(train, args.train_images, args.seed),
        _pick(shown, n, args.seed),
        args.out,
        epochs=args.epochs,
        batch_size=args.batch_size,
        device=select_device(args.device),
        seed=args.seed,
    )
    print(f"wrote {out}")
    print("MSE per pixel, pixels in [0, 1] (on the shown, held-out images but the last):")
    for name, value in metrics.items():
        print(f"  {name}: {value:.5f}")
    return 0
