"""``selfsup study``: every arm pre-trained for the same wall-clock budget on the same data,
then measured by the same code; or, with a sweep, one arm per value of a config key.

Everything is checked before any work starts (budget, arm names, every run's config, the
swept values); each finished step is kept in ``out_dir`` so that running the same command
again resumes (a training run resumes from its last checkpoint, finished stages are read
back), and the report is written from what is on disk.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch
from torch import nn

from selfsup.config import ConfigError, apply_overrides
from selfsup.study.arms import (
    SCHEMAS,
    Arm,
    Config,
    arm_config,
    key_applies,
    parse_sweep,
    select_arms,
    slug,
)
from selfsup.study.measure import EvalSizes
from selfsup.study.timing import parse_budget

#: Below this a run is a few hundred steps at most on 2 CPU cores: nothing to compare.
MIN_BUDGET_S = 300.0
QUICK_BUDGET_S = 15.0
QUICK_SIZES = EvalSizes(
    knn_train=600,
    knn_test=300,
    linear_epochs=10,
    curve_train=300,
    curve_test=150,
    finetune_train=1000,  # 1 % = one image per class
    finetune_epochs=2,
    transforms_train=200,
    transforms_test=100,
    transforms_epochs=3,
    shapes_epochs=10,
    embedding_points=200,
    batch_size=256,
)
QUICK_OVERRIDES = ("train.batch_size=32", "train.checkpoint_every=50")


@dataclass(frozen=True)
class StudySettings:
    """What ``selfsup study`` runs; see ``selfsup study --help``."""

    out_dir: Path
    data: str = "cifar10"
    budget: str = "60m"
    arms: str | None = None
    overrides: tuple[str, ...] = ()
    sweep: str | None = None
    quick: bool = False
    device: str = "auto"
    threads: int | None = None
    calibrate_warmup: int = 5
    calibrate_steps: int = 20
    snapshots: int = 6
    shapes_n: int = 20000
    figures: bool = True
    sizes: EvalSizes = field(default_factory=EvalSizes)

    def budget_s(self) -> float:
        return QUICK_BUDGET_S if self.quick else parse_budget(self.budget)


@dataclass(frozen=True)
class Run:
    """One pre-training run of the study: an arm, with a sweep value when sweeping."""

    name: str
    arm: Arm
    config: Config
    sweep_value: str | None = None


def quick_settings(settings: StudySettings) -> StudySettings:
    """The ``--quick`` smoke test: 15 s per run, small evaluations, a small shapes set."""
    return replace(
        settings,
        calibrate_warmup=2,
        calibrate_steps=3,
        snapshots=2,
        shapes_n=400,
        sizes=QUICK_SIZES,
        overrides=(*QUICK_OVERRIDES, *settings.overrides),
    )


def plan_runs(settings: StudySettings) -> list[Run]:
    """Every run's config, built and checked now: bad input fails before any work."""
    budget = settings.budget_s()
    if not settings.quick and budget < MIN_BUDGET_S:
        raise ConfigError(
            f"--budget {settings.budget} is {budget:.0f} s per run, below the minimum of "
            f"{MIN_BUDGET_S / 60:.0f} minutes: too short to train anything worth comparing on "
            "a CPU. Give --budget 5m or more, or --quick for a smoke test."
        )
    base = [f"data.dataset={settings.data}", f"train.device={settings.device}"]
    base += [f"train.num_threads={settings.threads}"] if settings.threads else []
    user = list(settings.overrides)
    for item in user:
        key = item.split("=", 1)[0]
        if "=" not in item or not any(key_applies(s, key) for s in SCHEMAS.values()):
            raise ConfigError(f"Override {item!r}: no study arm has a config key {key!r}.")
    arms = select_arms(settings.arms)
    if settings.sweep is None:
        return [Run(a.name, a, _config(a, [*base, *user], settings.out_dir / a.name)) for a in arms]
    key, values = parse_sweep(settings.sweep)
    if settings.arms is None:
        arms = _sweep_arms(key, values)
    runs = []
    for arm in arms:
        if not key_applies(SCHEMAS[arm.method], key):
            raise ConfigError(f"--sweep {key}: arm {arm.name} ({arm.method}) has no such key.")
        for value in values:
            name = f"{arm.name}__{slug(f'{key}={value}')}"
            cfg = _config(arm, [*base, *user, f"{key}={value}"], settings.out_dir / name)
            runs.append(Run(name, arm, cfg, value))
    return runs


def _config(arm: Arm, overrides: list[str], run_dir: Path) -> Config:
    cfg = arm_config(arm, overrides)
    cfg = apply_overrides(cfg, [f"train.run_dir={run_dir}"])
    if arm.method == "ijepa" and not cfg.model.encoder.startswith("vit"):
        raise ConfigError(
            f"Arm {arm.name}: I-JEPA needs a ViT encoder (vit_tiny ... vit_huge); got "
            f"model.encoder={cfg.model.encoder}."
        )
    from selfsup.models import is_model, list_models

    if not is_model(cfg.model.encoder):
        raise ConfigError(
            f"Arm {arm.name}: model.encoder={cfg.model.encoder} is not a registered model; "
            f"choose from {', '.join(list_models())}."
        )
    return cfg


def _sweep_arms(key: str, values: list[str]) -> list[Arm]:
    """Default arms of a sweep: for an encoder sweep, those of the values' family (ResNets:
    SimCLR ResNet; ViTs: both ViT arms); otherwise every arm with the key."""
    from selfsup.study.arms import ARMS

    if key == "model.encoder":
        vit = all(v.startswith("vit") for v in values)
        names = ["simclr_vit", "ijepa_vit"] if vit else ["simclr_resnet"]
        return [ARMS[n] for n in names]
    return [a for a in ARMS.values() if key_applies(SCHEMAS[a.method], key)]


def random_encoder_factory(cfg: Config) -> Callable[[], nn.Module]:
    """A randomly initialised copy of ``cfg``'s encoder, pooled like the trained one."""
    from selfsup.build.ijepa import encoder_init as ijepa_init
    from selfsup.build.ijepa import encoder_spec as ijepa_spec
    from selfsup.build.simclr import encoder_spec as simclr_spec
    from selfsup.models import create_model
    from selfsup.models.pooling import TokenPooling
    from selfsup.recipes import IJEPAConfig

    is_ijepa = isinstance(cfg, IJEPAConfig)
    spec = ijepa_spec(cfg) if is_ijepa else simclr_spec(cfg)  # type: ignore[arg-type]
    init = ijepa_init(cfg) if is_ijepa else {}  # type: ignore[arg-type]

    def make() -> nn.Module:
        torch.manual_seed(0)
        net = create_model(spec["name"], **spec["kwargs"], **init)
        return TokenPooling(net) if getattr(net, "token_output", False) else net

    return make
