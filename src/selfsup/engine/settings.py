"""What a training run is told (:class:`TrainerSettings`) and reports (:class:`TrainSummary`).

Explicit values, independent of the CLI's config objects: the CLI translates its config
into these, and a Python user fills them in directly.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from selfsup.engine.runtime import Precision


@dataclass(frozen=True)
class TrainerSettings:
    """How to train; explicit values, independent of the CLI's config objects.

    ``batch_size`` is per process: the global batch is ``batch_size * world_size``.
    ``device``: ``"auto"`` (CUDA, then MPS, then CPU) or a torch device string; with
    several processes on CUDA each takes ``cuda:LOCAL_RANK``. ``precision="bf16"`` runs
    ``training_step`` under ``torch.autocast(device_type, torch.bfloat16)`` (CPU too);
    ``"auto"`` does so only where the device computes bf16 natively
    (:func:`~selfsup.engine.runtime.resolve_precision`).
    ``checkpoint_every``/``log_every`` count optimiser steps. ``grad_clip`` clips the
    global gradient norm. ``num_threads`` sets torch's intra-op threads.
    ``defer_loss_check`` reads each step's loss one step late so that the host never waits
    for the device (:mod:`selfsup.engine.loss_reader`); None: on CUDA only.
    """

    total_steps: int
    batch_size: int
    run_dir: Path
    device: str = "auto"
    precision: Precision = "fp32"
    channels_last: bool = False
    checkpoint_every: int = 1000
    log_every: int = 10
    seed: int = 0
    sync_batchnorm: bool = False
    grad_clip: float | None = None
    progress: bool = True
    num_threads: int | None = None
    defer_loss_check: bool | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "run_dir", Path(self.run_dir))
        for name in ("total_steps", "batch_size", "checkpoint_every", "log_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"TrainerSettings.{name} must be >= 1; got {getattr(self, name)}.")
        if self.precision not in ("fp32", "bf16", "auto"):
            raise ValueError(f"precision must be 'fp32', 'bf16' or 'auto'; got {self.precision!r}.")
        if self.grad_clip is not None and not self.grad_clip > 0:
            raise ValueError(f"grad_clip must be > 0 or None; got {self.grad_clip}.")
        if self.num_threads is not None and self.num_threads < 1:
            raise ValueError(f"num_threads must be >= 1 or None; got {self.num_threads}.")


@dataclass(frozen=True)
class TrainSummary:
    """What :meth:`Trainer.fit` did. ``steps`` counts all completed steps (resumed ones
    included); ``images_per_second`` (global) and ``wall_time_s`` cover this call only."""

    steps: int
    steps_this_run: int
    epochs: float
    final_loss: float | None
    images_per_second: float
    wall_time_s: float
    checkpoint: Path | None
