"""Frozen features of an encoder, and the checks and metric shared by the probes.

Evaluation protocol (SimCLR paper, Sec. 4 "Linear evaluation protocol"): the encoder f is
frozen and its representation h is read without augmentation. Images reach the encoder as
floats in [0, 1] with no mean/std normalisation, as in the official SimCLR code (see
SPEC.md, "The family T", item 4).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

# Precision is re-exported: the evaluators' signatures name it.
from selfsup.engine.runtime import Precision as Precision
from selfsup.engine.runtime import resolve_precision


def check_images(images: Tensor, name: str = "images") -> None:
    """Raise ``ValueError`` unless ``images`` is a non-empty (N, 3, H, W) uint8 tensor."""
    if not isinstance(images, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(images).__name__}.")
    if images.dtype != torch.uint8:
        raise ValueError(
            f"{name} must be uint8 in [0, 255] (got {images.dtype}); pass the raw images, "
            "the conversion to [0, 1] happens per batch on the device."
        )
    if images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"{name} must have shape (N, 3, H, W), got {tuple(images.shape)}.")
    if images.shape[0] == 0:
        raise ValueError(f"{name} is empty: need at least one image.")


def check_features_labels(
    features: Tensor, labels: Tensor, num_classes: int, name: str = "features"
) -> None:
    """Raise ``ValueError`` unless ``features`` (N, d) and ``labels`` (N,) fit together.

    Labels must be integers in ``[0, num_classes)``; N and d must be positive.
    """
    if num_classes < 1:
        raise ValueError(f"num_classes must be >= 1, got {num_classes}.")
    if features.ndim != 2:
        raise ValueError(f"{name} must have shape (N, d), got {tuple(features.shape)}.")
    if features.shape[0] == 0 or features.shape[1] == 0:
        raise ValueError(f"{name} is empty (shape {tuple(features.shape)}): need N, d >= 1.")
    if not features.is_floating_point():
        raise ValueError(f"{name} must be a floating-point tensor, got {features.dtype}.")
    if labels.ndim != 1:
        raise ValueError(f"labels for {name} must have shape (N,), got {tuple(labels.shape)}.")
    if labels.dtype.is_floating_point or labels.dtype.is_complex or labels.dtype == torch.bool:
        raise ValueError(f"labels for {name} must be an integer tensor, got {labels.dtype}.")
    if labels.shape[0] != features.shape[0]:
        raise ValueError(
            f"{name} has {features.shape[0]} rows but its labels have {labels.shape[0]}; "
            "they must be the same length."
        )
    lo, hi = int(labels.min()), int(labels.max())
    if lo < 0 or hi >= num_classes:
        raise ValueError(
            f"labels for {name} must lie in [0, {num_classes}) (num_classes={num_classes}), "
            f"got values in [{lo}, {hi}]."
        )


def topk_accuracy(scores: Tensor, labels: Tensor, ks: tuple[int, ...] = (1, 5)) -> dict[int, float]:
    """Top-k accuracy in percent for each k in ``ks``.

    ``scores``: (M, C), larger is more likely; ``labels``: (M,). A k larger than C counts
    as C (every prediction is then correct). Ties among scores are broken by ``topk``.
    """
    if scores.ndim != 2 or labels.ndim != 1 or scores.shape[0] != labels.shape[0]:
        raise ValueError(
            f"scores (M, C) and labels (M,) must agree, got {tuple(scores.shape)} and "
            f"{tuple(labels.shape)}."
        )
    if scores.shape[0] == 0:
        raise ValueError("Cannot compute accuracy on zero samples.")
    k_max = min(max(ks), scores.shape[1])
    top = scores.topk(k_max, dim=1).indices  # (M, k_max)
    hit = top == labels.to(top.device).unsqueeze(1)  # at most one True per row
    return {k: 100.0 * hit[:, : min(k, k_max)].any(dim=1).float().mean().item() for k in ks}


def _pool(out: object, batch: int) -> Tensor:
    """Encoder output -> (B, D): (B, D) as is; (B, N_tokens, D) averaged over tokens.

    Token averaging is how I-JEPA's linear probe reads a ViT without a class token
    (SPEC.md, I-JEPA "Evaluation": average-pooled patch tokens).
    """
    if not isinstance(out, Tensor):
        raise ValueError(f"The encoder must return a Tensor, got {type(out).__name__}.")
    if out.shape[0] != batch or out.ndim not in (2, 3):
        raise ValueError(
            f"The encoder must return (B, D) features or (B, N_tokens, D) tokens for a batch "
            f"of B={batch}, got shape {tuple(out.shape)}; flatten or pool it in the encoder."
        )
    return out.mean(dim=1) if out.ndim == 3 else out


def test_view(images: Tensor, device: torch.device, image_size: int | None) -> Tensor:
    """A uint8 batch (B, 3, H, W) as the encoder sees it at test time: float in [0, 1] on
    ``device``, resized to (image_size, image_size) (bilinear, antialiased) when given and
    different from (H, W); no augmentation, no mean/std normalisation."""
    x = images.to(device, non_blocking=True).float().div_(255.0)
    if image_size is not None and tuple(x.shape[-2:]) != (image_size, image_size):
        x = F.interpolate(
            x, size=(image_size, image_size), mode="bilinear", align_corners=False, antialias=True
        )
    return x


def extract_features(
    encoder: nn.Module,
    images: Tensor,
    *,
    batch_size: int = 512,
    device: str | torch.device = "cpu",
    image_size: int | None = None,
    precision: Precision = "fp32",
) -> Tensor:
    """Frozen features of ``images``, without augmentation.

    Args:
        encoder: maps float images (B, 3, S, S) in [0, 1] to (B, D), or to patch tokens
            (B, N_tokens, D), which are average-pooled over tokens to (B, D). It must
            already be on ``device``.
        images: (N, 3, H, W) uint8, normally on the CPU; moved to ``device`` one batch at a
            time and converted there to float in [0, 1].
        batch_size: images per forward pass.
        device: where the forward passes run.
        image_size: if given and different from (H, W), each batch is resized to
            (image_size, image_size) with bilinear interpolation and antialiasing.
        precision: "fp32", "bf16" to run the encoder under bfloat16 autocast, or "auto"
            (bf16 where ``device`` computes it natively:
            :func:`~selfsup.engine.runtime.resolve_precision`).

    Returns:
        (N, D) float32 features on the CPU.

    The encoder runs in eval mode (BatchNorm uses its running statistics) under
    ``torch.inference_mode``; every submodule's previous train/eval flag is restored
    afterwards, so a frozen-BN submodule inside a training model keeps its own mode.
    """
    check_images(images)
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}.")
    if image_size is not None and image_size < 1:
        raise ValueError(f"image_size must be >= 1 or None, got {image_size}.")
    device = torch.device(device)
    precision = resolve_precision(precision, device)
    n = images.shape[0]
    modes = [(m, m.training) for m in encoder.modules()]
    encoder.eval()
    chunks: list[Tensor] = []
    try:
        with (
            torch.inference_mode(),
            torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16"),
        ):
            for start in range(0, n, batch_size):
                x = test_view(images[start : start + batch_size], device, image_size)
                chunks.append(_pool(encoder(x), x.shape[0]).float())
    finally:
        # Restore flag by flag rather than encoder.train(mode): submodules may differ.
        for module, was_training in modes:
            module.training = was_training
    # One transfer at the end: a per-batch .cpu() would synchronise the device each batch.
    return torch.cat(chunks).cpu()
