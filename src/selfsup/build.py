"""The composition root: turns a config into explicit objects and runs them.

Only the CLI calls this module. It reads config objects and hands the library's classes
explicit arguments, so every part stays usable on its own from Python.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import torch
from torch import nn

from selfsup import dist
from selfsup.config import ConfigError, to_dict, unknown_name_error
from selfsup.data.augment import build_augmentation, simclr_augmentation
from selfsup.data.datasets import ImageData, load_dataset
from selfsup.engine.checkpoint import load_checkpoint
from selfsup.engine.optim import build_optimizer, parameter_groups
from selfsup.engine.protocol import PeriodicCallback
from selfsup.engine.schedules import scale_learning_rate, warmup_cosine
from selfsup.engine.trainer import Trainer, TrainerSettings
from selfsup.eval import KNNMonitor
from selfsup.methods.simclr import SimCLR
from selfsup.models import create_model, is_model, list_models, projection_head
from selfsup.recipes import SimCLRConfig

CHECKPOINT_NAME = "last.pt"


def load_split(cfg: SimCLRConfig, split: str, *, labelled: bool) -> ImageData:
    """Load one split of the configured dataset (decoded once, cached)."""
    return load_dataset(
        cfg.data.dataset,
        split,
        image_size=cfg.data.image_size,
        labelled=labelled,
        strict=cfg.data.strict,
        cache_dir=None if cfg.data.cache else False,
    )


def encoder_spec(cfg: SimCLRConfig) -> dict[str, Any]:
    """Name and keyword arguments that rebuild the encoder (saved in checkpoints)."""
    return {
        "name": cfg.model.encoder,
        "kwargs": {"width": cfg.model.width, "cifar_stem": cfg.model.cifar_stem},
    }


def build_simclr(cfg: SimCLRConfig) -> SimCLR:
    """SimCLR from its config: encoder, head, augmentation, temperature."""
    spec = encoder_spec(cfg)
    encoder = create_model(spec["name"], **spec["kwargs"])
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
        )
    else:
        augment = simclr_augmentation(
            a.preset,
            size=a.size,
            strength=a.strength,
            blur=a.blur,
            crop_scale=(a.crop_scale_min, 1.0),
        )
    return SimCLR(encoder, head, augment, temperature=cfg.loss.temperature)


def _check_batch(cfg: SimCLRConfig, num_images: int) -> int:
    world = dist.world_size()
    batch = cfg.train.batch_size
    if batch < 2:
        raise ConfigError(
            f"train.batch_size={batch}: NT-Xent needs at least 2 images per batch (each view "
            "is contrasted with the other images). Use train.batch_size=256 or so."
        )
    if batch % world:
        raise ConfigError(
            f"train.batch_size={batch} (global) is not divisible by the {world} processes; "
            f"use a multiple of {world}."
        )
    if num_images < batch:
        raise ConfigError(
            f"The dataset has {num_images} images, fewer than one batch of {batch}; lower "
            "train.batch_size."
        )
    return batch // world


def check_run_dir(cfg: SimCLRConfig, *, resume: bool) -> None:
    """Refuse a run that would clobber ``run_dir/last.pt`` or resume a different model.

    A fresh run needs a ``run_dir`` without a checkpoint. ``resume`` needs one written by
    SimCLR with the same model, augmentation, loss, optimiser, length, batch, seed and
    precision (else the weights would not load, or the resumed steps would follow another
    schedule); the error names every difference.
    """
    path = Path(cfg.train.run_dir) / CHECKPOINT_NAME
    if not resume:
        if path.exists():
            raise FileExistsError(
                f"'{path}' exists from an earlier run: pass --resume to continue it, or "
                "choose another train.run_dir."
            )
        return
    meta = load_checkpoint(path).get("meta") or {}
    method = meta.get("method")
    if method != "simclr":
        raise ConfigError(
            f"Cannot resume '{path}' with simclr: it was written by method {method!r}. "
            "Choose another train.run_dir."
        )
    saved = _resume_keys(meta.get("config") or {})
    mine = _resume_keys(to_dict(cfg))
    diffs = [
        f"{k}={saved.get(k)!r} in the checkpoint, {mine.get(k)!r} in this run"
        for k in sorted(set(saved) | set(mine))
        if saved.get(k) != mine.get(k)
    ]
    if diffs:
        raise ConfigError(
            f"Cannot resume '{path}': its settings differ from this config ({'; '.join(diffs)}). "
            "Resume with the checkpoint's settings, or choose another train.run_dir."
        )


# What a resumed run must share with the checkpoint: the model (or the weights would not
# load) and everything that shapes the steps still to come (schedule length, batch, seed,
# augmentation, loss). Logging, checkpoint period, device and threads may change.
_RESUME_MUST_MATCH = (
    "model.",
    "augment.",
    "loss.",
    "optim.",
    "train.epochs",
    "train.batch_size",
    "train.seed",
    "train.precision",
)


def _resume_keys(config: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """The config's leaves that a resume must not change, as flat dotted keys."""
    flat: dict[str, Any] = {}
    for key, value in config.items():
        if isinstance(value, dict):
            flat.update(_resume_keys(value, f"{prefix}{key}."))
        elif (prefix + key).startswith(_RESUME_MUST_MATCH):
            flat[prefix + key] = value
    return flat


@dataclass(frozen=True)
class PretrainOutcome:
    """Where the run left its checkpoint, and its summary."""

    checkpoint: Path
    summary: Any


def pretrain_simclr(cfg: SimCLRConfig, *, resume: bool = False) -> PretrainOutcome:
    """Pre-train SimCLR as configured; returns the final checkpoint's path."""
    if cfg.train.num_threads:
        torch.set_num_threads(cfg.train.num_threads)
    dist.init_from_env()
    if not is_model(cfg.model.encoder):
        raise unknown_name_error("model.encoder", cfg.model.encoder, list_models())
    check_run_dir(cfg, resume=resume)  # before any data is read or step is taken
    train = load_split(cfg, cfg.data.train_split, labelled=False)
    trainer = simclr_trainer(cfg, train.images)
    summary = trainer.fit(resume=resume)
    return PretrainOutcome(checkpoint=trainer.checkpoint_path, summary=summary)


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
    per_process = _check_batch(cfg, len(images))
    torch.manual_seed(cfg.train.seed)
    method = build_simclr(cfg)
    o, t = cfg.optim, cfg.train
    steps_per_epoch = len(images) // t.batch_size
    if total_steps is None:
        total_steps = max(1, math.ceil(t.epochs * steps_per_epoch))
    warmup = int(round(o.warmup_epochs * steps_per_epoch))
    lr = scale_learning_rate(o.lr, t.batch_size, o.lr_scaling)
    optimizer_factory = partial(
        _make_optimizer, name=o.name, lr=lr, weight_decay=o.weight_decay, momentum=o.momentum
    )
    schedules: dict[str, Callable[[int], float]] = {
        "lr": partial(
            warmup_cosine,
            total_steps=total_steps,
            warmup_steps=min(warmup, total_steps),
            base_value=lr,
            final_value=o.final_lr,
        )
    }
    monitors: list[PeriodicCallback] = list(callbacks)
    if t.knn_every_epochs > 0:
        monitors.append(_knn_monitor(cfg, steps_per_epoch))
    settings = TrainerSettings(
        total_steps=total_steps,
        batch_size=per_process,
        run_dir=Path(t.run_dir),
        device=t.device,
        precision=t.precision,
        channels_last=t.channels_last,
        checkpoint_every=t.checkpoint_every,
        log_every=t.log_every,
        seed=t.seed,
        sync_batchnorm=t.sync_batchnorm,
        progress=t.progress,
        num_threads=t.num_threads,
    )
    meta = {
        "method": "simclr",
        "config": to_dict(cfg),
        "encoder": encoder_spec(cfg),
        "eval_encoder_prefix": "net.encoder.",
        "image_size": cfg.augment.size,
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


def _make_optimizer(
    modules: list[nn.Module], *, name: str, lr: float, weight_decay: float, momentum: float
) -> torch.optim.Optimizer:
    groups = parameter_groups(modules, weight_decay)
    return build_optimizer(name, groups, lr=lr, weight_decay=weight_decay, momentum=momentum)


def _knn_monitor(cfg: SimCLRConfig, steps_per_epoch: int) -> KNNMonitor:
    train = load_split(cfg, cfg.data.train_split, labelled=True)
    test = load_split(cfg, cfg.data.test_split, labelled=True)
    assert train.labels is not None and test.labels is not None
    return KNNMonitor(
        train.images,
        train.labels,
        test.images,
        test.labels,
        num_classes=train.num_classes,
        every_steps=max(1, int(round(cfg.train.knn_every_epochs * steps_per_epoch))),
        k=cfg.eval.knn_k,
        temperature=cfg.eval.knn_temperature,
        image_size=cfg.augment.size,
        max_train=cfg.train.knn_max_train,
    )
