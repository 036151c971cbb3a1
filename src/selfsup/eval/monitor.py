"""kNN accuracy during pre-training, as a periodic engine callback.

The engine calls ``monitor(step, method)`` every ``monitor.every_steps`` optimiser steps
and logs the returned scalars. The monitor reads ``method.eval_encoder()``, extracts
features of fixed train and test images (no augmentation, eval mode) and scores the
test images with the weighted cosine kNN of :mod:`selfsup.eval.knn` (k = 200, T = 0.1).
It does nothing distributed: each process that calls it computes the same numbers, so an
engine calls it on the main process only.
"""

from __future__ import annotations

from typing import Protocol

import torch
from torch import Tensor, nn

from selfsup.eval.features import Precision, check_features_labels, check_images, extract_features
from selfsup.eval.knn import knn_evaluate


class HasEvalEncoder(Protocol):
    """What the monitor needs of a method (see ``selfsup.engine.protocol.Method``)."""

    def eval_encoder(self) -> nn.Module: ...


def _subsample(n: int, limit: int | None, gen: torch.Generator) -> Tensor | None:
    """Sorted indices of ``limit`` random samples out of n, or None to keep all."""
    if limit is None or limit >= n:
        return None
    if limit < 1:
        raise ValueError(f"max_train / max_test must be >= 1 or None, got {limit}.")
    return torch.randperm(n, generator=gen)[:limit].sort().values


class KNNMonitor:
    """Periodic kNN evaluation of the method's evaluation encoder.

    Args:
        train_images, test_images: (N, 3, H, W) uint8 on the CPU (moved per batch).
        train_labels, test_labels: (N,) integer labels in [0, num_classes).
        num_classes: C.
        every_steps: how often the engine calls the monitor, in optimiser steps.
        k, temperature: the kNN classifier (InstDisc defaults).
        batch_size, image_size, precision: passed to :func:`extract_features`.
        max_train, max_test: keep a random subset of this many images (chosen once with
            ``seed``) to bound the cost on a CPU; None keeps all.
    """

    def __init__(
        self,
        train_images: Tensor,
        train_labels: Tensor,
        test_images: Tensor,
        test_labels: Tensor,
        *,
        num_classes: int,
        every_steps: int,
        k: int = 200,
        temperature: float = 0.1,
        batch_size: int = 512,
        image_size: int | None = None,
        max_train: int | None = None,
        max_test: int | None = None,
        precision: Precision = "fp32",
        seed: int = 0,
    ) -> None:
        for name, images, labels in (
            ("train", train_images, train_labels),
            ("test", test_images, test_labels),
        ):
            check_images(images, f"{name}_images")
            # Labels are checked with placeholder features of the right length.
            check_features_labels(
                torch.empty(images.shape[0], 1), labels, num_classes, f"{name}_images"
            )
        if every_steps < 1:
            raise ValueError(f"every_steps must be >= 1, got {every_steps}.")
        if k < 1 or not temperature > 0:
            raise ValueError(f"k must be >= 1 and temperature > 0, got {k} and {temperature}.")
        gen = torch.Generator().manual_seed(seed)
        train_idx = _subsample(train_images.shape[0], max_train, gen)
        test_idx = _subsample(test_images.shape[0], max_test, gen)
        self.train_images = train_images if train_idx is None else train_images[train_idx]
        self.train_labels = train_labels if train_idx is None else train_labels[train_idx]
        self.test_images = test_images if test_idx is None else test_images[test_idx]
        self.test_labels = test_labels if test_idx is None else test_labels[test_idx]
        self.num_classes = num_classes
        self.every_steps = every_steps
        self.k = k
        self.temperature = temperature
        self.batch_size = batch_size
        self.image_size = image_size
        self.precision: Precision = precision

    def __call__(self, step: int, method: HasEvalEncoder) -> dict[str, float]:
        """kNN top-1/top-5 (percent) of the current encoder: ``{"knn_top1", "knn_top5"}``.

        Runs on the device of the encoder's parameters (CPU if it has none).
        """
        encoder = method.eval_encoder()
        param = next(encoder.parameters(), None)
        device = param.device if param is not None else torch.device("cpu")
        f_train, f_test = (
            extract_features(
                encoder,
                images,
                batch_size=self.batch_size,
                device=device,
                image_size=self.image_size,
                precision=self.precision,
            )
            for images in (self.train_images, self.test_images)
        )
        result = knn_evaluate(
            f_train.to(device),
            self.train_labels,
            f_test.to(device),
            self.test_labels,
            num_classes=self.num_classes,
            k=self.k,
            temperature=self.temperature,
        )
        return {"knn_top1": result["top1"], "knn_top5": result["top5"]}
