"""An image with its I-JEPA context and target blocks overlaid, as in the paper's Fig. 4
(Assran et al., CVPR 2023): context patches shown as they are, every other patch dimmed,
each target block tinted and outlined in its own colour. ``render_masks`` returns the
picture (``selfsup.figures.mask_grid`` tiles several), ``draw_masks`` writes one PNG."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from PIL import Image, ImageDraw
from torch import Tensor

#: Target colours (RGB), cycled when there are more blocks (matplotlib's tab10 start).
PALETTE: tuple[tuple[int, int, int], ...] = (
    (214, 39, 40),
    (31, 119, 180),
    (44, 160, 44),
    (255, 127, 14),
    (148, 103, 189),
    (23, 190, 207),
    (227, 119, 194),
    (188, 189, 34),
)
#: Brightness kept by patches outside the context (the context stands out).
DIM = 0.35
#: Weight of a target's colour in its patches' tint.
TINT = 0.55


def _check_indices(name: str, idx: Tensor, num_patches: int) -> Tensor:
    if not isinstance(idx, Tensor) or idx.dim() != 1 or idx.dtype not in (torch.long, torch.int):
        raise ValueError(f"{name} must be a 1-D integer tensor of flat patch indices.")
    if idx.numel() and (int(idx.min()) < 0 or int(idx.max()) >= num_patches):
        raise ValueError(
            f"{name} holds indices outside [0, {num_patches}) (the image's patch grid); "
            "drop padded entries (their valid mask is False) before drawing."
        )
    return idx.long()


def render_masks(
    image: Tensor,
    context: Tensor,
    targets: Sequence[Tensor],
    patch_size: int,
    upscale: int = 1,
) -> Image.Image:
    """``image`` with its masks overlaid, as an RGB PIL image.

    Args:
        image: (3, H, W) uint8 RGB, H and W multiples of ``patch_size``.
        context: (K,) long flat row-major indices of the context patches.
        targets: one (T_m,) long index tensor per target block (padding removed).
        patch_size: pixels per patch side.
        upscale: integer magnification (nearest neighbour), e.g. 8 for 32 px images.

    Returns:
        A ``(W * upscale) x (H * upscale)`` RGB image.
    """
    if not isinstance(image, Tensor) or image.dtype != torch.uint8 or image.dim() != 3:
        raise ValueError("image must be a (3, H, W) uint8 tensor.")
    if image.shape[0] != 3:
        raise ValueError(f"image must have 3 (RGB) channels first; got shape {tuple(image.shape)}.")
    if not isinstance(patch_size, int) or patch_size < 1:
        raise ValueError(f"patch_size must be a positive integer; got {patch_size!r}.")
    if not isinstance(upscale, int) or upscale < 1:
        raise ValueError(f"upscale must be a positive integer; got {upscale!r}.")
    height, width = image.shape[1:]
    if height % patch_size or width % patch_size:
        raise ValueError(
            f"image size {height}x{width} is not a multiple of patch_size={patch_size}."
        )
    grid_h, grid_w = height // patch_size, width // patch_size
    n = grid_h * grid_w
    context = _check_indices("context", context, n)
    blocks = [_check_indices(f"targets[{i}]", t, n) for i, t in enumerate(targets)]

    # Per-patch colour ops on the (3, grid_h, grid_w) grid, then expanded to pixels.
    gain = torch.full((n,), DIM)
    gain[context] = 1.0
    tint = torch.zeros(3, n)
    weight = torch.zeros(n)
    for i, block in enumerate(blocks):
        tint[:, block] = torch.tensor(PALETTE[i % len(PALETTE)], dtype=torch.float32)[:, None]
        weight[block] = TINT

    def to_pixels(t: Tensor) -> Tensor:
        t = t.reshape(-1, grid_h, grid_w)
        return t.repeat_interleave(patch_size, 1).repeat_interleave(patch_size, 2)

    img = image.float() * to_pixels(gain)
    w = to_pixels(weight)
    img = (img * (1 - w) + to_pixels(tint) * w).round().clamp(0, 255).to(torch.uint8)
    pil = Image.fromarray(img.permute(1, 2, 0).contiguous().numpy(), mode="RGB")
    if upscale > 1:
        pil = pil.resize((width * upscale, height * upscale), Image.Resampling.NEAREST)

    # Outline each block's bounding box (a full rectangle unless the block was truncated).
    draw = ImageDraw.Draw(pil)
    step = patch_size * upscale
    line = max(1, step // 8)
    for i, block in enumerate(blocks):
        if block.numel() == 0:
            continue
        rows, cols = block // grid_w, block % grid_w
        box = (
            int(cols.min()) * step,
            int(rows.min()) * step,
            (int(cols.max()) + 1) * step - 1,
            (int(rows.max()) + 1) * step - 1,
        )
        draw.rectangle(box, outline=PALETTE[i % len(PALETTE)], width=line)
    return pil


def draw_masks(
    image: Tensor,
    context: Tensor,
    targets: Sequence[Tensor],
    patch_size: int,
    path: str | Path,
    upscale: int = 1,
) -> Path:
    """Write :func:`render_masks` ``(image, context, targets, patch_size, upscale)`` to the
    PNG file ``path`` (parent folders are created); returns ``path`` as a Path. The PNG is
    ``(W * upscale) x (H * upscale)`` pixels."""
    pil = render_masks(image, context, targets, patch_size, upscale)
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    pil.save(out, format="PNG")
    return out
