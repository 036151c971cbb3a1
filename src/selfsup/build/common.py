"""What every method's composition root shares: data loading, batch and run-dir checks,
trainer settings, the kNN monitor and the optimiser factory.

Only the CLI (and benchmarks) call the ``selfsup.build`` modules. They read config
objects and hand the library's classes explicit arguments, so every part stays usable on
its own from Python.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import nn

from selfsup import dist
from selfsup.build.budget import budget_before_data, fit_budget
from selfsup.config import ConfigError, to_dict, unknown_name_error
from selfsup.data.datasets import ImageData, load_dataset
from selfsup.engine.checkpoint import load_checkpoint
from selfsup.engine.optim import build_optimizer, parameter_groups
from selfsup.engine.protocol import PeriodicCallback
from selfsup.engine.trainer import CHECKPOINT_NAME, Trainer, TrainerSettings
from selfsup.eval import KNNMonitor, batchnorm_layers
from selfsup.models import is_model, list_models
from selfsup.recipes import DataSection, EvalSection, TrainSection
from selfsup.study.timing import Config


class MethodConfig(Protocol):
    """The sections every method's config has (``SimCLRConfig``, ``IJEPAConfig``)."""

    @property
    def data(self) -> DataSection: ...
    @property
    def train(self) -> TrainSection: ...
    @property
    def eval(self) -> EvalSection: ...


@dataclass(frozen=True)
class PretrainOutcome:
    """Where the run left its checkpoint, and its summary."""

    checkpoint: Path
    summary: Any


def load_split(data: DataSection, split: str, *, labelled: bool) -> ImageData:
    """Load one split of the configured dataset (decoded once, cached)."""
    return load_dataset(
        data.dataset,
        split,
        image_size=data.image_size,
        labelled=labelled,
        strict=data.strict,
        cache_dir=None if data.cache else False,
    )


def per_process_batch(batch: int, num_images: int, *, minimum: int = 1, why: str = "") -> int:
    """The per-process share of the global ``batch``; checks it against the processes and
    the dataset (before any data is augmented or step taken)."""
    world = dist.world_size()
    if batch < minimum:
        raise ConfigError(f"train.batch_size={batch}: {why or f'need at least {minimum}'}.")
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


# What a resumed run may change: where and how it logs, checkpoints and runs, the data's
# location, and the evaluation. Everything else (model, augmentation, masks, loss,
# optimiser, length, batch, seed, precision) shapes the weights or the steps to come.
_RESUME_MAY_CHANGE = (
    "data.dataset",
    "data.strict",
    "data.cache",
    "data.test_split",
    "train.device",
    "train.checkpoint_every",
    "train.log_every",
    "train.run_dir",
    "train.knn_every_epochs",
    "train.knn_max_train",
    "train.num_threads",
    "train.progress",
    "eval.",
)


def _resume_keys(config: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """The config's leaves that a resume must not change, as flat dotted keys."""
    flat: dict[str, Any] = {}
    for key, value in config.items():
        if isinstance(value, dict):
            flat.update(_resume_keys(value, f"{prefix}{key}."))
        elif not (prefix + key).startswith(_RESUME_MAY_CHANGE):
            flat[prefix + key] = value
    return flat


def check_run_dir(cfg: MethodConfig, method: str, *, resume: bool) -> None:
    """Refuse a run that would clobber ``run_dir/last.pt`` or resume a different run.

    A fresh run needs a ``run_dir`` without a checkpoint. ``resume`` needs one written by
    ``method`` with the same settings except those in ``_RESUME_MAY_CHANGE`` (else the
    weights would not load, or the resumed steps would follow another schedule); the
    error names every difference.
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
    if meta.get("method") != method:
        raise ConfigError(
            f"Cannot resume '{path}' with {method}: it was written by method "
            f"{meta.get('method')!r}. Choose another train.run_dir."
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


def warmup_steps(
    warmup_epochs: float, epochs: float, steps_per_epoch: int, total_steps: int
) -> int:
    """Steps of linear learning-rate warm-up: ``optim.warmup_epochs`` worth, at most the run.

    A warm-up as long as ``train.epochs`` would leave the run rising toward a peak it never
    reaches, usually because ``train.epochs`` was shortened on the command line and the
    recipe's warm-up was not; that is refused with the fix. (``total_steps`` may still cut
    it: benchmarks time a few steps of the full recipe.)
    """
    if warmup_epochs > 0 and warmup_epochs >= epochs:
        raise ConfigError(
            f"optim.warmup_epochs={warmup_epochs:g} is not below train.epochs={epochs:g}: "
            "the whole run would be learning-rate warm-up. Shorten the warm-up with the run, "
            f"e.g. optim.warmup_epochs={0.1 * epochs:g} (10 % of it), or set it to 0."
        )
    return min(total_steps, int(round(warmup_epochs * steps_per_epoch)))


def trainer_settings(t: TrainSection, *, per_process: int, total_steps: int) -> TrainerSettings:
    """The engine's settings from the config's train section."""
    return TrainerSettings(
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


def test_resolution(
    eval_size: int | None, train_size: int, *, patch_size: int | None = None
) -> int:
    """The side test images are resized to: ``eval.image_size`` (checked by
    :func:`check_test_size`), else the training size."""
    if eval_size is None:
        return train_size
    return check_test_size(eval_size, patch_size, "eval.image_size")


def check_test_size(size: int, patch_size: int | None, key: str) -> int:
    """``size`` if an encoder can be tested at that side, else a ConfigError naming ``key``.

    Training below the test size offsets the larger apparent object size of random-resized
    crops (FixRes, Touvron et al. 2019). A convolutional encoder takes any side; a ViT
    (``patch_size``) any multiple of its patch size, with position embeddings for the new
    grid (``VisionTransformer.pos_embed_for``).
    """
    if isinstance(size, bool) or size < 1:
        raise ConfigError(f"{key} must be a positive number of pixels, got {size}.")
    if patch_size is not None and size % patch_size:
        below = max(patch_size, size // patch_size * patch_size)
        raise ConfigError(
            f"{key}={size}: a ViT with {patch_size} px patches needs a side that is a "
            f"multiple of {patch_size}; use {below} or {below + patch_size}."
        )
    return size


def bn_recalibration_images(
    value: int, encoder: nn.Module, key: str = "eval.bn_recalibration_images"
) -> int:
    """``value`` if ``encoder`` can use it, else a ConfigError naming ``key``: 0 (off) or at
    least 2 images, and only for an encoder with BatchNorm layers."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 0 or value == 1:
        raise ConfigError(
            f"{key} must be 0 (keep the training statistics) or a number of images >= 2, "
            f"got {value!r}."
        )
    if value and not batchnorm_layers(encoder):
        raise ConfigError(
            f"{key}={value}: the encoder has no BatchNorm layers to re-estimate (a ViT uses "
            "LayerNorm); set it to 0."
        )
    return value


def knn_monitor(cfg: MethodConfig, steps_per_epoch: int, image_size: int) -> KNNMonitor:
    """The kNN monitor ``train.knn_every_epochs`` asks for, on the labelled splits, in the
    training precision (bf16 features cost a CPU run 2.5x less time than fp32 ones: 3.2
    against 8.2 s for 2000 images, ResNet-18 x0.5 at 32 px, one thread)."""
    train = load_split(cfg.data, cfg.data.train_split, labelled=True)
    test = load_split(cfg.data, cfg.data.test_split, labelled=True)
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
        image_size=image_size,
        max_train=cfg.train.knn_max_train,
        precision=cfg.train.precision,
    )


def make_optimizer(
    modules: list[nn.Module],
    *,
    name: str,
    lr: float,
    weight_decay: float,
    momentum: float = 0.9,
    betas: tuple[float, float] = (0.9, 0.999),
    decay_norm_and_bias: bool = False,
) -> torch.optim.Optimizer:
    """The optimiser over ``modules``, biases and norm parameters out of weight decay unless
    ``decay_norm_and_bias`` (:func:`selfsup.engine.optim.parameter_groups`)."""
    groups = parameter_groups(modules, weight_decay, decay_norm_and_bias=decay_norm_and_bias)
    return build_optimizer(
        name, groups, lr=lr, weight_decay=weight_decay, momentum=momentum, betas=betas
    )


def run_pretraining(
    cfg: Config,
    method: str,
    encoder: str,
    make_trainer: Callable[..., Trainer],
    *,
    resume: bool = False,
    callbacks: Sequence[PeriodicCallback] = (),
) -> PretrainOutcome:
    """Pre-train ``method`` as configured: checks before any data is read or step taken
    (encoder name, run folder), then ``make_trainer(cfg, images, callbacks=callbacks)``
    fits the train split (``callbacks``: extra trainer callbacks, e.g. the study's
    snapshots)."""
    if cfg.train.num_threads:
        torch.set_num_threads(cfg.train.num_threads)
    dist.init_from_env()
    if not is_model(encoder):
        raise unknown_name_error("model.encoder", encoder, list_models())
    # train.budget: checked now; a resumed run keeps the length fitted at its start.
    cfg = budget_before_data(cfg, resume=resume)
    check_run_dir(cfg, method, resume=resume)
    train = load_split(cfg.data, cfg.data.train_split, labelled=False)
    if not resume:
        cfg = fit_budget(cfg, train.images, make_trainer)
    trainer = make_trainer(cfg, train.images, callbacks=callbacks)
    summary = trainer.fit(resume=resume)
    return PretrainOutcome(checkpoint=trainer.checkpoint_path, summary=summary)
