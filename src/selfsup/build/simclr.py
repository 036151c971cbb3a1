"""SimCLR's composition root: its config -> augmentation, encoder, head, method, Trainer."""

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
from selfsup.config import ConfigError, to_dict
from selfsup.data.augment import build_augmentation, simclr_augmentation
from selfsup.engine.protocol import PeriodicCallback
from selfsup.engine.schedules import ramp_size, scale_learning_rate, warmup_cosine
from selfsup.engine.trainer import Trainer
from selfsup.methods.simclr import SimCLR
from selfsup.models import create_model, projection_head
from selfsup.models.pooling import TokenPooling
from selfsup.models.registry import model_arguments
from selfsup.models.vit import vit_patch_size
from selfsup.recipes import SimCLRConfig


def encoder_spec(cfg: SimCLRConfig) -> dict[str, Any]:
    """Name and keyword arguments that rebuild the encoder (saved in checkpoints).

    Each family gets its own options: ResNets width and cifar_stem, ViTs img_size (the
    training resolution) and patch_size.
    """
    m = cfg.model
    options = {
        "width": m.width,
        "cifar_stem": m.cifar_stem,
        "img_size": cfg.augment.size,
        "patch_size": m.patch_size,
    }
    accepted = model_arguments(m.encoder)
    kwargs = {k: v for k, v in options.items() if accepted is None or k in accepted}
    return {"name": m.encoder, "kwargs": kwargs}


def side_schedule(cfg: SimCLRConfig) -> Callable[..., int] | None:
    """Progressive resizing of ``augment.start_size`` as ``side_at(step, total_steps)``
    (``ramp_size`` with the config's sizes and ramp), checked now; ``None`` when it is off."""
    a = cfg.augment
    start = a.start_size
    if start is None:
        return None

    def side_at(step: int, total_steps: int) -> int:
        return ramp_size(
            step,
            total_steps=total_steps,
            start_size=start,
            end_size=a.size,
            ramp=a.size_ramp,
            multiple=a.size_multiple,
        )

    try:
        side_at(0, 1)  # bad sizes or ramp: an error now, not at the first step
    except ValueError as e:
        raise ConfigError(f"augment.start_size / size_ramp / size_multiple: {e}") from e
    return side_at


def build_simclr(cfg: SimCLRConfig, total_steps: int | None = None) -> SimCLR:
    """SimCLR from its config: encoder, head, augmentation, temperature and, given the
    run's ``total_steps``, the progressive-resizing schedule of ``augment.start_size``."""
    spec = encoder_spec(cfg)
    encoder = create_model(spec["name"], **spec["kwargs"])
    if getattr(encoder, "token_output", False):  # a ViT: h = the average patch token
        encoder = TokenPooling(encoder)
    d: int = getattr(encoder, "num_features")  # noqa: B009 - the registry contract
    head = projection_head(
        cfg.model.head,
        in_dim=d,
        hidden_dim=cfg.model.head_hidden_dim or d,
        out_dim=cfg.model.out_dim,
    )
    a = cfg.augment
    if a.ops:
        augment = build_augmentation(
            a.ops,
            size=a.size,
            strength=1.0 if a.strength is None else a.strength,
            crop_scale=(a.crop_scale_min, 1.0),
            antialias=a.antialias,
        )
    else:
        augment = simclr_augmentation(
            a.preset,
            size=a.size,
            strength=a.strength,
            blur=a.blur,
            crop_scale=(a.crop_scale_min, 1.0),
            antialias=a.antialias,
        )
    side_at = side_schedule(cfg)
    if side_at is not None and isinstance(encoder, TokenPooling):
        raise ConfigError(
            f"augment.start_size={a.start_size}: progressive resizing needs a convolutional "
            f"encoder; {cfg.model.encoder} trains on one patch grid ({a.size} px; other sides "
            "are for testing, eval.image_size). Remove augment.start_size."
        )
    # Built for evaluation (no run length), the method needs no schedule.
    resolution = None
    if side_at is not None and total_steps is not None:
        resolution = partial(side_at, total_steps=total_steps)
    return SimCLR(encoder, head, augment, temperature=cfg.loss.temperature, resolution=resolution)


def pretrain_simclr(
    cfg: SimCLRConfig, *, resume: bool = False, callbacks: Sequence[PeriodicCallback] = ()
) -> PretrainOutcome:
    """Pre-train SimCLR as configured: the final checkpoint's path and the run summary."""
    return run_pretraining(
        cfg, "simclr", cfg.model.encoder, simclr_trainer, resume=resume, callbacks=callbacks
    )


def simclr_trainer(
    cfg: SimCLRConfig,
    images: torch.Tensor,
    *,
    total_steps: int | None = None,
    callbacks: Sequence[PeriodicCallback] = (),
) -> Trainer:
    """The Trainer of a SimCLR run: method, optimiser, per-step schedule, settings, meta.

    ``images``: (N, 3, H, W) uint8 training images. ``total_steps`` defaults to
    ``train.epochs`` worth of global batches; ``callbacks`` are added to the kNN monitor
    that ``train.knn_every_epochs`` asks for (benchmarks pass timing callbacks here).
    """
    per_process = per_process_batch(
        cfg.train.batch_size,
        len(images),
        minimum=2,
        why="NT-Xent needs at least 2 images per batch (each view is contrasted with the "
        "other images); use train.batch_size=256 or so",
    )
    o, t = cfg.optim, cfg.train
    steps_per_epoch = len(images) // t.batch_size
    if total_steps is None:
        total_steps = max(1, math.ceil(t.epochs * steps_per_epoch))
    torch.manual_seed(cfg.train.seed)
    method = build_simclr(cfg, total_steps)
    token_model = isinstance(method.encoder, TokenPooling)
    test_size = test_resolution(
        cfg.eval.image_size, cfg.augment.size, patch_size=vit_patch_size(method.encoder)
    )
    warmup = warmup_steps(o.warmup_epochs, t.epochs, steps_per_epoch, total_steps)
    lr = scale_learning_rate(o.lr, t.batch_size, o.lr_scaling)
    optimizer_factory = partial(
        make_optimizer,
        name=o.name,
        lr=lr,
        weight_decay=o.weight_decay,
        momentum=o.momentum,
        decay_norm_and_bias=o.decay_norm_and_bias,
    )
    schedules: dict[str, Callable[[int], float]] = {
        "lr": partial(
            warmup_cosine,
            total_steps=total_steps,
            warmup_steps=warmup,
            base_value=lr,
            final_value=o.final_lr,
        )
    }
    monitors: list[PeriodicCallback] = list(callbacks)
    if t.knn_every_epochs > 0:
        monitors.append(knn_monitor(cfg, steps_per_epoch, test_size))
    settings = trainer_settings(t, per_process=per_process, total_steps=total_steps)
    meta = {
        "method": "simclr",
        "config": to_dict(cfg),
        "encoder": encoder_spec(cfg),
        "eval_encoder_prefix": "net.encoder.encoder." if token_model else "net.encoder.",
        "image_size": test_size,
        "bn_recalibration_images": bn_recalibration_images(
            cfg.eval.bn_recalibration_images, method.encoder
        ),
    }
    return Trainer(
        method,
        optimizer_factory,
        images,
        settings,
        schedules=schedules,
        callbacks=monitors,
        meta=meta,
    )
