"""BatchNorm statistics re-estimated at the test resolution, from unlabelled images.

A SimCLR encoder's BN running statistics are averages over its *training* inputs:
augmented random-resized crops at the training side. The recipes train below the test size
on purpose (FixRes: Touvron et al., "Fixing the train-test resolution discrepancy",
NeurIPS 2019), so at test time the statistics no longer match what the layers see: clean
whole images at another side. FixRes fixes that by fine-tuning at the test resolution; the
label-free part of that fix is to re-estimate the BN statistics on clean images at the test
side ("precise BN": Wu & Johnson, "Rethinking 'Batch' in BatchNorm", 2021). No weight
changes and no label is read, so the representation stays self-supervised; only the
normalisation buffers move.

The pass itself is torch's :func:`torch.optim.swa_utils.update_bn` (reset, cumulative
average with ``momentum=None``, forward in training mode); this module picks the images,
feeds them as the evaluation does (:func:`~selfsup.eval.features.test_view`) and restores
every submodule's train/eval flag afterwards.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn
from torch.optim.swa_utils import update_bn

from selfsup.eval.features import check_images, test_view


def batchnorm_layers(module: nn.Module) -> list[nn.Module]:
    """The BatchNorm layers (1-D, 2-D, 3-D, synchronised) of ``module``."""
    return [m for m in module.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]


def recalibrate_batchnorm(
    encoder: nn.Module,
    images: Tensor,
    *,
    num_images: int,
    image_size: int | None = None,
    batch_size: int = 512,
    device: str | torch.device = "cpu",
    seed: int = 0,
) -> int:
    """Re-estimate the running mean and variance of every BN layer of ``encoder`` on
    ``num_images`` images of ``images`` at the test side; returns how many layers changed.

    Args:
        encoder: on ``device``; changed in place (its BN buffers only).
        images: (N, 3, H, W) uint8, unlabelled (the train split: never the test split,
            whose statistics would leak into the score).
        num_images: how many images n, at most N, drawn without replacement by ``seed``.
        image_size: the test side (as in :func:`~selfsup.eval.features.extract_features`).
        batch_size: at most this many images per forward pass. The n images go in
            b = ceil(n / batch_size) batches of exactly n // b images (the last n mod b
            drawn images are left out), so the running mean is the exact mean over the
            images used and the running variance the average of the batches' unbiased
            variances (``momentum=None``: a cumulative average over equal batches).

    A model without BN layers (a ViT) is left untouched and 0 is returned.
    """
    check_images(images)
    if isinstance(num_images, bool) or not isinstance(num_images, int) or num_images < 2:
        raise ValueError(
            f"num_images must be an int >= 2 (BatchNorm needs a batch), got {num_images!r}."
        )
    if batch_size < 2:
        raise ValueError(f"batch_size must be >= 2 for BatchNorm statistics, got {batch_size}.")
    layers = batchnorm_layers(encoder)
    if not layers:
        return 0
    device = torch.device(device)
    n = min(num_images, images.shape[0])
    generator = torch.Generator().manual_seed(seed)
    index = torch.randperm(images.shape[0], generator=generator)[:n]
    num_batches = math.ceil(n / batch_size)
    chunks = index[: n // num_batches * num_batches].chunk(num_batches)
    modes = [(m, m.training) for m in encoder.modules()]
    try:
        update_bn((test_view(images[c], device, image_size) for c in chunks), encoder)
    finally:
        for module, was_training in modes:  # update_bn sets one flag for the whole tree
            module.training = was_training
    return len(layers)
