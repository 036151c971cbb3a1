"""The study's arms (method + recipe + overrides) and how a run's config is made from them.

An arm is one pre-training setup the study compares: by default SimCLR with a ResNet, SimCLR
with the same ViT-tiny as I-JEPA, and I-JEPA. Its config is the recipe under ``configs/``
with the study's overrides, the user's ``key=value`` overrides, and (in a sweep) one value
of the swept key.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeAlias

from selfsup.config import ConfigError, load_config, unknown_name_error
from selfsup.recipes import IJEPAConfig, SimCLRConfig

Config: TypeAlias = IJEPAConfig | SimCLRConfig
SCHEMAS: dict[str, type] = {"simclr": SimCLRConfig, "ijepa": IJEPAConfig}
#: Short names a sweep may use for common keys.
KEY_ALIASES = {
    "encoder": "model.encoder",
    "width": "model.width",
    "batch_size": "train.batch_size",
    "temperature": "loss.temperature",
    "ops": "augment.ops",
}


@dataclass(frozen=True)
class Arm:
    """One pre-training setup: ``method`` ("simclr" or "ijepa") trained from ``recipe`` (a
    file name under ``configs/``) with ``overrides`` (``key=value`` strings)."""

    name: str
    title: str
    method: str
    recipe: str
    overrides: tuple[str, ...] = ()


ARMS: dict[str, Arm] = {
    arm.name: arm
    for arm in (
        Arm("simclr_resnet", "SimCLR ResNet-18 x0.5", "simclr", "simclr_cifar10_cpu60m.yaml"),
        Arm("simclr_vit", "SimCLR ViT-tiny", "simclr", "simclr_cifar10_vit_tiny.yaml"),
        Arm("ijepa_vit", "I-JEPA ViT-tiny", "ijepa", "ijepa_cifar10_vit_tiny.yaml"),
    )
}
#: Every arm: the kNN monitor off (it would eat the budget), no progress bar.
STUDY_OVERRIDES = ("train.knn_every_epochs=0", "train.progress=false")


def recipe_path(name: str) -> Path:
    """The recipe file ``name``: under ``./configs`` first, else the repository's ``configs``
    beside the installed package (an editable install or a source checkout)."""
    tried = [Path.cwd() / "configs" / name, Path(__file__).resolve().parents[3] / "configs" / name]
    for path in tried:
        if path.is_file():
            return path
    raise FileNotFoundError(
        f"Recipe {name!r} not found; looked in {', '.join(str(p.parent) for p in tried)}. "
        "Run the study from a selfsup source checkout (its configs/ folder holds the recipes)."
    )


def select_arms(names: str | None) -> list[Arm]:
    """The arms named in a comma-separated list (None: all of them, in order)."""
    if names is None:
        return list(ARMS.values())
    chosen = []
    for name in (n.strip() for n in names.split(",") if n.strip()):
        if name not in ARMS:
            raise unknown_name_error("study arm", name, list(ARMS))
        chosen.append(ARMS[name])
    if not chosen:
        raise ConfigError(f"--arms names no arm; choose from {', '.join(ARMS)}.")
    return chosen


def arm_config(arm: Arm, overrides: list[str]) -> Config:
    """The arm's config: its recipe, the study's overrides, then ``overrides`` (those whose
    key the arm's method does not have are skipped: a SimCLR key does not reach I-JEPA)."""
    schema = SCHEMAS[arm.method]
    own = [o for o in overrides if key_applies(schema, o.split("=", 1)[0])]
    cfg: Config = load_config(
        schema, str(recipe_path(arm.recipe)), [*STUDY_OVERRIDES, *arm.overrides, *own]
    )
    return cfg


def key_applies(schema: type, key: str) -> bool:
    """Whether ``key`` (dotted) names a field of the config ``schema``."""
    node: Any = schema()
    for part in key.split("."):
        if not hasattr(node, "__dataclass_fields__") or part not in node.__dataclass_fields__:
            return False
        node = getattr(node, part)
    return True


def split_values(text: str) -> list[str]:
    """``a,b,[c,d]`` -> ``["a", "b", "[c,d]"]``: commas inside brackets stay in the value."""
    values, depth, current = [], 0, ""
    for char in text:
        depth += {"[": 1, "]": -1}.get(char, 0)
        if char == "," and depth == 0:
            values.append(current.strip())
            current = ""
        else:
            current += char
    values.append(current.strip())
    return [v for v in values if v]


def parse_sweep(text: str) -> tuple[str, list[str]]:
    """``KEY=V1,V2,...`` -> (dotted key, values); aliases as in :data:`KEY_ALIASES`."""
    if "=" not in text:
        raise ConfigError(
            f"--sweep {text!r} must be KEY=V1,V2,... e.g. encoder=resnet18,resnet34,resnet50."
        )
    key, values = text.split("=", 1)
    key = KEY_ALIASES.get(key.strip(), key.strip())
    parsed = split_values(values)
    if len(parsed) < 2:
        raise ConfigError(f"--sweep {text!r} needs at least two values, comma-separated.")
    return key, parsed


def slug(text: str) -> str:
    """A folder-safe name for a key or value (``augment.ops=[crop,color]`` -> ...)."""
    return re.sub(r"[^A-Za-z0-9._=-]+", "-", text).strip("-")
