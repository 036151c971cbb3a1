"""Linear evaluation on frozen, cached features (SimCLR paper, Sec. 4; SPEC.md).

The protocol: freeze the encoder f, train one linear layer on h = f(x) with the labels,
report top-1 (and top-5) on the test split. Choices made here, on purpose:

* **Cached features, no augmentation.** The SimCLR paper's linear evaluation trains on
  random crops and flips of the images (its Appendix B.6); training on features
  extracted once without augmentation is the common fast variant: the encoder runs once
  instead of every epoch. Numbers from the two variants are not interchangeable.
* **Standardised features.** Each feature dimension is shifted and scaled by the mean and
  standard deviation of the training split: ``(h - mean) / sqrt(var + 1e-6)``. This is
  MAE's linear probe, ``BatchNorm1d(d, affine=False, eps=1e-6)`` before the linear layer,
  with the statistics of the whole training split in place of per-batch ones.
* **A learning-rate grid in one pass** (dinov2's linear evaluation): one big weight matrix
  (d, L*C) holds L heads of C classes, each trained by its own SGD (momentum 0.9, cosine
  schedule, cross-entropy) with its own learning rate, on the same batches. The head with
  the best top-1 on a held-out, class-stratified validation part of the training
  features is reported on the test split. It is not retrained on the full training set:
  the reported head has seen ``1 - val_fraction`` of it.
* Gradients and the SGD update are written out by hand (softmax cross-entropy has the
  closed-form gradient softmax(z) - onehot(y)); ``tests/test_eval.py`` checks them against
  ``nn.Linear`` + ``torch.optim.SGD``. With 50,000 x 512 features, 10 classes, the 7-rate
  default grid and 100 epochs this takes about 12 s on one CPU core (the cost grows with
  N * d * C * len(learning_rates) * epochs).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from selfsup.eval.features import check_features_labels, topk_accuracy

DEFAULT_LEARNING_RATES: tuple[float, ...] = (0.001, 0.003, 0.01, 0.03, 0.1, 0.3, 1.0)
_BN_EPS = 1e-6  # MAE's BatchNorm1d(affine=False, eps=1e-6)


@dataclass(frozen=True)
class LinearProbeResult:
    """Outcome of :func:`linear_probe`; accuracies in percent.

    ``val_top1`` maps each learning rate of the grid to its head's validation top-1
    (empty when there was no validation split).
    """

    top1: float
    top5: float
    best_lr: float
    val_top1: dict[float, float]
    num_train: int
    num_val: int


def stratified_split(labels: Tensor, val_fraction: float, seed: int = 0) -> tuple[Tensor, Tensor]:
    """Split sample indices into (train, val), class by class.

    Each class with n_c samples gives ``round(val_fraction * n_c)`` of them (at most
    n_c - 1, so every class keeps a training sample) to validation, chosen at random with
    ``seed``. Returns two sorted int64 index tensors that partition ``range(len(labels))``.
    """
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}.")
    labels = labels.cpu().long()
    gen = torch.Generator().manual_seed(seed)
    perm = torch.randperm(labels.shape[0], generator=gen)
    # A stable sort by label of a random permutation: each class's indices in random order.
    order = perm[torch.sort(labels[perm], stable=True).indices]
    counts = torch.bincount(labels)
    starts = torch.cumsum(counts, 0) - counts
    n_val = torch.minimum(torch.round(counts * val_fraction).long(), (counts - 1).clamp(min=0))
    # Position of each sorted sample within its class; the first n_val of a class go to val.
    rank_in_class = torch.arange(labels.shape[0]) - starts[labels[order]]
    is_val = rank_in_class < n_val[labels[order]]
    return order[~is_val].sort().values, order[is_val].sort().values


def _standardize(train: Tensor, *others: Tensor) -> list[Tensor]:
    """(x - mean) / sqrt(var + eps) with the (biased) statistics of ``train``: (N, d) each."""
    mean = train.mean(dim=0)
    inv_std = torch.rsqrt(train.var(dim=0, unbiased=False) + _BN_EPS)
    return [(x - mean) * inv_std for x in (train, *others)]


def _softmax(logits: Tensor) -> Tensor:
    """Softmax over the last dimension, in place; (..., C) -> (..., C).

    Written out because ``Tensor.softmax`` over a short last dimension (C = 10) is several
    times slower on CPU than these three element-wise passes.
    """
    e = logits.sub_(logits.amax(dim=-1, keepdim=True)).exp_()
    return e.div_(e.sum(dim=-1, keepdim=True))


def train_linear_heads(
    features: Tensor,
    labels: Tensor,
    *,
    num_classes: int,
    learning_rates: Sequence[float],
    epochs: int = 100,
    batch_size: int = 256,
    weight_decay: float = 0.0,
    momentum: float = 0.9,
    seed: int = 0,
) -> tuple[Tensor, Tensor]:
    """Train one softmax linear head per learning rate, all in one pass over the data.

    Every head sees the same shuffled mini-batches (the last one may be smaller) and
    follows ``torch.optim.SGD(lr, momentum, weight_decay)`` exactly, with the learning rate
    ``lr * 0.5 * (1 + cos(pi * t / T))`` at step t of T. Weight decay applies to the
    weights only, not the biases. Heads start at zero (the problem is convex).

    Args:
        features: (N, d) float on the training device (standardise them first).
        labels: (N,) int64 on the same device, in [0, num_classes).

    Returns:
        weight (L, C, d) and bias (L, C), L = len(learning_rates), as ``nn.Linear`` stores
        them.
    """
    n, d = features.shape
    n_heads, c = len(learning_rates), num_classes
    dev = features.device
    weight = torch.zeros(d, n_heads * c, device=dev)  # columns: head-major, then class
    bias = torch.zeros(n_heads * c, device=dev)
    buf_w, buf_b = torch.zeros_like(weight), torch.zeros_like(bias)
    head_lr = torch.tensor(list(learning_rates), device=dev).repeat_interleave(c)  # (L*C,)
    steps_per_epoch = math.ceil(n / batch_size)
    total = epochs * steps_per_epoch
    gen = torch.Generator().manual_seed(seed)
    step = 0
    for _ in range(epochs):
        perm = torch.randperm(n, generator=gen).to(dev)
        for start in range(0, n, batch_size):
            idx = perm[start : start + batch_size]
            x, y = features.index_select(0, idx), labels.index_select(0, idx)
            b = x.shape[0]
            prob = _softmax(torch.addmm(bias, x, weight).view(b, n_heads, c))
            # d(mean CE)/d(logits) = (softmax - onehot) / B, for every head at once.
            grad = prob.sub_(F.one_hot(y, c).unsqueeze(1)).view(b, n_heads * c).div_(b)
            grad_w = x.T @ grad  # (d, L*C)
            if weight_decay:
                grad_w.add_(weight, alpha=weight_decay)
            buf_w.mul_(momentum).add_(grad_w)
            buf_b.mul_(momentum).add_(grad.sum(dim=0))
            lr = head_lr * (0.5 * (1.0 + math.cos(math.pi * step / total)))
            weight.addcmul_(buf_w, lr, value=-1.0)
            bias.addcmul_(buf_b, lr, value=-1.0)
            step += 1
    return weight.view(d, n_heads, c).permute(1, 2, 0).contiguous(), bias.view(n_heads, c)


def linear_probe(
    train_features: Tensor,
    train_labels: Tensor,
    test_features: Tensor,
    test_labels: Tensor,
    *,
    num_classes: int,
    epochs: int = 100,
    batch_size: int = 256,
    learning_rates: Sequence[float] = DEFAULT_LEARNING_RATES,
    weight_decay: float = 0.0,
    val_fraction: float = 0.1,
    seed: int = 0,
    device: str | torch.device = "cpu",
) -> LinearProbeResult:
    """Linear evaluation of frozen features: train on ``train_*``, report on ``test_*``.

    Args:
        train_features: (N, d) frozen features; ``train_labels``: (N,).
        test_features: (M, d); ``test_labels``: (M,).
        num_classes: C.
        epochs, batch_size, weight_decay: the SGD run of every head.
        learning_rates: the grid; one head per value, trained together.
        val_fraction: fraction of each class held out to pick the learning rate. 0 uses
            all training features, and then the grid must hold a single value.
        seed: seeds the split and the batch order.
        device: where the features are standardised and the heads trained.

    Returns:
        :class:`LinearProbeResult` with the test top-1/top-5 of the selected head.
    """
    check_features_labels(train_features, train_labels, num_classes, "train_features")
    check_features_labels(test_features, test_labels, num_classes, "test_features")
    if test_features.shape[1] != train_features.shape[1]:
        raise ValueError(
            f"test_features have d={test_features.shape[1]} but train_features have "
            f"d={train_features.shape[1]}; both must come from the same encoder."
        )
    lrs = [float(lr) for lr in learning_rates]
    if not lrs or min(lrs) <= 0:
        raise ValueError(f"learning_rates must be a non-empty list of values > 0, got {lrs}.")
    if epochs < 1 or batch_size < 1:
        raise ValueError(f"epochs and batch_size must be >= 1, got {epochs} and {batch_size}.")
    if weight_decay < 0:
        raise ValueError(f"weight_decay must be >= 0, got {weight_decay}.")
    train_idx, val_idx = stratified_split(train_labels, val_fraction, seed)
    if len(lrs) > 1 and val_idx.numel() == 0:
        raise ValueError(
            f"Choosing among {len(lrs)} learning rates needs a validation split, but "
            f"val_fraction={val_fraction} leaves none; raise val_fraction or pass one rate."
        )
    dev = torch.device(device)
    x_train = train_features[train_idx].to(dev, torch.float32)
    x_val = train_features[val_idx].to(dev, torch.float32)
    x_test = test_features.to(dev, torch.float32)
    x_train, x_val, x_test = _standardize(x_train, x_val, x_test)
    y_train = train_labels[train_idx].to(dev, torch.long)
    weight, bias = train_linear_heads(
        x_train,
        y_train,
        num_classes=num_classes,
        learning_rates=lrs,
        epochs=epochs,
        batch_size=batch_size,
        weight_decay=weight_decay,
        seed=seed,
    )
    val_top1: dict[float, float] = {}
    best = 0
    if val_idx.numel() > 0:
        y_val = train_labels[val_idx].to(dev, torch.long)
        pred = torch.einsum("nd,lcd->nlc", x_val, weight).add_(bias).argmax(dim=-1)  # (Nv, L)
        acc = (pred == y_val.unsqueeze(1)).float().mean(dim=0).mul_(100.0)
        val_top1 = {lr: a.item() for lr, a in zip(lrs, acc, strict=True)}
        best = int(acc.argmax())  # the first of equal heads: the smallest rate if sorted
    scores = x_test @ weight[best].T + bias[best]
    test = topk_accuracy(scores, test_labels.to(dev), (1, 5))
    return LinearProbeResult(
        top1=test[1],
        top5=test[5],
        best_lr=lrs[best],
        val_top1=val_top1,
        num_train=int(train_idx.numel()),
        num_val=int(val_idx.numel()),
    )
