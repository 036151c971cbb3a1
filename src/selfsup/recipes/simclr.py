"""The configuration schema of ``selfsup pretrain simclr`` (defaults = the paper's recipe)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from selfsup.recipes.common import DataSection, EvalSection, TrainSection, option


@dataclass(frozen=True)
class ModelSection:
    """Encoder f and projection head g."""

    encoder: str = option("resnet18", "registered encoder name (selfsup models)")
    width: float = option(1.0, "ResNets: channel multiplier 1, 2, 4 (paper), < 1 for CPUs")
    cifar_stem: bool = option(True, "ResNets: 3x3 stride-1 first conv, no max-pool (32 px)")
    patch_size: int = option(4, "ViTs: patch side in pixels (4 for 32 px images)")
    head: Literal["v1", "v2"] = option("v1", "v1: two layers (SimCLR), v2: three (SimCLRv2)")
    head_hidden_dim: int | None = option(None, "None: the encoder's width d")
    out_dim: int = option(128, "output width of g (the paper: 128)")


@dataclass(frozen=True)
class AugmentSection:
    """The family T (SPEC) or a composition of the Figure 4 operators."""

    preset: Literal["cifar", "imagenet"] = option(
        "cifar", "cifar: s = 0.5, no blur; imagenet: s = 1.0, blur"
    )
    ops: tuple[str, ...] = option((), "empty: the preset; else e.g. [crop, color]")
    size: int = option(32, "training resolution (output side of the crop)")
    strength: float | None = option(None, "colour strength s; None: the preset's")
    blur: bool | None = option(None, "None: the preset's")
    crop_scale_min: float = option(0.08, "lower bound of the crop's area fraction")
    antialias: bool = option(
        False, "filter crops shrunk below their size (Pillow/torchvision); off: official"
    )
    start_size: int | None = option(
        None, "progressive resizing (ResNets): first training side; None: size throughout"
    )
    size_ramp: tuple[float, float] = option(
        (0.5, 0.85), "progressive resizing: fractions of the run where the side grows to size"
    )
    size_multiple: int = option(4, "progressive resizing: sides rounded down to a multiple")


@dataclass(frozen=True)
class LossSection:
    """NT-Xent."""

    temperature: float = option(0.5, "NT-Xent tau (paper: 0.1 ImageNet, 0.5 CIFAR)")


@dataclass(frozen=True)
class OptimSection:
    """Optimiser and learning-rate schedule (linear warm-up, then cosine, per step)."""

    name: Literal["lars", "sgd", "adamw"] = option("lars", "optimiser")
    lr: float = option(0.3, "base learning rate, scaled by lr_scaling with the global batch")
    lr_scaling: Literal["linear", "sqrt", "none"] = option("linear", "linear: lr * batch / 256")
    weight_decay: float = option(1e-6, "biases and norms excluded: see decay_norm_and_bias")
    decay_norm_and_bias: bool = option(
        False, "True: weight decay (and LARS's trust ratio) on every parameter, as lightly's SGD"
    )
    momentum: float = option(0.9, "LARS/SGD momentum")
    warmup_epochs: float = option(10.0, "linear warm-up length, then cosine decay")
    final_lr: float = option(0.0, "learning rate at the end of the cosine")


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
