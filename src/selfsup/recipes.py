"""The configuration schema of ``selfsup pretrain simclr`` (defaults = the paper's recipe).

Each section is a frozen dataclass; YAML recipes under ``configs/`` and ``key=value``
overrides fill it (see :mod:`selfsup.config`). Only the CLI reads these objects; it turns
them into explicit arguments for the library's classes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal


def _o(default: Any, help: str) -> Any:
    """A config field with its ``--help`` text."""
    return field(default=default, metadata={"help": help})


@dataclass(frozen=True)
class DataSection:
    """Where the images come from."""

    dataset: str = _o("cifar10", "a dataset name (cifar10) or a folder path")
    train_split: str = _o("train", "split folder used for pre-training and the kNN bank")
    test_split: str = _o("test", "split folder evaluation reports on")
    image_size: int | None = _o(None, "resize at decode time; None keeps the files' size")
    strict: bool = _o(False, "undecodable files: error instead of a warning")
    cache: bool = _o(True, "keep a decoded uint8 copy under the user's cache folder")


@dataclass(frozen=True)
class ModelSection:
    """Encoder f and projection head g."""

    encoder: str = _o("resnet18", "registered encoder name (selfsup models)")
    width: float = _o(1.0, "channel multiplier: 1, 2, 4 (paper), or < 1 for CPU runs")
    cifar_stem: bool = _o(True, "3x3 stride-1 first conv, no max-pool (32 px images)")
    head: Literal["v1", "v2"] = _o("v1", "v1: two layers (SimCLR), v2: three (SimCLRv2)")
    head_hidden_dim: int | None = _o(None, "None: the encoder's width d")
    out_dim: int = _o(128, "output width of g (the paper: 128)")


@dataclass(frozen=True)
class AugmentSection:
    """The family T (SPEC) or a composition of the Figure 4 operators."""

    preset: Literal["cifar", "imagenet"] = _o(
        "cifar", "cifar: s = 0.5, no blur; imagenet: s = 1.0, blur"
    )
    ops: tuple[str, ...] = _o((), "empty: the preset; else e.g. [crop, color]")
    size: int = _o(32, "training resolution (output side of the crop)")
    strength: float | None = _o(None, "colour strength s; None: the preset's")
    blur: bool | None = _o(None, "None: the preset's")
    crop_scale_min: float = _o(0.08, "lower bound of the crop's area fraction")


@dataclass(frozen=True)
class LossSection:
    """NT-Xent."""

    temperature: float = _o(0.5, "NT-Xent tau (paper: 0.1 ImageNet, 0.5 CIFAR)")


@dataclass(frozen=True)
class OptimSection:
    """Optimiser and learning-rate schedule (linear warm-up, then cosine, per step)."""

    name: Literal["lars", "sgd", "adamw"] = _o("lars", "optimiser")
    lr: float = _o(0.3, "base learning rate, scaled by lr_scaling with the global batch")
    lr_scaling: Literal["linear", "sqrt", "none"] = _o("linear", "linear: lr * batch / 256")
    weight_decay: float = _o(1e-6, "not applied to biases and norm parameters")
    momentum: float = _o(0.9, "LARS/SGD momentum")
    warmup_epochs: float = _o(10.0, "linear warm-up length, then cosine decay")
    final_lr: float = _o(0.0, "learning rate at the end of the cosine")


@dataclass(frozen=True)
class TrainSection:
    """The run: length, batch, precision, devices, checkpoints, monitoring."""

    epochs: float = _o(100.0, "run length (fractions allowed)")
    batch_size: int = _o(256, "global batch: per-process batch x number of processes")
    precision: Literal["fp32", "bf16"] = _o("fp32", "bf16: autocast (CPU too)")
    channels_last: bool = _o(False, "NHWC memory layout for convolutions")
    device: str = _o("auto", "auto (cuda > mps > cpu), cpu, cuda, cuda:1, mps")
    sync_batchnorm: bool = _o(False, "global BN across processes (the paper's)")
    checkpoint_every: int = _o(1000, "steps")
    log_every: int = _o(10, "steps")
    seed: int = _o(0, "seeds the model, batches and augmentations")
    run_dir: str = _o("runs/simclr", "checkpoints, metrics.jsonl and TensorBoard logs")
    knn_every_epochs: float = _o(0.0, "kNN monitor period; 0 disables it")
    knn_max_train: int | None = _o(10000, "subsample the monitor's bank to keep it cheap")
    num_threads: int | None = _o(None, "torch CPU threads; None: torch's default")
    progress: bool = _o(True, "show a progress bar (main process, terminals only)")


@dataclass(frozen=True)
class EvalSection:
    """Evaluation after pre-training (``--eval``) and by ``selfsup eval``."""

    knn_k: int = _o(200, "kNN neighbours")
    knn_temperature: float = _o(0.1, "kNN weight temperature")
    linear_epochs: int = _o(100, "linear probe epochs")
    batch_size: int = _o(512, "feature extraction batch")


@dataclass(frozen=True)
class SimCLRConfig:
    """``selfsup pretrain simclr``: every option, by section."""

    data: DataSection = field(default_factory=DataSection)
    model: ModelSection = field(default_factory=ModelSection)
    augment: AugmentSection = field(default_factory=AugmentSection)
    loss: LossSection = field(default_factory=LossSection)
    optim: OptimSection = field(default_factory=OptimSection)
    train: TrainSection = field(default_factory=TrainSection)
    eval: EvalSection = field(default_factory=EvalSection)
