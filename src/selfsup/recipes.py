"""The configuration schema of ``selfsup pretrain simclr`` (defaults = the paper's recipe).

Each section is a frozen dataclass; YAML recipes under ``configs/`` and ``key=value``
overrides fill it (see :mod:`selfsup.config`). Only the CLI reads these objects; it turns
them into explicit arguments for the library's classes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal


@dataclass(frozen=True)
class DataSection:
    """Where the images come from."""

    dataset: str = "cifar10"  # a dataset name (cifar10) or a folder path
    train_split: str = "train"
    test_split: str = "test"
    image_size: int | None = None  # resize at decode time; None keeps the files' size
    strict: bool = False  # undecodable files: error instead of a warning
    cache: bool = True  # keep a decoded uint8 copy under the user's cache folder


@dataclass(frozen=True)
class ModelSection:
    """Encoder f and projection head g."""

    encoder: str = "resnet18"
    width: float = 1.0  # channel multiplier: 1, 2, 4 (paper), or < 1 for CPU runs
    cifar_stem: bool = True  # 3x3 stride-1 first conv, no max-pool (32 px images)
    head: Literal["v1", "v2"] = "v1"  # v1: two layers (SimCLR), v2: three (SimCLRv2)
    head_hidden_dim: int | None = None  # None: the encoder's width d
    out_dim: int = 128


@dataclass(frozen=True)
class AugmentSection:
    """The family T (SPEC) or a composition of the Figure 4 operators."""

    preset: Literal["cifar", "imagenet"] = "cifar"
    ops: tuple[str, ...] = ()  # empty: the preset; else e.g. [crop, color]
    size: int = 32  # training resolution (output side of the crop)
    strength: float | None = None  # colour strength s; None: the preset's
    blur: bool | None = None  # None: the preset's
    crop_scale_min: float = 0.08  # lower bound of the crop's area fraction


@dataclass(frozen=True)
class LossSection:
    """NT-Xent."""

    temperature: float = 0.5


@dataclass(frozen=True)
class OptimSection:
    """Optimiser and learning-rate schedule (linear warm-up, then cosine, per step)."""

    name: Literal["lars", "sgd", "adamw"] = "lars"
    lr: float = 0.3  # base learning rate, scaled by lr_scaling with the global batch
    lr_scaling: Literal["linear", "sqrt", "none"] = "linear"  # linear: lr * batch / 256
    weight_decay: float = 1e-6
    momentum: float = 0.9
    warmup_epochs: float = 10.0
    final_lr: float = 0.0


@dataclass(frozen=True)
class TrainSection:
    """The run: length, batch, precision, devices, checkpoints, monitoring."""

    epochs: float = 100.0
    batch_size: int = 256  # global batch: per-process batch x number of processes
    precision: Literal["fp32", "bf16"] = "fp32"
    channels_last: bool = False
    device: str = "auto"  # auto (cuda > mps > cpu), cpu, cuda, cuda:1, mps
    sync_batchnorm: bool = False  # global BN across processes (the paper's)
    checkpoint_every: int = 1000  # steps
    log_every: int = 10  # steps
    seed: int = 0
    run_dir: str = "runs/simclr"
    knn_every_epochs: float = 0.0  # kNN monitor period; 0 disables it
    knn_max_train: int | None = 10000  # subsample the monitor's bank to keep it cheap
    num_threads: int | None = None  # torch CPU threads; None: torch's default
    progress: bool = True


@dataclass(frozen=True)
class EvalSection:
    """Evaluation after pre-training (``--eval``) and by ``selfsup eval``."""

    knn_k: int = 200
    knn_temperature: float = 0.1
    linear_epochs: int = 100
    batch_size: int = 512


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
