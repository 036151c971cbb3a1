"""The study's matplotlib figures, each written to a PNG: loss curves, kNN accuracy against
wall time, 2-D embedding maps, and a sweep's accuracy against its value, parameters and
compute. Inputs are the plain results of ``study.json``."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only: no display on a server or in CI
import matplotlib.pyplot as plt  # noqa: E402


def _save(fig: Any, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def loss_curves(losses: dict[str, tuple[str, list[float], list[float]]], path: Path) -> Path:
    """Training loss against the fraction of the run, one panel per method (the losses of
    SimCLR and I-JEPA are on different scales). ``losses``: run -> (method, x, loss)."""
    methods = sorted({m for m, _, _ in losses.values()})
    fig, axes = plt.subplots(1, len(methods), figsize=(5.5 * len(methods), 3.6), squeeze=False)
    for ax, method in zip(axes[0], methods, strict=True):
        for name, (m, x, y) in losses.items():
            if m == method:
                ax.plot(x, y, label=name, linewidth=1.2)
        ax.set_xlabel("fraction of the run")
        ax.set_ylabel("NT-Xent loss" if method == "simclr" else "I-JEPA loss (smooth L1)")
        ax.set_title(f"{'SimCLR' if method == 'simclr' else 'I-JEPA'} training loss")
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
    return _save(fig, path)


def accuracy_vs_time(
    curves: dict[str, list[tuple[float, float]]], floors: dict[str, float], path: Path
) -> Path:
    """kNN top-1 of training snapshots against wall time; dashed: random-init encoders."""
    fig, ax = plt.subplots(figsize=(6.5, 4))
    for name, points in curves.items():
        if points:
            ax.plot([p[0] / 60 for p in points], [p[1] for p in points], marker="o", label=name)
    for name, value in floors.items():
        ax.axhline(value, linestyle="--", linewidth=1, color="grey")
        ax.annotate(name, (0, value), fontsize=7, color="grey", va="bottom")
    ax.set_xlabel("wall time (minutes)")
    ax.set_ylabel("kNN top-1 (%)")
    ax.set_title("Accuracy against wall-clock time")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _save(fig, path)


def embedding_maps(maps: dict[str, dict[str, Any]], path: Path) -> Path:
    """Test images on the first two principal components of each encoder's features."""
    n = len(maps)
    cols = min(n, 3)
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 4 * rows), squeeze=False)
    cmap = plt.get_cmap("tab10")
    for ax in axes.flat[n:]:
        ax.axis("off")
    for ax, (name, m) in zip(axes.flat, maps.items(), strict=False):
        colors = [cmap(int(c) % 10) for c in m["label"]]
        ax.scatter(m["x"], m["y"], c=colors, s=4, alpha=0.7)
        ax.set_title(
            f"{name}\n(PCA, {100 * m['explained_variance']:.0f} % of the variance)", fontsize=9
        )
        ax.set_xticks([])
        ax.set_yticks([])
    classes = next(iter(maps.values()))["classes"]
    handles = [
        plt.Line2D([], [], marker="o", linestyle="", color=cmap(i % 10), label=c)
        for i, c in enumerate(classes[:10])
    ]
    fig.legend(handles=handles, loc="lower center", ncol=min(10, len(handles)), fontsize=7)
    fig.subplots_adjust(bottom=0.12)
    return _save(fig, path)


def sweep_plot(key: str, series: dict[str, list[dict[str, Any]]], path: Path) -> Path:
    """Linear top-1 against the swept value, encoder parameters and training compute
    (FLOPs per image x images seen), one line per arm. ``series``: arm -> points with
    ``value``, ``linear_top1``, ``params``, ``compute``."""
    fig, axes = plt.subplots(1, 3, figsize=(15, 3.8))
    for arm, points in series.items():
        labels = [str(p["value"]) for p in points]
        acc = [p["linear_top1"] for p in points]
        axes[0].plot(range(len(points)), acc, marker="o", label=arm)
        axes[0].set_xticks(range(len(points)), labels, rotation=20, fontsize=8)
        axes[1].plot([p["params"] / 1e6 for p in points], acc, marker="o", label=arm)
        axes[2].plot([p["compute"] / 1e15 for p in points], acc, marker="o", label=arm)
        for p, a in zip(points, acc, strict=True):
            axes[1].annotate(str(p["value"]), (p["params"] / 1e6, a), fontsize=7)
    axes[0].set_xlabel(key)
    axes[1].set_xlabel("encoder parameters (millions)")
    axes[1].set_xscale("log")
    axes[2].set_xlabel("pre-training compute (PFLOPs)")
    for ax in axes:
        ax.set_ylabel("linear top-1 (%)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(f"Sweep over {key}: same wall-clock budget per point")
    return _save(fig, path)
