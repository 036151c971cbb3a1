"""Transformation-prediction probe (SimCLR paper, Table 3): what h keeps and g(h) discards.

SimCLR's argument for reading h rather than z = g(h): the projection head is trained to be
invariant to the augmentations, so z loses information (which transformation was applied)
that h still holds. The probe applies one transformation per task to images of the
dataset, with a seeded random label per image, extracts frozen features (h, and g(h) when
the checkpoint has a projection head) and trains a small MLP to predict the label:

============================  =========================================  ==============
task                          images                                     random guess
============================  =========================================  ==============
colour vs grayscale           grayscale (luma) with probability 0.2       80 %
rotation                      0, 90, 180 or 270 degrees, uniform          25 %
original vs corrupted         Gaussian noise, std ~ U(0, 0.1), p = 0.5    50 %
original vs Sobel-filtered    Sobel edge magnitude, p = 0.5               50 %
============================  =========================================  ==============

The operators are selfsup's augmentation operators (:mod:`selfsup.data.augment_ops`); the
transformed images are quantised back to 8 bits, as stored images would be. The MLP: input
standardised with the training features' statistics, one hidden layer of 512 ReLU units,
AdamW (lr 1e-3, weight decay 1e-4), batch 256, cross-entropy. Accuracy on the transformed
test images.

One difference from the paper, on purpose: for the last three rows the paper pre-trained
with rotation, noise and Sobel added to its augmentations; this probe reads any checkpoint
as it was trained, so those rows measure what the representation keeps of transformations
it was not necessarily trained to ignore.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from selfsup.data import augment_color as color
from selfsup.data import augment_ops as ops
from selfsup.eval import extract_features


@dataclass(frozen=True)
class TransformTask:
    """One row of SimCLR's Table 3: its classes, chance level and published figures."""

    name: str
    title: str
    num_classes: int
    random_guess: float
    paper_h: float
    paper_gh: float


TASKS: tuple[TransformTask, ...] = (
    TransformTask("grayscale", "colour vs grayscale", 2, 80.0, 99.3, 97.4),
    TransformTask("rotation", "rotation", 4, 25.0, 67.6, 25.6),
    TransformTask("corrupted", "original vs corrupted", 2, 50.0, 99.5, 59.6),
    TransformTask("sobel", "original vs Sobel-filtered", 2, 50.0, 96.6, 56.3),
)
_NOISE_STD = (0.0, 0.1)  # selfsup's GaussianNoise default (the paper gives no level)


def transform_images(
    task: str, images: Tensor, generator: torch.Generator
) -> tuple[Tensor, Tensor]:
    """Apply ``task``'s transformation with seeded random labels.

    Args:
        task: a :data:`TASKS` name.
        images: (N, 3, H, W) uint8 (square for rotation).
        generator: CPU generator for the labels (and the noise).

    Returns:
        transformed images (N, 3, H, W) uint8 and labels (N,) int64 (0 = untouched).
    """
    n = len(images)
    x = images.float().div(255.0)
    if task == "grayscale":
        labels = (torch.rand(n, generator=generator) < 0.2).long()
        x = torch.where(labels.bool().view(-1, 1, 1, 1), color.grayscale(x), x)
    elif task == "rotation":
        labels = torch.randint(0, 4, (n,), generator=generator)
        x = ops.rotate90(x, labels)
    elif task == "corrupted":
        labels = (torch.rand(n, generator=generator) < 0.5).long()
        stds = _NOISE_STD[0] + (_NOISE_STD[1] - _NOISE_STD[0]) * torch.rand(n, generator=generator)
        noise = torch.randn(x.shape, generator=generator)
        x = ops.add_gaussian_noise(x, stds * labels, noise)
    elif task == "sobel":
        labels = (torch.rand(n, generator=generator) < 0.5).long()
        x = torch.where(labels.bool().view(-1, 1, 1, 1), ops.sobel(x), x)
    else:
        raise ValueError(f"unknown task {task!r}; one of {', '.join(t.name for t in TASKS)}")
    return x.mul(255.0).round_().to(torch.uint8), labels


def mlp_probe(
    train_features: Tensor,
    train_labels: Tensor,
    test_features: Tensor,
    test_labels: Tensor,
    *,
    num_classes: int,
    hidden: int = 512,
    epochs: int = 30,
    batch_size: int = 256,
    seed: int = 0,
) -> float:
    """Top-1 (percent) on the test features of a one-hidden-layer MLP trained on the train
    features (N, d); inputs standardised with the training statistics."""
    mean = train_features.mean(0)
    scale = (train_features.var(0, unbiased=False) + 1e-6).sqrt()
    x, xt = (train_features - mean) / scale, (test_features - mean) / scale
    torch.manual_seed(seed)
    mlp = nn.Sequential(nn.Linear(x.shape[1], hidden), nn.ReLU(), nn.Linear(hidden, num_classes))
    optimizer = torch.optim.AdamW(mlp.parameters(), lr=1e-3, weight_decay=1e-4)
    generator = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        for idx in torch.randperm(len(x), generator=generator).split(batch_size):
            loss = F.cross_entropy(mlp(x[idx]), train_labels[idx])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
    with torch.no_grad():
        predicted = mlp(xt).argmax(1)
    return 100.0 * float((predicted == test_labels).float().mean())


def transforms_probe(
    encoder: nn.Module,
    head: nn.Module | None,
    train_images: Tensor,
    test_images: Tensor,
    *,
    image_size: int | None = None,
    epochs: int = 30,
    batch_size: int = 512,
    device: str | torch.device = "cpu",
    seed: int = 0,
) -> dict[str, dict[str, float]]:
    """Table 3 for one checkpoint: per task, ``{"h": top-1, "g(h)": top-1}`` (percent; no
    "g(h)" when ``head`` is None), with ``random_guess``, ``paper_h`` and ``paper_gh``.

    ``encoder`` maps images to h (B, d) (tokens are average-pooled); ``head`` maps h to
    g(h). ``train_images`` / ``test_images``: (N, 3, H, W) uint8, square.
    """
    head = None if head is None else head.to(device).eval()
    results: dict[str, dict[str, float]] = {}
    for i, task in enumerate(TASKS):
        row = {"random_guess": task.random_guess, "paper_h": task.paper_h}
        row["paper_gh"] = task.paper_gh
        features: dict[str, list[Tensor]] = {"h": [], "g(h)": []}
        labels = []
        for j, images in enumerate((train_images, test_images)):
            generator = torch.Generator().manual_seed(seed + 10 * i + j)
            transformed, y = transform_images(task.name, images, generator)
            h = extract_features(
                encoder, transformed, batch_size=batch_size, device=device, image_size=image_size
            )
            features["h"].append(h)
            if head is not None:
                with torch.no_grad():
                    features["g(h)"].append(head(h.to(device)).float().cpu())
            labels.append(y)
        for name, (f_train, f_test) in ((k, v) for k, v in features.items() if v):
            row[name] = mlp_probe(
                f_train, labels[0], f_test, labels[1],
                num_classes=task.num_classes, epochs=epochs, seed=seed,
            )  # fmt: skip
        results[task.name] = row
    return results


def format_table(results: dict[str, dict[str, float]]) -> str:
    """The paper's Table 3 layout with our figures beside the paper's."""
    lines = [
        f"{'task':28s} {'random':>7s} {'h':>7s} {'g(h)':>7s} {'paper h':>8s} {'paper g(h)':>11s}"
    ]
    for task in TASKS:
        r = results[task.name]
        gh = f"{r['g(h)']:7.1f}" if "g(h)" in r else f"{'-':>7s}"
        lines.append(
            f"{task.title:28s} {task.random_guess:7.1f} {r['h']:7.1f} {gh} "
            f"{task.paper_h:8.1f} {task.paper_gh:11.1f}"
        )
    return "\n".join(lines)
