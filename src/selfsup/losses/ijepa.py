"""The I-JEPA objective (Assran et al., CVPR 2023, Eq. 1): distance between predicted and
target patch representations, averaged over the M target blocks and their patches.

Eq. 1 writes ``(1/M) sum_i sum_{j in B_i} ||s_hat_j - s_j||_2^2``; the official code
(``src/train.py``: ``F.smooth_l1_loss(z, h)`` per block, then the mean over blocks) uses
smooth L1 (beta = 1) and averages over the feature dimension too. Both distances here are
*per-element means* over the D features of a patch, so the two choices differ only in the
distance, not in their scale with D or T, and share learning rates:

* ``"smooth_l1"``: smooth L1 (Huber, beta = 1) averaged over the D features (the official);
* ``"l2"``: the squared L2 distance of Eq. 1 divided by D (a constant factor: same
  minimiser and gradient direction; keeps the loss scale independent of the encoder width).

With rectangular blocks the mean over all (image, block, patch) entries equals the
official mean-over-blocks of per-block means. With padded blocks (``valid``), every real
patch weighs the same.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

LossKind = Literal["smooth_l1", "l2"]
LOSS_KINDS: tuple[str, ...] = ("smooth_l1", "l2")


def ijepa_loss(
    prediction: Tensor,
    target: Tensor,
    kind: LossKind | str = "smooth_l1",
    valid: Tensor | None = None,
) -> Tensor:
    """The I-JEPA loss.

    Args:
        prediction: (B, M, T, D) predicted representations of the target patches.
        target: (B, M, T, D) target-encoder representations (layer-normalised, no grad).
        kind: ``"smooth_l1"`` (official code) or ``"l2"`` (the paper's Eq. 1).
        valid: optional (B, M, T) bool, False on padded target entries (excluded).

    Returns:
        The scalar loss, in float32 (the distance is computed in float32 under bf16
        autocast: differences of unit-scale targets lose most of their bits in bf16).
    """
    if prediction.shape != target.shape or prediction.ndim != 4:
        raise ValueError(
            "prediction and target must both be (B, M, T, D); got "
            f"{tuple(prediction.shape)} and {tuple(target.shape)}."
        )
    if kind not in LOSS_KINDS:
        raise ValueError(f"Unknown I-JEPA loss {kind!r}; choose one of {', '.join(LOSS_KINDS)}.")
    p, t = prediction.float(), target.float()
    if kind == "smooth_l1":
        per_patch = F.smooth_l1_loss(p, t, reduction="none", beta=1.0).mean(dim=-1)
    else:
        per_patch = (p - t).pow(2).mean(dim=-1)
    if valid is None:
        return per_patch.mean()
    if valid.shape != per_patch.shape or valid.dtype != torch.bool:
        raise ValueError(
            f"valid must be a bool tensor of shape {tuple(per_patch.shape)} (B, M, T); got "
            f"{valid.dtype} {tuple(valid.shape)}."
        )
    count = valid.sum()
    if int(count) == 0:
        raise ValueError("valid marks no target patch as real; nothing to predict.")
    return (per_patch * valid).sum() / count
