"""I-JEPA's composition root: its config -> ViT, predictor, masks, method, Trainer."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any

import torch

from selfsup.build.common import (
    PretrainOutcome,
    bn_recalibration_images,
    knn_monitor,
    make_optimizer,
    per_process_batch,
    run_pretraining,
    test_resolution,
    trainer_settings,
    warmup_steps,
)
from selfsup.config import ConfigError, to_dict, unknown_name_error
from selfsup.data.augment import build_augmentation
from selfsup.engine.protocol import PeriodicCallback
from selfsup.engine.schedules import (
    cosine_schedule,
    linear_schedule,
    scale_learning_rate,
    warmup_cosine,
)
from selfsup.engine.trainer import Trainer
from selfsup.eval.collapse import CollapseMonitor
from selfsup.masks import MaskCollator, MultiBlockMaskSampler
from selfsup.methods.ijepa import IJEPA
from selfsup.models import create_model, is_model, list_models
from selfsup.models.predictor import IJEPAPredictor
from selfsup.models.registry import model_arguments
from selfsup.models.vit import VisionTransformer
from selfsup.recipes import IJEPAConfig

# The batch the paper's learning rates were set for (ViT-H/14, 16 GPUs x 128).
PAPER_BATCH = 2048


def encoder_spec(cfg: IJEPAConfig) -> dict[str, Any]:
    """Name and keyword arguments that rebuild the encoder (saved in checkpoints)."""
    return {
        "name": cfg.model.encoder,
        "kwargs": {"img_size": cfg.augment.size, "patch_size": cfg.model.patch_size},
    }


def encoder_init(cfg: IJEPAConfig) -> dict[str, Any]:
    """Keyword arguments that only shape the initial weights (not saved in checkpoints)."""
    return {"drop_path_rate": cfg.model.drop_path, "patch_embed_std": cfg.model.patch_embed_std}


def build_ijepa(cfg: IJEPAConfig, total_steps: int) -> IJEPA:
    """I-JEPA from its config; ``total_steps`` sets the EMA momentum schedule's length."""
    m = cfg.model
    if not is_model(m.encoder):
        raise unknown_name_error("model.encoder", m.encoder, list_models())
    if cfg.augment.size % m.patch_size:
        raise ConfigError(
            f"augment.size={cfg.augment.size} is not a multiple of model.patch_size="
            f"{m.patch_size}; use e.g. augment.size=32 with patch_size=4, or 224 with 14 or 16."
        )
    spec = encoder_spec(cfg)
    takes = model_arguments(m.encoder)
    vits = [n for n in list_models() if "patch_size" in (model_arguments(n) or ())]
    encoder = (
        create_model(spec["name"], **spec["kwargs"], **encoder_init(cfg))
        if takes is None or "patch_size" in takes
        else None
    )
    if not isinstance(encoder, VisionTransformer):
        raise ConfigError(
            f"model.encoder={m.encoder!r} is not a ViT; I-JEPA needs a token encoder "
            f"(its context encoder drops masked patches): {', '.join(vits)}."
        )
    heads = m.predictor_heads or encoder.num_heads
    predictor = IJEPAPredictor(
        grid=encoder.grid,
        embed_dim=encoder.num_features,
        predictor_dim=m.predictor_dim,
        depth=m.predictor_depth,
        num_heads=heads,
    )
    k = cfg.masks
    sampler = MultiBlockMaskSampler(
        grid=encoder.grid,
        num_targets=k.num_targets,
        target_scale=k.target_scale,
        target_aspect=k.target_aspect,
        context_scale=k.context_scale,
        min_context=k.min_context,
    )
    a = cfg.augment
    augment = build_augmentation(
        ["crop"],
        size=a.size,
        crop_scale=(a.crop_scale_min, 1.0),
        antialias=a.antialias,
        probabilities={"flip": 0.5 if a.flip else 0.0},
    )
    o = cfg.optim
    momentum = partial(linear_schedule, total_steps=total_steps, start=o.ema_start, end=o.ema_end)
    return IJEPA(
        encoder,
        predictor,
        MaskCollator(sampler, batching=k.batching),
        augment,
        momentum,
        loss=cfg.loss.kind,
        eval_layers=m.eval_layers,
        monitor=CollapseMonitor(every=cfg.train.collapse_every),
        target_layers=m.target_layers,
        mask_repeats=k.repeats,
    )


def ijepa_trainer(
    cfg: IJEPAConfig,
    images: torch.Tensor,
    *,
    total_steps: int | None = None,
    callbacks: Sequence[PeriodicCallback] = (),
) -> Trainer:
    """The Trainer of an I-JEPA run: method, AdamW, lr and weight-decay schedules, meta.

    ``images``: (N, 3, H, W) uint8 training images. ``total_steps`` defaults to
    ``train.epochs`` worth of global batches.
    """
    t, o = cfg.train, cfg.optim
    per_process = per_process_batch(
        t.batch_size,
        len(images),
        minimum=2,
        why="the collapse statistics compare images across the batch; use 2 or more",
    )
    steps_per_epoch = len(images) // t.batch_size
    if total_steps is None:
        total_steps = max(1, math.ceil(t.epochs * steps_per_epoch))
    torch.manual_seed(t.seed)
    method = build_ijepa(cfg, total_steps)
    test_size = test_resolution(
        cfg.eval.image_size, cfg.augment.size, patch_size=cfg.model.patch_size
    )
    # Learning rates were set for batch 2048; lr_scaling rescales all three with the batch.
    scale = scale_learning_rate(1.0, t.batch_size, o.lr_scaling) / scale_learning_rate(
        1.0, PAPER_BATCH, o.lr_scaling
    )
    warmup = warmup_steps(o.warmup_epochs, t.epochs, steps_per_epoch, total_steps)
    schedules: dict[str, Callable[[int], float]] = {
        "lr": partial(
            warmup_cosine,
            total_steps=total_steps,
            warmup_steps=warmup,
            base_value=o.lr * scale,
            final_value=o.final_lr * scale,
            warmup_start_value=o.start_lr * scale,
        ),
        "weight_decay": partial(
            cosine_schedule, total_steps=total_steps, start=o.weight_decay, end=o.final_weight_decay
        ),
    }
    optimizer_factory = partial(
        make_optimizer, name="adamw", lr=o.lr * scale, weight_decay=o.weight_decay, betas=o.betas
    )
    monitors: list[PeriodicCallback] = list(callbacks)
    if t.knn_every_epochs > 0:
        monitors.append(knn_monitor(cfg, steps_per_epoch, test_size))
    meta = {
        "method": "ijepa",
        "config": to_dict(cfg),
        "encoder": encoder_spec(cfg),
        "eval_encoder_prefix": "target_encoder.",
        "eval_layers": cfg.model.eval_layers,
        "image_size": test_size,
        "bn_recalibration_images": bn_recalibration_images(
            cfg.eval.bn_recalibration_images, method.target_encoder
        ),
    }
    return Trainer(
        method,
        optimizer_factory,
        images,
        trainer_settings(t, per_process=per_process, total_steps=total_steps),
        schedules=schedules,
        callbacks=monitors,
        meta=meta,
    )


def pretrain_ijepa(
    cfg: IJEPAConfig, *, resume: bool = False, callbacks: Sequence[PeriodicCallback] = ()
) -> PretrainOutcome:
    """Pre-train I-JEPA as configured: the final checkpoint's path and the run summary."""
    return run_pretraining(
        cfg, "ijepa", cfg.model.encoder, ijepa_trainer, resume=resume, callbacks=callbacks
    )
