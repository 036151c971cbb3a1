"""Config sections shared by every method: data, run, evaluation, and the field helper.

Each section is a frozen dataclass; YAML recipes under ``configs/`` and ``key=value``
overrides fill it (see :mod:`selfsup.config`). Only the CLI reads these objects; it turns
them into explicit arguments for the library's classes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from selfsup.engine.runtime import Precision


def option(default: Any, help: str) -> Any:
    """A config field with its ``--help`` text."""
    return field(default=default, metadata={"help": help})


@dataclass(frozen=True)
class DataSection:
    """Where the images come from."""

    dataset: str = option("cifar10", "a dataset name (cifar10) or a folder path")
    train_split: str = option("train", "split folder used for pre-training and the kNN bank")
    test_split: str = option("test", "split folder evaluation reports on")
    image_size: int | None = option(None, "resize at decode time; None keeps the files' size")
    strict: bool = option(False, "undecodable files: error instead of a warning")
    cache: bool = option(True, "keep a decoded uint8 copy under the user's cache folder")


@dataclass(frozen=True)
class TrainSection:
    """The run: length, batch, precision, devices, checkpoints, monitoring."""

    epochs: float = option(100.0, "run length (fractions allowed)")
    batch_size: int = option(256, "global batch: per-process batch x number of processes")
    budget: str | None = option(
        None,
        "wall-clock length, e.g. 10m, 90s, 1.5h: a calibration of a few real steps sets "
        "train.epochs to fill it (warm-up fraction kept); None: train.epochs",
    )
    precision: Precision = option(
        "fp32", "bf16: autocast (CPU too); auto: bf16 where the device computes it natively"
    )
    channels_last: bool = option(False, "NHWC memory layout for convolutions")
    device: str = option("auto", "auto (cuda > mps > cpu), cpu, cuda, cuda:1, mps")
    sync_batchnorm: bool = option(False, "global BN across processes (the paper's)")
    checkpoint_every: int = option(1000, "steps")
    log_every: int = option(10, "steps")
    seed: int = option(0, "seeds the model, batches and augmentations")
    run_dir: str = option("runs/simclr", "checkpoints, metrics.jsonl and TensorBoard logs")
    knn_every_epochs: float = option(0.0, "kNN monitor period; 0 disables it")
    knn_max_train: int | None = option(10000, "subsample the monitor's bank to keep it cheap")
    num_threads: int | None = option(None, "torch CPU threads; None: torch's default")
    progress: bool = option(True, "show a progress bar (main process, terminals only)")


@dataclass(frozen=True)
class EvalSection:
    """Evaluation after pre-training (``--eval``) and by ``selfsup eval``."""

    knn_k: int = option(200, "kNN neighbours")
    knn_temperature: float = option(0.1, "kNN weight temperature")
    linear_epochs: int = option(100, "linear probe epochs")
    batch_size: int = option(512, "feature extraction batch")
    image_size: int | None = option(
        None,
        "test resolution of --eval, the kNN monitor and selfsup eval's default; None: "
        "augment.size (train below the test size on purpose: FixRes)",
    )
    bn_recalibration_images: int = option(
        0,
        "before --eval and selfsup eval's default: re-estimate the encoder's BatchNorm "
        "statistics on this many unlabelled train-split images at the test size (FixRes; "
        "no labels, no weights change); 0 keeps the training statistics",
    )
