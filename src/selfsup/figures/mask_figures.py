"""I-JEPA Figure 4 (Assran et al., CVPR 2023): multi-block masks over several images.

Each panel is :func:`selfsup.masks.figure.render_masks`: the context patches as they are,
every other patch dimmed, each target block tinted and outlined in its own colour. The
masks come from :class:`selfsup.masks.MultiBlockMaskSampler`, the sampler pre-training uses.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from selfsup.figures._render import DPI, check_images, check_positive, new_figure, save_png, show
from selfsup.masks import MultiBlockMaskSampler
from selfsup.masks.figure import render_masks

#: Panels per row of the grid.
COLUMNS = 4


def sample_masks(
    images: Tensor, *, patch_size: int, seed: int = 0, **sampler_kwargs: Any
) -> list[tuple[Tensor, list[Tensor]]]:
    """One mask draw per image: ``[(context (K,), [target (T_m,), ...]), ...]``.

    Args:
        images: (N, 3, H, W) uint8, H and W multiples of ``patch_size``.
        patch_size: pixels per patch side; the grid is (H / patch_size, W / patch_size).
        seed: every draw comes from ``torch.Generator().manual_seed(seed)``, image by image.
        sampler_kwargs: :class:`MultiBlockMaskSampler` settings (default: the paper's).
    """
    images = check_images(images)
    check_positive("patch_size", patch_size)
    height, width = images.shape[-2:]
    if height % patch_size or width % patch_size:
        raise ValueError(
            f"image size {height}x{width} is not a multiple of patch_size={patch_size}; "
            "pick a patch size that divides both sides (e.g. 4 for 32 px images)."
        )
    sampler = MultiBlockMaskSampler(
        grid=(height // patch_size, width // patch_size), **sampler_kwargs
    )
    generator = torch.Generator().manual_seed(seed)
    return [sampler.sample(generator) for _ in range(len(images))]


def mask_grid(
    images: Tensor,
    path: str | Path,
    *,
    patch_size: int,
    seed: int = 0,
    upscale: int = 8,
    columns: int = COLUMNS,
    **sampler_kwargs: Any,
) -> Path:
    """Write I-JEPA Figure 4: every image with its context and target blocks overlaid.

    Args:
        images: (N, 3, H, W) uint8, N >= 1; the panels fill rows of ``columns``.
        path: the PNG to write (parent folders are created).
        patch_size, seed, sampler_kwargs: as in :func:`sample_masks`.
        upscale: magnification (nearest neighbour) of each panel: 8 for 32 px images.
        columns: panels per row.

    Each panel is drawn pixel for pixel: the PNG is ``columns' (W upscale + 20)`` wide, with
    ``columns' = min(N, columns)``. Returns ``path`` as a Path.
    """
    check_positive("upscale", upscale)
    check_positive("columns", columns)
    masks = sample_masks(images, patch_size=patch_size, seed=seed, **sampler_kwargs)
    images = check_images(images)
    n = len(images)
    cols, rows = min(n, columns), math.ceil(n / min(n, columns))
    height, width = (side * upscale / DPI for side in images.shape[-2:])
    pad, title, head = 0.2, 0.3, 0.6  # inches: between panels, above each, suptitle
    fig = new_figure(cols * (width + pad), rows * (height + title) + head)
    fig_w, fig_h = fig.get_size_inches()
    for i, (image, (context, targets)) in enumerate(zip(images, masks, strict=True)):
        r, c = divmod(i, cols)
        # Axes placed in inches, so the panel is exactly the rendered image's pixels.
        left = (c * (width + pad) + pad / 2) / fig_w
        bottom = 1 - (head + r * (height + title) + title + height) / fig_h
        ax = fig.add_axes((left, bottom, width / fig_w, height / fig_h))
        ax.set_axis_off()
        picture = render_masks(image, context, targets, patch_size, upscale)
        sizes = "+".join(str(t.numel()) for t in targets)
        show(ax, picture, f"context {context.numel()}, targets {sizes} patches")
    fig.suptitle(
        "I-JEPA Figure 4: context (bright) and target blocks (tinted, outlined) of "
        f"{patch_size} px patches",
        fontsize=9,
    )
    return save_png(fig, path)
