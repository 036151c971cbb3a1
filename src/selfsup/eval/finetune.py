"""Few-label fine-tuning: the encoder and a linear head trained together on a small,
class-balanced labelled subset (SimCLR paper, Sec. 6 "Semi-supervised learning" and
Appendix B.5; SPEC.md, SimCLR "Linear evaluation": 1 % and 10 % of the labels,
class-balanced subsets, fixed seed).

The recipe is the paper's, at any batch size:

* SGD with Nesterov momentum 0.9, learning rate 0.05 x batch / 256, no warm-up, cosine
  decay to 0 over the run (the official code's schedule), no weight decay.
* Augmentation: only a random resized crop with a horizontal flip (Inception-style crop,
  area (0.08, 1) by default), then resized to the evaluation size.
* 60 epochs for 1 % of the labels or fewer, 30 for more (the paper's 1 % and 10 % runs).
* The head is initialised N(0, 0.01^2) with zero bias; the encoder starts from its
  pre-trained weights and trains in train mode (BatchNorm uses batch statistics).
* Test top-1/top-5 on the whole test split, without augmentation, encoder in eval mode.

The subsets are nested: for a seed, each class's images are ranked by one seeded
permutation and a budget takes the first ones, so the 1 % subset lies inside the 10 % one.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from selfsup.data.augment import BatchAugmentation
from selfsup.data.augment_random import RandomResizedCrop
from selfsup.engine.runtime import epoch_batches, resolve_precision
from selfsup.engine.schedules import warmup_cosine
from selfsup.eval.features import (
    Precision,
    _pool,
    check_images,
    extract_features,
    topk_accuracy,
)

_PERCENT = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*%\s*$")
_PER_CLASS = re.compile(r"^\s*(\d+)\s*[- ]?\s*per[- ]?class\s*$")


@dataclass(frozen=True)
class LabelBudget:
    """How many labels per class: a ``fraction`` of each class, or ``per_class`` images.

    Exactly one is set. :meth:`parse` reads ``"1%"``, ``"10%"``, ``"0.5%"`` or
    ``"25-per-class"``.
    """

    fraction: float | None = None
    per_class: int | None = None

    def __post_init__(self) -> None:
        if (self.fraction is None) == (self.per_class is None):
            raise ValueError("LabelBudget takes exactly one of fraction and per_class.")
        if self.fraction is not None and not 0.0 < self.fraction <= 1.0:
            raise ValueError(f"labels: the fraction must lie in (0, 100 %]; got {self}.")
        if self.per_class is not None and self.per_class < 1:
            raise ValueError(f"labels: per class must be >= 1; got {self.per_class}.")

    @classmethod
    def parse(cls, spec: str) -> LabelBudget:
        """``"1%"`` -> fraction 0.01; ``"25-per-class"`` -> per_class 25."""
        if m := _PERCENT.match(spec):
            return cls(fraction=float(m.group(1)) / 100.0)
        if m := _PER_CLASS.match(spec):
            return cls(per_class=int(m.group(1)))
        raise ValueError(
            f"labels: {spec!r} is not a label budget; write a percentage of each class "
            "('1%', '10%') or a count per class ('25-per-class')."
        )

    def __str__(self) -> str:
        if self.fraction is not None:
            return f"{100.0 * self.fraction:g}%"
        return f"{self.per_class}-per-class"


def balanced_subset(labels: Tensor, budget: LabelBudget, num_classes: int, *, seed: int) -> Tensor:
    """Sorted indices (M,) into ``labels`` (N,) of a class-balanced subset.

    Per class c with n_c images: ``max(1, round(fraction * n_c))`` or ``per_class`` of
    them, the first in a permutation of the class drawn from ``seed`` (the same ranking
    for every budget: smaller subsets are nested in larger ones).
    """
    if labels.ndim != 1 or labels.dtype != torch.int64:
        raise ValueError(f"labels must be (N,) int64; got {labels.dtype} {tuple(labels.shape)}.")
    generator = torch.Generator().manual_seed(seed)
    chosen: list[Tensor] = []
    for c in range(num_classes):
        members = (labels == c).nonzero().squeeze(1)
        order = members[torch.randperm(len(members), generator=generator)]
        if budget.per_class is not None:
            take = budget.per_class
            if take > len(members):
                raise ValueError(
                    f"labels: {budget} needs {take} images of every class but class {c} has "
                    f"{len(members)}; ask for at most {len(members)} per class or a percentage."
                )
        else:
            assert budget.fraction is not None
            take = max(1, round(budget.fraction * len(members))) if len(members) else 0
        chosen.append(order[:take])
    return torch.cat(chosen).sort().values


def default_finetune_epochs(num_labels: int, num_train: int) -> int:
    """The paper's length: 60 epochs for at most 1 % of the training split, else 30."""
    return 60 if num_labels <= math.ceil(0.01 * num_train) else 30


@dataclass(frozen=True)
class FinetuneResult:
    """Outcome of :func:`finetune`; accuracies in percent on the test split."""

    top1: float
    top5: float
    num_labels: int
    epochs: int
    steps: int
    batch_size: int
    lr: float
    final_loss: float


def finetune(
    encoder: nn.Module,
    train_images: Tensor,
    train_labels: Tensor,
    test_images: Tensor,
    test_labels: Tensor,
    *,
    num_classes: int,
    epochs: int,
    batch_size: int = 256,
    lr: float | None = None,
    momentum: float = 0.9,
    weight_decay: float = 0.0,
    crop_scale: tuple[float, float] = (0.08, 1.0),
    image_size: int | None = None,
    device: str | torch.device = "cpu",
    precision: Precision = "fp32",
    seed: int = 0,
    eval_batch_size: int = 512,
) -> FinetuneResult:
    """Fine-tune ``encoder`` (changed in place) with a new linear head; test top-1/top-5.

    Args:
        encoder: float images (B, 3, S, S) in [0, 1] -> (B, D) features, or (B, N, D)
            tokens (average-pooled), already on ``device``.
        train_images, train_labels: the labelled subset, (M, 3, H, W) uint8 and (M,) int64.
        test_images, test_labels: the test split, same layout.
        num_classes: C; the head maps D -> C.
        epochs: passes over the subset; each is ``M // batch`` steps (last partial dropped).
        batch_size: capped at M.
        lr: peak learning rate; None: 0.05 x batch / 256 (the paper's rule).
        crop_scale: area range of the random resized crop.
        image_size: S; None keeps the images' own size.
    """
    for name, images in (("train_images", train_images), ("test_images", test_images)):
        check_images(images, name)
    if train_labels.shape != (len(train_images),) or test_labels.shape != (len(test_images),):
        raise ValueError("train_labels and test_labels must be (N,), one per image.")
    if epochs < 1 or batch_size < 1:
        raise ValueError(f"epochs and batch_size must be >= 1; got {epochs} and {batch_size}.")
    if len(train_images) < 2:
        raise ValueError("fine-tuning needs at least 2 labelled images (BatchNorm batches).")
    device = torch.device(device)
    precision = resolve_precision(precision, device)
    size = image_size or int(train_images.shape[-1])
    batch = min(batch_size, len(train_images))
    peak = 0.05 * batch / 256 if lr is None else lr
    torch.manual_seed(seed)
    width = extract_features(encoder, train_images[:2], device=device, image_size=size).shape[1]
    head = nn.Linear(width, num_classes).to(device)
    nn.init.normal_(head.weight, std=0.01)
    nn.init.zeros_(head.bias)
    params = [p for p in encoder.parameters() if p.requires_grad] + list(head.parameters())
    optimizer = torch.optim.SGD(
        params, lr=peak, momentum=momentum, nesterov=True, weight_decay=weight_decay
    )
    augment = BatchAugmentation([RandomResizedCrop(size, scale=crop_scale)], size)
    generator = torch.Generator(device).manual_seed(seed)
    per_epoch = len(train_images) // batch
    total = epochs * per_epoch
    labels = train_labels.to(device)
    encoder.train()
    head.train()
    step, loss = 0, 0.0
    for epoch in range(epochs):
        order = epoch_batches(
            len(train_images), batch, epoch=epoch, seed=seed, rank=0, world_size=1
        )
        for idx in order:
            for group in optimizer.param_groups:  # SimCLR: no warm-up, cosine to 0
                group["lr"] = warmup_cosine(
                    step, total_steps=total, warmup_steps=0, base_value=peak
                )
            x = augment(train_images[idx].to(device, non_blocking=True), generator)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16"):
                logits = head(_pool(encoder(x), len(idx)))
            loss_t = F.cross_entropy(logits.float(), labels[idx.to(device)])
            optimizer.zero_grad(set_to_none=True)
            loss_t.backward()
            optimizer.step()
            step += 1
        loss = float(loss_t.detach())  # once per epoch: a per-step read would sync the device
        if not math.isfinite(loss):
            raise ValueError(f"fine-tuning diverged (loss {loss}); lower the --lr.")
    features = extract_features(
        encoder, test_images, batch_size=eval_batch_size, device=device, image_size=size
    )
    with torch.no_grad():
        scores = head(features.to(device)).cpu()
    acc = topk_accuracy(scores, test_labels)
    return FinetuneResult(acc[1], acc[5], len(train_images), epochs, step, batch, peak, loss)
