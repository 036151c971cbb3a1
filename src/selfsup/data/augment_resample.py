"""Antialiased resized crops of a batch, each image with its own box, as two matrix products.

``selfsup.data.augment_ops.resized_crop`` samples each box with ``grid_sample``: bilinear
taps at the output pixels' centres, which is exact when the crop is enlarged but aliases
when it is shrunk (a 32 px box to 20 px skips source pixels). Pillow, and so every
``torchvision.transforms`` pipeline run on PIL images (lightly's ``SimCLRTransform``
among them), and ``torch.nn.functional.interpolate(..., antialias=True)`` instead widen
the triangle filter by the shrink factor. ``interpolate`` takes one output size and one
scale per call, so a batch of boxes of different sizes would need a call per image; the
resampling is linear and separable, though, so here each image's rows and columns get
their own weight matrix and the whole batch is two batched products:

    out[b, c] = Wy[b] @ images[b, c] @ Wx[b]^T,   Wy[b]: (S, H),  Wx[b]: (S, W).

The weights are torch's (and Pillow's) antialiased bilinear ones, computed in the box's
coordinates: output pixel i of a box starting at ``s`` of length ``L`` is centred at
``s + (i + 0.5) L / S``; source pixel p (centre p + 0.5) weighs
``max(0, 1 - |p + 0.5 - centre| / max(L / S, 1))``, only pixels inside the box count, and
each row is normalised to sum 1. When the box is enlarged (L <= S) this is plain bilinear
interpolation, the same as the ``grid_sample`` path.
"""

from __future__ import annotations

import torch
from torch import Tensor


def resize_weights(
    start: Tensor, length: Tensor, out_size: int, in_size: int, flip: Tensor | None = None
) -> Tensor:
    """Per-image 1-D resampling matrices of an antialiased bilinear resize.

    Args:
        start: (B,) first pixel of each box along this axis (integers, any dtype).
        length: (B,) box length in pixels, >= 1, with ``start + length <= in_size``.
        out_size: output length S.
        in_size: the images' length along this axis.
        flip: optional (B,) bool: mirror image b's output along this axis.

    Returns (B, S, in_size) float32 weights; every row sums to 1 and is zero outside the box.
    """
    device = start.device
    start = start.to(torch.float32)[:, None, None]
    length = length.to(torch.float32)[:, None, None]
    scale = length / out_size
    support = scale.clamp(min=1.0)  # the triangle widens by the shrink factor
    outputs = torch.arange(out_size, device=device, dtype=torch.float32)[None, :, None]
    centres = start + (outputs + 0.5) * scale  # (B, S, 1)
    pixels = torch.arange(in_size, device=device, dtype=torch.float32)[None, None, :]
    weights = (1.0 - (pixels + 0.5 - centres).abs() / support).clamp_(min=0.0)
    weights = weights * ((pixels >= start) & (pixels < start + length))
    # The pixel holding each centre is inside the box and within 0.5 of it: sums are > 0.
    weights = weights / weights.sum(dim=2, keepdim=True)
    if flip is not None:
        weights = torch.where(flip.to(device).bool()[:, None, None], weights.flip(1), weights)
    return weights


def resized_crop_antialiased(
    images: Tensor, boxes: Tensor, size: int, *, flip: Tensor | None = None
) -> Tensor:
    """Crop box b of image b and resize it to (size, size), antialiased bilinear.

    Args:
        images: (B, C, H, W) float.
        boxes: (B, 4) as (top, left, height, width) in pixels, inside the image.
        size: output side S.
        flip: optional (B,) bool, mirror image b's output left-right.

    Returns (B, C, S, S), equal (to float rounding) to torchvision's
    ``resized_crop(image, top, left, height, width, [S, S], antialias=True)`` image by
    image, then mirrored where ``flip``. The values stay in the inputs' range (the weights
    are non-negative and sum to 1).
    """
    if boxes.shape != (images.shape[0], 4):
        raise ValueError(f"boxes must have shape (B, 4); got {tuple(boxes.shape)}.")
    _, _, height, width = images.shape
    boxes = boxes.to(images.device)
    rows = resize_weights(boxes[:, 0], boxes[:, 2], size, height)  # (B, S, H)
    cols = resize_weights(boxes[:, 1], boxes[:, 3], size, width, flip)  # (B, S, W)
    images = images.to(torch.float32)
    return torch.matmul(torch.matmul(rows[:, None], images), cols[:, None].transpose(-1, -2))
