"""SimCLR views, ours against lightly's: the same training run with only the views swapped.

Everything but the source of the two views is shared and seeded alike: the network
(selfsup's ResNet-18 with the CIFAR stem at ``--width``, the v1 projection head, the same
initial weights), the loss (``selfsup.losses.nt_xent``, tested equal to lightly's
``NTXentLoss``), the optimiser (SGD with momentum and weight decay on every parameter, as
lightly's CIFAR-10 benchmark), the per-step cosine schedule, the precision, the step count
and the evaluation. The two sides draw their views from

* **selfsup**: ``selfsup.data.augment.simclr_augmentation`` (batched, on tensors) over the
  decoded CIFAR-10 JPEG images, batches drawn by a shuffled permutation per epoch;
* **lightly**: lightly 1.6's ``SimCLRTransform`` (Pillow and torchvision, one image at a
  time) in a ``DataLoader`` over the same JPEG files, as lightly's CIFAR-10 benchmark
  builds it (``cj_strength=0.5``, no blur) and without its ImageNet normalisation, so that
  both networks see [0, 1] pixels in training and in evaluation.

So a gap in kNN accuracy after the same steps measures the augmentation alone (and the
data order), which is what would explain a recipe falling short of lightly's published
numbers. kNN: k = 200, T = 0.1, on the full train split as bank and the test split as
queries (or seeded subsets), at 32 px (CIFAR-10's own side, also after training on
smaller crops with ``--size``, as the CPU recipes do); see the noise of one run in
benchmarks/RESULTS.md.

Usage (from the repository root)::

    python benchmarks/fidelity_simclr.py --steps 1500 --threads 1 --json out.json
    python benchmarks/fidelity_simclr.py --quick      # smoke test: a few steps, small eval
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from collections.abc import Callable, Generator, Iterator
from pathlib import Path
from typing import Any

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402 - the benchmarks' shared module, beside this script
import lightly_examples  # noqa: E402 - lightly's reference pipelines, beside this script

from selfsup.data import ImageData, load_dataset  # noqa: E402
from selfsup.data.augment import simclr_augmentation  # noqa: E402
from selfsup.engine.runtime import select_device  # noqa: E402
from selfsup.evaluation import evaluate  # noqa: E402
from selfsup.losses import nt_xent  # noqa: E402
from selfsup.methods.simclr import EncoderWithHead  # noqa: E402
from selfsup.models import create_model, projection_head  # noqa: E402
from selfsup.study.measure import subset  # noqa: E402

SIDES = ("selfsup", "lightly")
#: lightly's CIFAR-10 benchmark: colour strength 0.5 (SimCLR's s for CIFAR), no blur.
LIGHTLY_CJ_STRENGTH = 0.5


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, help="optimiser steps per side (default 1500)")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--width", type=float, default=0.25, help="ResNet-18 width multiplier")
    p.add_argument("--lr", type=float, default=0.12, help="SGD lr (lightly: 0.06 x batch/128)")
    p.add_argument("--momentum", type=float, default=0.9)
    p.add_argument("--weight-decay", type=float, default=5e-4)
    p.add_argument("--tau", type=float, default=0.5, help="NT-Xent temperature")
    p.add_argument("--crop-min", type=float, default=0.08, help="smallest crop area")
    p.add_argument("--size", type=int, default=32, help="training side (evaluation stays at 32 px)")
    p.add_argument(
        "--antialias", action="store_true", help="selfsup side: antialiased crops (Pillow's)"
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workers", type=int, default=1, help="lightly's loader processes")
    p.add_argument("--fp32", action="store_true", help="no bf16 autocast")
    p.add_argument("--side", action="append", choices=SIDES, help="run only these sides")
    p.add_argument("--quick", action="store_true", help="smoke test")
    p.add_argument("--json", help="also write the results to this JSON file")
    common.add_eval_options(p, linear_epochs=0)
    args = p.parse_args(argv)
    if args.steps is None:
        args.steps = 3 if args.quick else 1500
    if args.quick:
        args.knn_train = args.knn_train or 1000
        args.knn_test = args.knn_test or 500
    if args.steps < 1 or args.batch_size < 2:
        p.error("--steps must be >= 1 and --batch-size >= 2 (NT-Xent needs two images)")
    args.side = args.side or list(SIDES)
    return args


def build_network(args: argparse.Namespace, device: torch.device) -> EncoderWithHead:
    """f and g as selfsup's SimCLR builds them; the seed makes both sides start alike."""
    torch.manual_seed(args.seed)
    encoder = create_model("resnet18", width=args.width, cifar_stem=True)
    d: int = getattr(encoder, "num_features")  # noqa: B009 - the registry contract
    net = EncoderWithHead(encoder, projection_head("v1", in_dim=d, hidden_dim=d, out_dim=128))
    return net.to(device).to(memory_format=torch.channels_last)


def selfsup_views(
    args: argparse.Namespace, train: ImageData, device: torch.device
) -> Generator[torch.Tensor, None, None]:
    """(2B, 3, S, S) views in [0, 1]: both views of B images from one augmentation call,
    as ``selfsup.methods.simclr.SimCLR.training_step`` draws them."""
    augment = simclr_augmentation(
        "cifar", size=args.size, crop_scale=(args.crop_min, 1.0), antialias=args.antialias
    )
    g = torch.Generator().manual_seed(args.seed)
    n, b = len(train.images), args.batch_size
    while True:
        order = torch.randperm(n, generator=g)
        for i in range(n // b):
            x = train.images[order[i * b : (i + 1) * b]].to(device)
            yield augment(torch.cat([x, x], dim=0))


def lightly_views(
    args: argparse.Namespace, device: torch.device
) -> Generator[torch.Tensor, None, None]:
    """(2B, 3, S, S) views in [0, 1] from lightly's SimCLRTransform in a DataLoader."""
    from lightly.transforms import SimCLRTransform

    torch.manual_seed(args.seed)  # the loader's shuffling and its workers' seeds
    transform = SimCLRTransform(
        input_size=args.size,
        cj_strength=LIGHTLY_CJ_STRENGTH,
        min_scale=args.crop_min,
        gaussian_blur=0.0,
        normalize=None,
    )
    loader = lightly_examples.example_loader(transform, args.batch_size, args.workers)
    for (x0, x1), _ in common.endless(loader):
        yield torch.cat([x0, x1], dim=0).to(device)


def train(
    args: argparse.Namespace, views: Iterator[torch.Tensor], device: torch.device
) -> tuple[nn.Module, dict[str, Any]]:
    """``--steps`` SimCLR steps on ``views``; returns (encoder, stats)."""
    net = build_network(args, device)
    opt = torch.optim.SGD(
        net.parameters(), lr=args.lr, momentum=args.momentum, weight_decay=args.weight_decay
    )
    cosine: Callable[[int], float] = lambda s: 0.5 * (1 + math.cos(math.pi * s / args.steps))  # noqa: E731
    schedule = torch.optim.lr_scheduler.LambdaLR(opt, cosine)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=not args.fp32)
    b = args.batch_size
    losses: list[float] = []
    start = time.perf_counter()
    net.train()
    for _ in range(args.steps):
        v = next(views).contiguous(memory_format=torch.channels_last)
        with autocast:
            z = net(v)
        loss = nt_xent(z[:b], z[b:], temperature=args.tau)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        schedule.step()
        losses.append(float(loss.detach()))
    wall = time.perf_counter() - start
    tail = losses[-max(1, len(losses) // 10) :]
    stats = {
        "steps": args.steps,
        "pairs_per_s": args.steps * b / wall,
        "train_s": wall,
        "first_loss": losses[0],
        "mean_loss_last_10pct": sum(tail) / len(tail),
    }
    return net.encoder, stats


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    device = select_device(args.device)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    settings = {k: v for k, v in vars(args).items() if k not in ("json", "quick")}
    info = common.hardware(device)
    common.print_header("SimCLR views: selfsup vs lightly, same run otherwise", info, settings)
    train_split = load_dataset("cifar10", "train")
    bank = subset(train_split, args.knn_train, seed=0)
    queries = subset(load_dataset("cifar10", "test"), args.knn_test, seed=0)
    rows: dict[str, dict[str, Any]] = {}
    for side in args.side:
        views = (
            selfsup_views(args, train_split, device)
            if side == "selfsup"
            else lightly_views(args, device)
        )
        encoder, stats = train(args, views, device)
        views.close()  # stops lightly's loader workers
        r = evaluate(
            encoder, bank, queries, image_size=32, protocols=("knn",), k=args.k,
            temperature=args.temperature, batch_size=args.eval_batch_size, device=str(device),
        )  # fmt: skip
        rows[side] = {**stats, "knn_top1": r["knn_top1"], "knn_top5": r["knn_top5"]}
        print(f"{side}: " + "  ".join(f"{k} {v:.4g}" for k, v in rows[side].items()))
        sys.stdout.flush()
    if len(rows) == 2:
        gap = rows["selfsup"]["knn_top1"] - rows["lightly"]["knn_top1"]
        print(f"kNN top-1, selfsup minus lightly: {gap:+.2f} points")
    common.write_json(args.json, {"hardware": info, "settings": settings, "results": rows})
    return 0


if __name__ == "__main__":
    common.run_main(main)
