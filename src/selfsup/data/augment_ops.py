"""Batched image operators with explicit per-image parameters (no randomness here).

Every function takes a batch ``(B, 3, H, W)`` of float images in [0, 1] and one parameter
per image (a ``(B,)`` tensor), and runs as a handful of tensor ops on the batch's device:
no Python loop over images. Each one matches the torchvision functional op applied image
by image with the same parameter (``tests/test_augment.py`` checks it); the random
operators of :mod:`selfsup.data.augment_random` draw the parameters and call these. The
colour operators live in :mod:`selfsup.data.augment_color`.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from selfsup.data.augment_resample import resized_crop_antialiased

Interpolation = Literal["bilinear", "bicubic"]

# ITU-R 601-2 luma, the weights of torchvision's rgb_to_grayscale.
_LUMA = (0.2989, 0.587, 0.114)


def to_float_images(images: Tensor) -> Tensor:
    """Check a batch and return it as float32 in [0, 1].

    Args:
        images: (B, 3, H, W), uint8 (divided by 255) or floating point (assumed already
            in [0, 1]; not checked, to avoid a device sync per batch).
    """
    if not isinstance(images, Tensor):
        raise TypeError(f"images must be a torch.Tensor; got {type(images).__name__}.")
    if images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(
            f"images must have shape (B, 3, H, W) (a batch of RGB images, channels first); "
            f"got {tuple(images.shape)}. Add a batch dimension with images[None] or "
            f"permute channels-last input with images.permute(0, 3, 1, 2)."
        )
    if images.dtype == torch.uint8:
        return images.to(torch.float32).div_(255.0)
    if images.is_floating_point():
        return images.to(torch.float32)
    raise ValueError(
        f"images must be uint8 (0..255) or floating point in [0, 1]; got {images.dtype}."
    )


def per_image(values: Tensor, images: Tensor, name: str) -> Tensor:
    """(B,) parameters -> (B, 1, 1, 1) float32 on the images' device."""
    if values.shape != (images.shape[0],):
        raise ValueError(
            f"{name} must have shape (B,) = ({images.shape[0]},); got {tuple(values.shape)}."
        )
    return values.to(device=images.device, dtype=torch.float32).view(-1, 1, 1, 1)


def subset_pays(device: torch.device) -> bool:
    """Whether to run an operator on only the images it changes (CPU), or on all of them.

    On the CPU the work is the cost, so picking the ~20 % of images an operator changes
    saves most of it. On an accelerator, picking them (``nonzero``) makes the host wait for
    the device at every operator, which left the GPU idle between kernels; running the
    operator on the whole batch and keeping its result where selected (``torch.where``)
    never waits, and the device has compute to spare at these sizes.
    """
    return device.type == "cpu"


def apply_where(
    images: Tensor,
    selected: Tensor,
    transform: Callable[[Tensor, Tensor | None], Tensor],
    *,
    inplace: bool = False,
) -> Tensor:
    """``transform`` applied to image i where ``selected[i]``; the others unchanged.

    Args:
        images: (B, C, H, W).
        selected: (B,) bool on the images' device.
        transform: ``transform(subset, index)`` maps (K, C, H, W) images to their
            transformed (K, C, H, W), with ``index`` the (K,) positions of the subset in
            the batch (to pick per-image parameters), or None when the subset is the whole
            batch.
        inplace: write into ``images`` (its values are then those returned).

    Either way each image gets exactly the result of ``transform`` on it alone (the
    operators here are per-image), so CPU and accelerator give the same views.
    """
    if subset_pays(images.device):
        index = selected.nonzero().squeeze(1)
        if index.numel() == 0:
            return images
        out = images if inplace else images.clone()
        return out.index_copy_(0, index, transform(images[index], index))
    kept = torch.where(selected.view(-1, 1, 1, 1), transform(images, None), images)
    return images.copy_(kept) if inplace else kept


def rgb_to_grayscale(images: Tensor) -> Tensor:
    """Luma 0.2989 R + 0.587 G + 0.114 B: (B, 3, H, W) -> (B, 1, H, W)."""
    r, g, b = images.unbind(dim=1)
    return (r * _LUMA[0]).add_(g, alpha=_LUMA[1]).add_(b, alpha=_LUMA[2]).unsqueeze(1)


def hflip(images: Tensor, flip: Tensor) -> Tensor:
    """Mirror image i left-right where ``flip[i]`` (bool, (B,)) is true."""
    mask = per_image(flip, images, "flip").bool()
    return torch.where(mask, images.flip(-1), images)


def resized_crop(
    images: Tensor,
    boxes: Tensor,
    size: int,
    *,
    flip: Tensor | None = None,
    interpolation: Interpolation = "bilinear",
    antialias: bool = False,
) -> Tensor:
    """Crop box i of image i and resize it to (size, size), all in one ``grid_sample``.

    Args:
        images: (B, C, H, W) float.
        boxes: (B, 4) as (top, left, height, width) in pixels (integers, as torchvision's
            RandomResizedCrop draws them).
        size: output side S.
        flip: optional (B,) bool, mirror image i's output (folded into the sampling grid).
        interpolation: "bilinear" or "bicubic".
        antialias: bilinear only: widen the filter where a box is shrunk, as Pillow and
            ``antialias=True`` do (:mod:`selfsup.data.augment_resample`, two batched
            matrix products instead of ``grid_sample``; the same result where a box is
            enlarged).

    Returns (B, C, S, S). Output pixel k samples the source at ``top - 0.5 + (k + 0.5) h/S``
    (half-pixel centres, ``align_corners=False``). Bilinear: the coordinate is clamped to
    the box, which is exactly what ``F.resized_crop(..., antialias=False)`` computes.
    Bicubic: the 4x4 taps may read the pixels just outside the box (inside the image), a
    one-pixel border difference from resize-after-crop. No antialiasing when shrinking,
    like the official SimCLR code's ``tf.image.resize`` (for 32 px CIFAR crops the
    output is never smaller than the crop).

    ``grid_sample`` over a per-image separable grid was measured faster on CPU than
    ``torchvision.ops.roi_align`` (3 ms vs 6 ms for 512x3x32x32, one thread) and, unlike
    it, can clamp to the box, mirror and interpolate bicubically.
    """
    if interpolation not in ("bilinear", "bicubic"):
        raise ValueError(f"interpolation must be 'bilinear' or 'bicubic'; got {interpolation!r}.")
    if antialias:
        if interpolation != "bilinear":
            raise ValueError(
                "antialias=True is implemented for bilinear interpolation only; got "
                f"{interpolation!r}. Use interpolation='bilinear' or antialias=False."
            )
        return resized_crop_antialiased(images, boxes, size, flip=flip)
    if boxes.shape != (images.shape[0], 4):
        raise ValueError(f"boxes must have shape (B, 4); got {tuple(boxes.shape)}.")
    _, _, height, width = images.shape
    boxes = boxes.to(device=images.device, dtype=torch.float32)
    top, left, box_h, box_w = boxes.unbind(dim=1)
    centres = (torch.arange(size, device=images.device, dtype=torch.float32) + 0.5) / size
    ys = top[:, None] - 0.5 + centres[None] * box_h[:, None]  # (B, S)
    xs = left[:, None] - 0.5 + centres[None] * box_w[:, None]
    if interpolation == "bilinear":
        ys = torch.minimum(torch.maximum(ys, top[:, None]), (top + box_h - 1)[:, None])
        xs = torch.minimum(torch.maximum(xs, left[:, None]), (left + box_w - 1)[:, None])
    if flip is not None:
        xs = torch.where(flip.to(images.device).bool()[:, None], xs.flip(1), xs)
    # Pixel coordinates -> grid_sample's [-1, 1] (align_corners=False convention).
    xs = (2.0 * xs + 1.0) / width - 1.0
    ys = (2.0 * ys + 1.0) / height - 1.0
    b = images.shape[0]
    grid = torch.stack(
        (xs[:, None, :].expand(b, size, size), ys[:, :, None].expand(b, size, size)), -1
    )
    out = F.grid_sample(
        images, grid, mode=interpolation, padding_mode="border", align_corners=False
    )
    # Bicubic overshoots near edges; bilinear stays within the inputs' range.
    return out.clamp_(0.0, 1.0) if interpolation == "bicubic" else out


def gaussian_kernels(kernel_size: int, sigmas: Tensor) -> Tensor:
    """Normalised 1-D Gaussian kernels, one per sigma: (B,) -> (B, kernel_size).

    Taps at ``linspace(-(k-1)/2, (k-1)/2, k)``, as torchvision's ``_get_gaussian_kernel1d``.
    """
    if kernel_size < 1 or kernel_size % 2 == 0:
        raise ValueError(f"kernel_size must be a positive odd integer; got {kernel_size}.")
    half = (kernel_size - 1) / 2
    taps = torch.linspace(-half, half, kernel_size, device=sigmas.device, dtype=torch.float32)
    pdf = torch.exp(-0.5 * (taps[None, :] / sigmas.to(torch.float32)[:, None]) ** 2)
    return pdf / pdf.sum(dim=1, keepdim=True)


def gaussian_blur(images: Tensor, kernel_size: int, sigmas: Tensor) -> Tensor:
    """Blur image i with an isotropic Gaussian of std ``sigmas[i]``; reflect padding.

    Separable: one grouped (depthwise, per image and channel) convolution along H, one
    along W, equal to torchvision's 2-D ``gaussian_blur`` with kernel (k, k), sigma (s, s).
    """
    b, c, height, width = images.shape
    pad = kernel_size // 2
    if pad >= min(height, width):
        raise ValueError(
            f"kernel_size {kernel_size} too large for {height}x{width} images "
            f"(reflect padding needs kernel_size // 2 < side)."
        )
    per_image(sigmas, images, "sigmas")  # shape check
    # (B, k) -> (B * C, k), each image's kernel once per channel; expand, not
    # repeat_interleave, which waits for the device to size its output.
    kernel = gaussian_kernels(kernel_size, sigmas.to(images.device))
    kernel = kernel[:, None, :].expand(b, c, kernel_size).reshape(b * c, kernel_size)
    x = images.reshape(1, b * c, height, width)
    x = F.pad(x, (pad, pad, pad, pad), mode="reflect")
    x = F.conv2d(x, kernel.view(b * c, 1, kernel_size, 1), groups=b * c)
    x = F.conv2d(x, kernel.view(b * c, 1, 1, kernel_size), groups=b * c)
    return x.view(b, c, height, width)


def rotate90(images: Tensor, quarter_turns: Tensor) -> Tensor:
    """Rotate image i counter-clockwise by ``90 * quarter_turns[i]`` degrees (square images).

    The same rotation as torchvision's ``rotate(img, 90 * k)``; exact (a permutation of
    pixels), done on the images of each k in {1, 2, 3} at once.
    """
    if images.shape[-1] != images.shape[-2]:
        raise ValueError(f"rotate90 needs square images; got {tuple(images.shape[-2:])}.")
    turns = per_image(quarter_turns, images, "quarter_turns").view(-1).long().remainder(4)
    out = images.clone()
    for k in (1, 2, 3):
        out = apply_where(out, turns == k, partial(_rotated, k=k), inplace=True)
    return out


def _rotated(images: Tensor, index: Tensor | None, k: int) -> Tensor:
    return torch.rot90(images, k, dims=(2, 3))


def cutout(images: Tensor, centres: Tensor, side: int, fill: float = 0.5) -> Tensor:
    """Fill a side x side square centred at ``centres[i]`` = (row, col) of image i.

    The square spans rows ``row - side // 2 .. row - side // 2 + side - 1`` (and likewise
    columns), clipped to the image, so it may be partly outside (DeVries & Taylor, 2017).
    """
    if centres.shape != (images.shape[0], 2):
        raise ValueError(f"centres must have shape (B, 2); got {tuple(centres.shape)}.")
    _, _, height, width = images.shape
    start = centres.to(images.device).long() - side // 2  # (B, 2)
    rows = torch.arange(height, device=images.device)[None, :]
    cols = torch.arange(width, device=images.device)[None, :]
    in_rows = (rows >= start[:, :1]) & (rows < start[:, :1] + side)  # (B, H)
    in_cols = (cols >= start[:, 1:]) & (cols < start[:, 1:] + side)  # (B, W)
    mask = (in_rows[:, :, None] & in_cols[:, None, :])[:, None]  # (B, 1, H, W)
    return images.masked_fill(mask, fill)


def add_gaussian_noise(images: Tensor, stds: Tensor, noise: Tensor) -> Tensor:
    """clamp(x + stds[i] * noise, 0, 1); ``noise`` is standard normal, shaped like images."""
    if noise.shape != images.shape:
        raise ValueError(f"noise must have the images' shape {tuple(images.shape)}.")
    return torch.addcmul(images, noise, per_image(stds, images, "stds")).clamp_(0.0, 1.0)


def sobel(images: Tensor) -> Tensor:
    """Sobel edge magnitude of the luma, scaled to [0, 1] per image, on 3 channels.

    ``sqrt(gx^2 + gy^2)`` with the 3x3 Sobel kernels (replicate padding), divided by its
    maximum over the image (a flat image stays 0): the paper's Figure 4(j) operator.
    """
    p = F.pad(rgb_to_grayscale(images), (1, 1, 1, 1), mode="replicate")
    # Separable: central difference along one axis, (1, 2, 1) smoothing along the other.
    # Written with slices, not conv2d, so a flat region gives exactly 0 (a convolution's
    # rounding leaves ~1e-8, which the per-image normalisation would blow up to 1).
    dx = p[..., 2:] - p[..., :-2]
    dy = p[..., 2:, :] - p[..., :-2, :]
    gx = dx[..., :-2, :] + 2.0 * dx[..., 1:-1, :] + dx[..., 2:, :]
    gy = dy[..., :-2] + 2.0 * dy[..., 1:-1] + dy[..., 2:]
    grad = torch.cat((gx, gy), dim=1)
    magnitude = grad.square().sum(dim=1, keepdim=True).sqrt_()
    peak = magnitude.amax(dim=(2, 3), keepdim=True).clamp_min_(1e-12)
    return (magnitude / peak).expand_as(images).contiguous()
