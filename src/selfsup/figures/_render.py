"""Drawing helpers shared by the paper figures: input checks, a matplotlib figure on the
Agg canvas, and PNG output of an exact pixel size.

No ``pyplot``: a :class:`matplotlib.figure.Figure` bound to its own Agg canvas keeps no
global state (no backend switch, no open-figure registry), so the figures can be drawn
from a library call, a test or a headless server alike.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from PIL import Image
from torch import Tensor

#: Pixels per inch of every figure: a figure of w x h inches is a (100 w) x (100 h) PNG.
DPI = 100


def check_images(images: object, name: str = "images") -> Tensor:
    """Check an (N, 3, H, W) uint8 batch with N >= 1; returns it on the CPU."""
    if not isinstance(images, Tensor) or images.dtype != torch.uint8:
        kind = images.dtype if isinstance(images, Tensor) else type(images).__name__
        raise ValueError(
            f"{name} must be a uint8 tensor (N, 3, H, W) with values 0..255; got {kind}."
        )
    if images.ndim != 4 or images.shape[1] != 3 or images.shape[0] < 1:
        raise ValueError(
            f"{name} must have shape (N, 3, H, W) with N >= 1 RGB images, channels first; "
            f"got {tuple(images.shape)}."
        )
    return images.cpu()


def check_positive(name: str, value: object) -> int:
    """``value`` as an int, which must be >= 1 (a ValueError naming ``name`` otherwise)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive integer (>= 1); got {value!r}.")
    return value


def new_figure(width: float, height: float) -> Figure:
    """A blank white ``width`` x ``height`` inch figure on an Agg canvas."""
    fig = Figure(figsize=(width, height), dpi=DPI, facecolor="white")
    FigureCanvasAgg(fig)
    return fig


def save_png(fig: Figure, path: str | Path) -> Path:
    """Render ``fig`` and write it to ``path`` as an RGB PNG of exactly
    ``figsize * DPI`` pixels (no tight cropping, no alpha channel); returns the Path."""
    canvas = fig.canvas
    if not isinstance(canvas, FigureCanvasAgg):
        raise TypeError("save_png needs a figure made by new_figure (an Agg canvas).")
    canvas.draw()
    rgb = np.asarray(canvas.buffer_rgba())[..., :3]
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.ascontiguousarray(rgb), mode="RGB").save(out, format="PNG")
    return out


def to_hwc(image: Tensor) -> np.ndarray:
    """(3, H, W) uint8, or float in [0, 1] -> (H, W, 3) uint8 array for ``imshow``."""
    if image.is_floating_point():
        image = (image.detach().float().clamp(0, 1) * 255).round().to(torch.uint8)
    return image.permute(1, 2, 0).contiguous().cpu().numpy()


def show(ax: Axes, image: Tensor | np.ndarray | Image.Image, title: str | None = None) -> None:
    """Draw an image on ``ax`` pixel for pixel (nearest neighbour), without ticks."""
    pixels = to_hwc(image) if isinstance(image, Tensor) else np.asarray(image)
    ax.imshow(pixels, interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])
    if title is not None:
        ax.set_title(title, fontsize=8)
