"""SimCLR's augmentation figures (Chen et al., ICML 2020), drawn with the training code.

* Figure 6, :func:`crop_histograms`: per-channel pixel-intensity histograms of several
  random crops of the same image, without and with colour distortion. Without it, the
  crops of one image share their colour histogram, so the network can match the two views
  of a positive pair by colour statistics alone; colour distortion breaks that shortcut.
* Figure 4, :func:`augmentation_grid`: each operator of the paper's ablation applied alone.

Both compose the operators by name through :func:`selfsup.data.augment.build_augmentation`,
so the figures show exactly what pre-training applies.
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

import torch
from torch import Tensor

from selfsup.data.augment import AUGMENTATION_OPS, DEFAULT_PROBABILITIES, build_augmentation
from selfsup.figures._render import check_images, check_positive, new_figure, save_png, show

#: Figure 4's panels: the original, then each operator alone ("original" is no operator).
FIGURE4_OPS: tuple[str, ...] = (
    "original", "crop", "cutout", "color_jitter", "color_drop",
    "rotation", "noise", "blur", "sobel",
)  # fmt: skip
#: Panel titles, after the captions of the paper's Figure 4.
OP_TITLES: dict[str, str] = {
    "original": "original", "crop": "crop, resize\n(and flip)", "flip": "flip",
    "color": "colour distort\n(jitter + drop)", "color_jitter": "colour distort\n(jitter)",
    "color_drop": "colour distort\n(drop)", "rotation": "rotate\n{90, 180, 270}",
    "cutout": "cutout", "noise": "Gaussian noise", "blur": "Gaussian blur",
    "sobel": "Sobel filtering",
}  # fmt: skip
FIGURE_OPS: tuple[str, ...] = ("original", *AUGMENTATION_OPS)
HISTOGRAM_BINS = 32
_CHANNELS = (("R", "tab:red"), ("G", "tab:green"), ("B", "tab:blue"))
_LINESTYLES = ("-", "--", ":", "-.")


class CropHistograms(NamedTuple):
    """Figure 6's numbers: ``crops`` (2, N, C, 3, S, S) float in [0, 1] and ``histograms``
    (2, N, C, 3, bins), each histogram the fraction of the crop's pixels per intensity bin.
    Index 0 of the first axis is crop (and flip) alone, 1 the same crops colour-distorted."""

    crops: Tensor
    histograms: Tensor


def channel_histograms(images: Tensor, bins: int = HISTOGRAM_BINS) -> Tensor:
    """(B, 3, H, W) float in [0, 1] -> (B, 3, bins): per channel, the fraction of pixels in
    each of ``bins`` equal intensity bins over [0, 1] (1.0 falls in the last bin)."""
    check_positive("bins", bins)
    index = (images.clamp(0, 1) * bins).long().clamp_(max=bins - 1).flatten(2)  # (B, 3, HW)
    counts = torch.zeros(*index.shape[:2], bins).scatter_add_(
        2, index, torch.ones(index.shape, dtype=torch.float32)
    )
    return counts / index.shape[2]


def crop_histogram_data(
    images: Tensor,
    *,
    num_crops: int = 4,
    strength: float = 1.0,
    bins: int = HISTOGRAM_BINS,
    seed: int = 0,
) -> CropHistograms:
    """Random crops of each image and their channel histograms, without and with colour.

    Args:
        images: (N, 3, H, W) uint8; every image gets ``num_crops`` crops of side min(H, W).
        num_crops: crops per image, C >= 2.
        strength: colour strength s of the distortion (the paper's Figure 6: ImageNet, 1.0).
        bins: histogram bins over [0, 1].
        seed: the crops and distortions are drawn from ``torch.Generator().manual_seed(seed)``.

    The colour-distorted row uses training's ``["crop", "color"]`` (jitter p = 0.8, drop
    p = 0.2) and the row without colour ``["crop"]``; both start from the same seed, and the
    crop draws first, so the two rows hold the *same* crops, with and without colour.
    """
    images = check_images(images)
    if isinstance(num_crops, bool) or not isinstance(num_crops, int) or num_crops < 2:
        raise ValueError(
            f"num_crops must be an integer >= 2 (crops to compare); got {num_crops!r}."
        )
    size = min(images.shape[-2:])
    batch = images.repeat_interleave(num_crops, dim=0)  # (N C, 3, H, W)
    rows = []
    for ops in (["crop"], ["crop", "color"]):
        augment = build_augmentation(ops, size, strength=strength)
        rows.append(augment(batch, torch.Generator().manual_seed(seed)))
    crops = torch.stack(rows).reshape(2, len(images), num_crops, 3, size, size)
    histograms = channel_histograms(crops.flatten(0, 2), bins)
    return CropHistograms(crops, histograms.reshape(2, len(images), num_crops, 3, bins))


def crop_histograms(
    images: Tensor,
    path: str | Path,
    *,
    num_crops: int = 4,
    strength: float = 1.0,
    seed: int = 0,
    bins: int = HISTOGRAM_BINS,
) -> Path:
    """SimCLR Figure 6: write the crops and their R, G, B histograms of up to 3 images.

    One column per image; rows: the crops without colour distortion, their histograms
    (nearly the same curves: colour statistics identify the image), the same crops
    colour-distorted, their histograms (now different). Every histogram panel shares one
    y range. See :func:`crop_histogram_data` for the arguments. The PNG is
    ``(360 n + 60)`` x 700 pixels for n images; returns ``path`` as a Path.
    """
    data = crop_histogram_data(
        check_images(images)[:3], num_crops=num_crops, strength=strength, bins=bins, seed=seed
    )
    _, n, c, _, bins = data.histograms.shape
    centres = (torch.arange(bins) + 0.5) / bins
    top = float(data.histograms.max()) * 1.05
    width, height = 3.6 * n + 0.6, 7.0  # inches; 0.6 for the y labels
    fig = new_figure(width, height)
    axes = fig.subplots(4, n, squeeze=False, gridspec_kw={"height_ratios": [1, 2, 1, 2]})
    fig.subplots_adjust(left=0.6 / width, right=1 - 0.1 / width, top=1 - 0.85 / height,
                        bottom=0.45 / height, hspace=0.42, wspace=0.15)  # fmt: skip
    labels = ("crops, no colour distortion", f"same crops, colour distortion (s = {strength:g})")
    for row in range(2):
        for j in range(n):
            # The C crops side by side, a white column between them.
            gap = torch.ones(3, data.crops.shape[-2], 1)
            strip = torch.cat([t for crop in data.crops[row, j] for t in (crop, gap)][:-1], dim=2)
            show(axes[2 * row, j], strip, f"image {j + 1}: {labels[row]}")
            ax = axes[2 * row + 1, j]
            for k in range(c):
                for ch, (name, colour) in enumerate(_CHANNELS):
                    ax.plot(centres.numpy(), data.histograms[row, j, k, ch].numpy(),
                            color=colour, linestyle=_LINESTYLES[k % len(_LINESTYLES)],
                            linewidth=1.0, alpha=0.8, label=name if k == 0 else None)  # fmt: skip
            ax.set_xlim(0, 1)
            ax.set_ylim(0, top)
            ax.tick_params(labelsize=7)
            if row == 1:
                ax.set_xlabel("pixel intensity", fontsize=7)
            if j == 0:
                ax.set_ylabel("fraction of pixels", fontsize=7)
                ax.legend(fontsize=6, loc="upper right")
    fig.suptitle(
        "SimCLR Figure 6: R, G, B intensity histograms of random crops\n"
        f"({c} crops per image, one line style per crop; same y range everywhere)\n"
        "without colour distortion the crops' histograms coincide; with it they differ",
        fontsize=9,
    )
    return save_png(fig, path)


def _check_ops(ops: Sequence[str]) -> list[str]:
    if isinstance(ops, str) or not ops or not all(isinstance(op, str) for op in ops):
        raise ValueError(f"ops must be a non-empty list of operator names; got {ops!r}.")
    for op in ops:
        if op not in FIGURE_OPS:
            close = difflib.get_close_matches(op, FIGURE_OPS, n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise ValueError(
                f"Unknown augmentation op {op!r} in ops.{hint} Valid: {', '.join(FIGURE_OPS)}."
            )
    return list(ops)


def augmentation_panels(
    images: Tensor, ops: Sequence[str] = FIGURE4_OPS, *, seed: int = 0
) -> Tensor:
    """Every image under every operator alone: (N, 3, H, W) uint8 -> (N, len(ops), 3, S, S)
    float in [0, 1], S = min(H, W).

    Each operator is ``build_augmentation([op], S)``, its own probability (if it has one)
    raised to 1 so that the panel shows it applied; "crop" keeps its flip with p = 0.5 and
    "color" its jitter p = 0.8 and drop p = 0.2, as in training. "original" is the image
    resized only. Draws come from one ``torch.Generator().manual_seed(seed)``, op by op.
    """
    images = check_images(images)
    names = _check_ops(ops)
    size = min(images.shape[-2:])
    generator = torch.Generator().manual_seed(seed)
    panels = []
    for op in names:
        chain = [] if op == "original" else [op]
        always = {op: 1.0} if op in DEFAULT_PROBABILITIES else {}
        augment = build_augmentation(chain, size, probabilities=always)
        panels.append(augment(images, generator))
    return torch.stack(panels, dim=1)


def augmentation_grid(
    images: Tensor, path: str | Path, *, ops: Sequence[str] = FIGURE4_OPS, seed: int = 0
) -> Path:
    """SimCLR Figure 4: one row per image, one column per operator (titled), drawn by
    :func:`augmentation_panels`. The PNG is ``130 len(ops)`` x ``(130 N + 60)`` pixels for
    N images; returns ``path`` as a Path."""
    panels = augmentation_panels(images, ops, seed=seed)
    n, m = panels.shape[:2]
    fig = new_figure(1.3 * m, 1.3 * n + 0.6)
    axes = fig.subplots(n, m, squeeze=False)
    fig.subplots_adjust(left=0.01, right=0.99, bottom=0.01, top=1 - 0.75 / (1.3 * n + 0.6),
                        wspace=0.06, hspace=0.06)  # fmt: skip
    for i in range(n):
        for j, op in enumerate(ops):
            show(axes[i, j], panels[i, j], OP_TITLES[op] if i == 0 else None)
    fig.suptitle("SimCLR Figure 4: each augmentation operator alone (selfsup's training ops)",
                 fontsize=9)  # fmt: skip
    return save_png(fig, path)
