"""Weighted cosine k-nearest-neighbour classifier on frozen features.

The kNN monitor of InstDisc (Wu et al., "Unsupervised Feature Learning via Non-Parametric
Instance Discrimination", CVPR 2018, Eq. 7 and Sec. 3.4), as used by lightly's
``knn_predict`` and the SimCLR CIFAR-10 anchors in SPEC.md: for a query q, take its k
most cosine-similar training features h_i and score each class c by

    score_c(q) = sum_{i in top-k(q)} exp(cos(q, h_i) / T) * [y_i = c],

with k = 200 and T = 0.1 by default. The scores are the raw sums (no normalisation),
so ``exp(1 / T)`` must fit in float32: T above about 0.012.
"""

from __future__ import annotations

import warnings

import torch
import torch.nn.functional as F
from torch import Tensor

from selfsup.eval.features import check_features_labels, topk_accuracy


def knn_predict(
    train_features: Tensor,
    train_labels: Tensor,
    query_features: Tensor,
    *,
    num_classes: int,
    k: int = 200,
    temperature: float = 0.1,
    chunk_size: int = 256,
) -> Tensor:
    """Class scores of the weighted cosine kNN classifier.

    Args:
        train_features: (N, d) feature bank; need not be normalised (it is L2-normalised
            here). The computation runs on its device.
        train_labels: (N,) integer labels in [0, num_classes).
        query_features: (M, d) features to classify; need not be normalised.
        num_classes: C.
        k: neighbours per query. A k larger than N is clamped to N with a warning.
        temperature: T in exp(sim / T).
        chunk_size: queries per chunk; memory is O(chunk_size * N) for the similarities.

    Returns:
        (M, C) float32 scores on ``train_features.device``; ``argsort(descending=True)``
        ranks the classes as lightly's ``knn_predict`` does.
    """
    check_features_labels(train_features, train_labels, num_classes, "train_features")
    if query_features.ndim != 2 or query_features.shape[0] == 0:
        raise ValueError(
            f"query_features must be a non-empty (M, d) tensor, got {tuple(query_features.shape)}."
        )
    if query_features.shape[1] != train_features.shape[1]:
        raise ValueError(
            f"query_features have d={query_features.shape[1]} but train_features have "
            f"d={train_features.shape[1]}; both must come from the same encoder."
        )
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}.")
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature}.")
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}.")
    n = train_features.shape[0]
    if k > n:
        warnings.warn(f"kNN: k={k} exceeds the {n} training features; using k={n}.", stacklevel=2)
        k = n
    device = train_features.device
    bank = F.normalize(train_features.float(), dim=1)  # (N, d)
    labels = train_labels.to(device=device, dtype=torch.long)
    m = query_features.shape[0]
    scores = torch.zeros(m, num_classes, device=device)
    for start in range(0, m, chunk_size):
        q = F.normalize(query_features[start : start + chunk_size].to(device).float(), dim=1)
        sim = q @ bank.T  # (m_c, N) cosine similarities
        top_sim, top_idx = sim.topk(k, dim=1)  # (m_c, k)
        weights = top_sim.div_(temperature).exp_()
        # Summing one-hot rows weighted by exp(sim/T) == scatter-adding the weights.
        scores[start : start + chunk_size].scatter_add_(1, labels[top_idx], weights)
    return scores


def knn_evaluate(
    train_features: Tensor,
    train_labels: Tensor,
    test_features: Tensor,
    test_labels: Tensor,
    *,
    num_classes: int,
    k: int = 200,
    temperature: float = 0.1,
    chunk_size: int = 256,
) -> dict[str, float]:
    """kNN top-1 and top-5 accuracy (percent) of ``test_features`` against the bank.

    Shapes and arguments as :func:`knn_predict`; ``test_labels``: (M,). Returns
    ``{"top1": ..., "top5": ...}``; with fewer than 5 classes, top-5 is 100.
    """
    check_features_labels(test_features, test_labels, num_classes, "test_features")
    scores = knn_predict(
        train_features,
        train_labels,
        test_features,
        num_classes=num_classes,
        k=k,
        temperature=temperature,
        chunk_size=chunk_size,
    )
    acc = topk_accuracy(scores, test_labels.to(scores.device), (1, 5))
    return {"top1": acc[1], "top5": acc[5]}
