"""Block geometry on a patch grid: shape from area and aspect ratio, flat indices.

Shared by the per-image reference and the vectorised sampler, which must agree exactly
(same float64 operations in the same order).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor


def block_shape(area: float, aspect: float, height: int, width: int) -> tuple[int, int]:
    """Block ``(h, w)`` in patches of ``area`` patches and ``aspect = h / w`` on a grid.

    ``h = round(sqrt(area * aspect))``, ``w = round(sqrt(area / aspect))`` (half to even).
    A side longer than the grid is cut to the grid and the other side recomputed as
    ``round(area / side)`` to keep the area (the aspect ratio then leaves its range: the grid
    cannot hold that shape); finally both are clipped to ``[1, H]`` x ``[1, W]``.
    """
    h, w = round(math.sqrt(area * aspect)), round(math.sqrt(area / aspect))
    if h > height:
        h, w = height, round(area / height)
    if w > width:
        h, w = round(area / width), width
    return min(max(h, 1), height), min(max(w, 1), width)


def block_shape_batch(
    area: Tensor, aspect: Tensor, height: int, width: int
) -> tuple[Tensor, Tensor]:
    """``block_shape`` elementwise over float64 tensors; returns long tensors (h, w)."""
    h, w = torch.sqrt(area * aspect).round(), torch.sqrt(area / aspect).round()
    over = h > height
    h, w = torch.where(over, float(height), h), torch.where(over, (area / height).round(), w)
    over = w > width
    h, w = torch.where(over, (area / width).round(), h), torch.where(over, float(width), w)
    return h.clamp(1, height).long(), w.clamp(1, width).long()


def block_indices(top: int, left: int, height: int, width: int, grid_width: int) -> Tensor:
    """Sorted flat row-major indices (height * width,) of a rectangle of patches."""
    rows = torch.arange(top, top + height).unsqueeze(1)
    cols = torch.arange(left, left + width).unsqueeze(0)
    return (rows * grid_width + cols).flatten()
