"""The configuration schema of ``selfsup pretrain ijepa``.

Defaults are the paper's ImageNet recipe (ViT-H/14, 224 px, batch 2048, 300 epochs;
Assran et al. 2023, Sec. 5 and Appendix A, and the official ``in1k_vith14_ep300.yaml``).
``configs/ijepa_cifar10_*.yaml`` scale it down for 32 px images.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from selfsup.engine.runtime import Precision
from selfsup.recipes.common import DataSection, EvalSection, TrainSection, option


@dataclass(frozen=True)
class IJEPAModelSection:
    """Context/target encoder (a ViT) and the predictor."""

    encoder: str = option("vit_huge", "registered ViT: vit_tiny, vit_small ... vit_huge")
    patch_size: int = option(14, "patch side in pixels: 4 for 32 px, 14 or 16 for 224 px")
    drop_path: float = option(0.0, "stochastic depth rate of the context encoder")
    patch_embed_std: float = option(
        0.02, "init std of the patch embedding (official 0.02 is for 16 px patches)"
    )
    predictor_dim: int = option(384, "predictor width (paper: 384 for ViT-H)")
    predictor_depth: int = option(12, "predictor blocks (paper: 12 for ViT-H)")
    predictor_heads: int | None = option(None, "None: the encoder's number of heads (SPEC)")
    eval_layers: int = option(1, "evaluation features: mean tokens of the last 1 or 4 layers")
    target_layers: int = option(
        1, "targets: the last block (1, the paper) or the mean of the last k (data2vec)"
    )


@dataclass(frozen=True)
class MaskSection:
    """The multi-block mask sampler (SPEC "Multi-block masking"; paper Sec. 3)."""

    num_targets: int = option(4, "M target blocks per image")
    target_scale: tuple[float, float] = option((0.15, 0.2), "target block area, grid fraction")
    target_aspect: tuple[float, float] = option((0.75, 1.5), "target block aspect ratio h/w")
    context_scale: tuple[float, float] = option((0.85, 1.0), "context block area fraction")
    min_context: int = option(10, "fewest context patches left after removing the targets")
    repeats: int = option(
        1, "mask draws per image: one target pass, r context passes (data2vec 2.0)"
    )
    batching: Literal["truncate", "pad"] = option(
        "truncate", "unequal masks: random subset to the batch's shortest, or pad and mask"
    )


@dataclass(frozen=True)
class IJEPAAugmentSection:
    """The single view: a random resized crop (the official recipe's only augmentation)."""

    size: int = option(224, "training resolution; a multiple of model.patch_size")
    crop_scale_min: float = option(0.3, "lower bound of the crop's area fraction (official)")
    flip: bool = option(False, "random horizontal flip (off in the official recipe)")
    antialias: bool = option(
        False, "filter crops shrunk below their size, as the official code's Pillow crops"
    )


@dataclass(frozen=True)
class IJEPALossSection:
    """Distance between predicted and target patch representations."""

    kind: Literal["smooth_l1", "l2"] = option("smooth_l1", "smooth_l1 (official code) or l2")


@dataclass(frozen=True)
class IJEPAOptimSection:
    """AdamW, lr warm-up then cosine, weight decay cosine up, EMA momentum linear up."""

    lr: float = option(1e-3, "peak learning rate (after warm-up)")
    start_lr: float = option(2e-4, "learning rate at step 0")
    final_lr: float = option(1e-6, "learning rate at the end of the cosine")
    lr_scaling: Literal["linear", "sqrt", "none"] = option(
        "none", "rescale lr, start_lr, final_lr with the batch (linear: x batch / 2048)"
    )
    warmup_epochs: float = option(40.0, "linear warm-up length")
    weight_decay: float = option(0.04, "at step 0; cosine to final_weight_decay")
    final_weight_decay: float = option(0.4, "weight decay at the end of training")
    betas: tuple[float, float] = option((0.9, 0.999), "AdamW betas")
    ema_start: float = option(0.996, "target-encoder EMA momentum at step 0")
    ema_end: float = option(1.0, "EMA momentum at the end (linear in between)")


@dataclass(frozen=True)
class IJEPATrainSection(TrainSection):
    """The run (as SimCLR's) with the paper's I-JEPA defaults."""

    epochs: float = option(300.0, "run length (fractions allowed)")
    batch_size: int = option(2048, "global batch: per-process batch x number of processes")
    precision: Precision = option(
        "auto", "bf16: autocast (CPU too); auto: bf16 where the device computes it natively"
    )
    run_dir: str = option("runs/ijepa", "checkpoints, metrics.jsonl and TensorBoard logs")
    collapse_every: int = option(10, "steps between collapse statistics (std, RankMe)")


@dataclass(frozen=True)
class IJEPAConfig:
    """``selfsup pretrain ijepa``: every option, by section."""

    data: DataSection = field(default_factory=DataSection)
    model: IJEPAModelSection = field(default_factory=IJEPAModelSection)
    masks: MaskSection = field(default_factory=MaskSection)
    augment: IJEPAAugmentSection = field(default_factory=IJEPAAugmentSection)
    loss: IJEPALossSection = field(default_factory=IJEPALossSection)
    optim: IJEPAOptimSection = field(default_factory=IJEPAOptimSection)
    train: IJEPATrainSection = field(default_factory=IJEPATrainSection)
    eval: EvalSection = field(default_factory=EvalSection)
