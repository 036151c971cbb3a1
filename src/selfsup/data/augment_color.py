"""Batched colour operators with explicit per-image parameters (no randomness here).

The colour half of :mod:`selfsup.data.augment_ops` (same conventions: a ``(B, 3, H, W)``
float batch in [0, 1], one parameter per image, no Python loop over images): brightness,
contrast, saturation, hue, their per-image-ordered composition (SimCLR's colour jitter,
SPEC step 2) and grayscale (colour drop). Each matches torchvision's functional op applied
image by image with the same parameter (``tests/test_augment.py``).
"""

from __future__ import annotations

from functools import partial

import torch
from torch import Tensor

from selfsup.data.augment_ops import apply_where, per_image, rgb_to_grayscale

# Order of the four colour-jitter operators in a (B, 4) factor tensor.
BRIGHTNESS, CONTRAST, SATURATION, HUE = 0, 1, 2, 3


def _blend(images: Tensor, reference: Tensor, factors: Tensor) -> Tensor:
    """clamp(f * x + (1 - f) * ref, 0, 1), torchvision's ``_blend``; f = 1 is exactly x.

    ``reference`` is (B, 1, H, W) or (B, 1, 1, 1) and ``factors`` (B, 1, 1, 1); two plain
    broadcasts (``addcmul`` with three broadcast operands was 10x slower on CPU).
    """
    return (images * factors).add_(reference * (1.0 - factors)).clamp_(0.0, 1.0)


def grayscale(images: Tensor) -> Tensor:
    """Colour drop: the luma copied to the three channels, (B, 3, H, W)."""
    return rgb_to_grayscale(images).expand_as(images).contiguous()


def adjust_brightness(images: Tensor, factors: Tensor) -> Tensor:
    """Multiply image i by ``factors[i]`` and clamp to [0, 1]."""
    return _blend(images, torch.zeros_like(images[:, :1]), per_image(factors, images, "factors"))


def adjust_contrast(images: Tensor, factors: Tensor) -> Tensor:
    """Blend image i with the mean of its grayscale image by ``factors[i]``; clamp."""
    mean = rgb_to_grayscale(images).mean(dim=(1, 2, 3), keepdim=True)
    return _blend(images, mean, per_image(factors, images, "factors"))


def adjust_saturation(images: Tensor, factors: Tensor) -> Tensor:
    """Blend image i with its grayscale image by ``factors[i]``; clamp."""
    return _blend(images, rgb_to_grayscale(images), per_image(factors, images, "factors"))


def adjust_hue(images: Tensor, shifts: Tensor) -> Tensor:
    """Rotate the HSV hue of image i by ``shifts[i]`` (a fraction of a turn, in [-0.5, 0.5]).

    Same result as torchvision's RGB -> HSV -> RGB round trip (to float rounding), written
    without the HSV image: value = max and chroma = max - min are kept, and each channel is
    ``max - chroma * clamp(min(k, 4 - k), 0, 1)`` with ``k = (n + 6 h) mod 6``, n = 5, 3, 1
    for R, G, B (the closed form of HSV -> RGB). Plain arithmetic on the channel planes:
    ``torch.where``, ``aminmax`` over channels and ``remainder`` were several times slower.
    """
    shift = per_image(shifts, images, "shifts").view(-1, 1, 1)
    r, g, b = images.unbind(dim=1)
    maxc = torch.maximum(torch.maximum(r, g), b)
    chroma = maxc - torch.minimum(torch.minimum(r, g), b)
    # Grey pixels (chroma 0) have every difference 0 below, so dividing by 1 gives hue 0.
    inverse = (chroma + (chroma == 0)).reciprocal_()
    rc, gc, bc = (maxc - r).mul_(inverse), (maxc - g).mul_(inverse), (maxc - b).mul_(inverse)
    # Hue in sextants, in [-1, 5): which channel holds the max decides the sector (red
    # first, then green, as torchvision and Pillow).
    is_r = maxc == r
    is_g = (maxc == g) & ~is_r
    is_b = ~(is_r | is_g)
    h6 = (
        (bc - gc)
        .mul_(is_r)
        .add_((rc - bc).add_(2.0).mul_(is_g))
        .add_((gc - rc).add_(4.0).mul_(is_b))
    )
    h6 = h6.add_(shift * 6.0)
    channels = []
    for n in (5.0, 3.0, 1.0):
        k = h6 + n
        k = k.sub_(torch.floor(k * (1.0 / 6.0)).mul_(6.0))  # k mod 6
        ramp = torch.minimum(k, 4.0 - k).clamp_(0.0, 1.0)
        channels.append(maxc - chroma * ramp)
    return torch.stack(channels, dim=1).clamp_(0.0, 1.0)


def color_jitter(images: Tensor, factors: Tensor, order: Tensor) -> Tensor:
    """Brightness, contrast, saturation and hue, in a per-image order.

    Args:
        images: (B, 3, H, W) in [0, 1].
        factors: (B, 4): brightness, contrast, saturation factors and hue shift per image
            (1, 1, 1, 0 leaves an image unchanged, exactly).
        order: (B, 4) long, a permutation of 0..3 (BRIGHTNESS, CONTRAST, SATURATION, HUE)
            per image: ``order[i, t]`` is the operator applied t-th to image i.

    The three blend operators differ only in their reference image (0, the grey mean, the
    grey image), so each of the four slots runs ONE batched blend whose per-image
    reference and factor follow that image's operator; hue (the costly one) runs only on
    the images whose operator in that slot is hue. Every image gets each operator once.
    """
    if factors.shape != (images.shape[0], 4) or order.shape != (images.shape[0], 4):
        raise ValueError(
            f"factors and order must have shape (B, 4) = ({images.shape[0]}, 4); got "
            f"{tuple(factors.shape)} and {tuple(order.shape)}."
        )
    factors = factors.to(device=images.device, dtype=torch.float32)
    order = order.to(device=images.device, dtype=torch.long)
    # One copy, then everything in place: fresh large tensors cost page faults on CPU.
    x = images.clone()
    for slot in range(4):
        op = order[:, slot]
        value = factors.gather(1, op[:, None]).squeeze(1)
        is_hue = op == HUE
        blend = torch.where(is_hue, torch.ones_like(value), value).view(-1, 1, 1, 1)
        # reference * (1 - f): the grey image (saturation), its mean (contrast) or 0.
        reference = rgb_to_grayscale(x)
        mean = reference.mean(dim=(1, 2, 3), keepdim=True)
        reference.mul_((op == SATURATION).view(-1, 1, 1, 1) * (1.0 - blend))
        reference.add_(mean.mul_((op == CONTRAST).view(-1, 1, 1, 1) * (1.0 - blend)))
        x.mul_(blend).add_(reference).clamp_(0.0, 1.0)  # == _blend(x, ref, blend)
        x = apply_where(x, is_hue & (value != 0), partial(_hue_of, shifts=value), inplace=True)
    return x


def _hue_of(images: Tensor, index: Tensor | None, shifts: Tensor) -> Tensor:
    return adjust_hue(images, shifts if index is None else shifts[index])
