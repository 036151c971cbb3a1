"""Config loading: defaults, YAML, overrides, unknown keys, type errors, round trip."""

from __future__ import annotations

from pathlib import Path

import pytest

from selfsup.config import ConfigError, describe, from_dict, load_config, parse_overrides, to_dict
from selfsup.recipes import SimCLRConfig

REPO = Path(__file__).resolve().parents[1]


def test_defaults_are_the_papers() -> None:
    cfg = load_config(SimCLRConfig)
    assert cfg.optim.name == "lars"
    assert cfg.optim.lr == 0.3 and cfg.optim.lr_scaling == "linear"
    assert cfg.eval.knn_k == 200 and cfg.eval.knn_temperature == 0.1


def test_yaml_then_overrides(tmp_path: Path) -> None:
    recipe = tmp_path / "r.yaml"
    recipe.write_text("optim:\n  lr: 0.5\ntrain:\n  epochs: 3\n  batch_size: 64\n")
    cfg = load_config(SimCLRConfig, recipe, ["train.epochs=7", "augment.ops=crop,color"])
    assert cfg.optim.lr == 0.5
    assert cfg.train.epochs == 7.0 and cfg.train.batch_size == 64
    assert cfg.augment.ops == ("crop", "color")


def test_unknown_key_names_it_and_suggests() -> None:
    with pytest.raises(ConfigError, match=r"optim\.lrr.*Did you mean 'optim\.lr'"):
        load_config(SimCLRConfig, None, ["optim.lrr=0.1"])
    with pytest.raises(ConfigError, match="Unknown config key 'trian'"):
        load_config(SimCLRConfig, None, ["trian.epochs=1"])


def test_type_errors_name_the_key() -> None:
    with pytest.raises(ConfigError, match="train.batch_size.*integer"):
        load_config(SimCLRConfig, None, ["train.batch_size=abc"])
    with pytest.raises(ConfigError, match="optim.name.*lars"):
        load_config(SimCLRConfig, None, ["optim.name=adam"])
    with pytest.raises(ConfigError, match="key=value"):
        parse_overrides(["optim.lr"])


def test_optional_values() -> None:
    cfg = load_config(SimCLRConfig, None, ["data.image_size=64", "augment.strength=none"])
    assert cfg.data.image_size == 64 and cfg.augment.strength is None


def test_round_trip_through_dict() -> None:
    cfg = load_config(SimCLRConfig, None, ["augment.ops=[crop, color]", "optim.lr=1.5"])
    assert from_dict(SimCLRConfig, to_dict(cfg)) == cfg


def test_every_recipe_in_configs_loads() -> None:
    recipes = sorted((REPO / "configs").glob("simclr*.yaml"))
    assert recipes, "configs/ should hold the SimCLR recipes"
    for recipe in recipes:
        load_config(SimCLRConfig, recipe)


def test_every_ijepa_recipe_in_configs_loads() -> None:
    from selfsup.recipes import IJEPAConfig

    recipes = sorted((REPO / "configs").glob("ijepa*.yaml"))
    assert len(recipes) >= 2, "configs/ should hold the CIFAR and ImageNet I-JEPA recipes"
    for recipe in recipes:
        load_config(IJEPAConfig, recipe)


def test_describe_lists_every_key() -> None:
    keys = [row[0] for row in describe(SimCLRConfig)]
    assert "optim.lr" in keys and "train.batch_size" in keys and "augment.ops" in keys


def test_fixed_length_tuples_are_checked() -> None:
    from selfsup.recipes import IJEPAConfig

    cfg = load_config(IJEPAConfig, None, ["masks.target_scale=0.1,0.3"])
    assert cfg.masks.target_scale == (0.1, 0.3)
    with pytest.raises(ConfigError, match="masks.target_scale.*2 values"):
        load_config(IJEPAConfig, None, ["masks.target_scale=0.1,0.2,0.3"])
