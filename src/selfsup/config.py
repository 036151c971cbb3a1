"""Typed configuration: frozen dataclasses, YAML recipes and ``key=value`` overrides.

Precedence: dataclass defaults, then the YAML recipe, then command-line overrides.
Keys are dotted paths (``optim.lr=0.5``); an unknown key is an error that names it and
suggests the closest valid one. Config objects stop at the CLI: library classes take
explicit arguments.
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import yaml

C = TypeVar("C")


class ConfigError(ValueError):
    """A recipe or override that does not fit the config schema."""


def _suggest(name: str, valid: Iterable[str]) -> str:
    close = difflib.get_close_matches(name, list(valid), n=1, cutoff=0.5)
    return f" Did you mean '{close[0]}'?" if close else ""


def unknown_name_error(kind: str, name: str, valid: Iterable[str]) -> ConfigError:
    """An error for an unknown ``kind`` called ``name``, listing the valid ones."""
    valid = sorted(valid)
    return ConfigError(
        f"Unknown {kind} '{name}'.{_suggest(name, valid)} Valid: {', '.join(valid)}."
    )


def dotted_keys(cls: type, prefix: str = "") -> list[str]:
    """Every leaf key of a nested config dataclass, as dotted paths."""
    return [row[0] for row in describe(cls, prefix)]


def _coerce(value: Any, tp: Any, key: str) -> Any:
    """Convert a YAML/CLI value to the annotated type, or raise naming the key."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        is_none = value is None or (isinstance(value, str) and value.lower() in ("none", "null"))
        if is_none and type(None) in args:
            return None
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, key)
            except ConfigError:
                pass
        raise ConfigError(f"'{key}': cannot read {value!r} as {tp}.")
    if origin is typing.Literal:
        if value in args:
            return value
        if isinstance(value, str):
            for a in args:
                if str(a) == value:
                    return a
        choices = ", ".join(str(a) for a in args)
        raise ConfigError(f"'{key}' must be one of {choices}; got {value!r}.")
    if origin is tuple:
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"'{key}' must be a list; got {value!r}.")
        if args and args[-1] is not Ellipsis:  # fixed length, e.g. tuple[float, float]
            if len(value) != len(args):
                raise ConfigError(f"'{key}' must be a list of {len(args)} values; got {value!r}.")
            return tuple(_coerce(v, t, key) for v, t in zip(value, args, strict=True))
        inner = args[0] if args else str
        return tuple(_coerce(v, inner, key) for v in value)
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "1", "yes", "on"):
            return True
        if isinstance(value, str) and value.lower() in ("false", "0", "no", "off"):
            return False
        raise ConfigError(f"'{key}' must be true or false; got {value!r}.")
    if tp is int:
        if isinstance(value, bool):
            raise ConfigError(f"'{key}' must be an integer; got {value!r}.")
        try:
            f = float(value)
        except (TypeError, ValueError):
            raise ConfigError(f"'{key}' must be an integer; got {value!r}.") from None
        if not f.is_integer():
            raise ConfigError(f"'{key}' must be an integer; got {value!r}.")
        return int(f)
    if tp is float:
        if isinstance(value, bool):
            raise ConfigError(f"'{key}' must be a number; got {value!r}.")
        try:
            return float(value)
        except (TypeError, ValueError):
            raise ConfigError(f"'{key}' must be a number; got {value!r}.") from None
    if tp is str:
        if isinstance(value, (dict, list)):
            raise ConfigError(f"'{key}' must be a string; got {value!r}.")
        return str(value)
    raise ConfigError(f"'{key}': unsupported type {tp}.")


def _build(cls: type[C], values: Mapping[str, Any], prefix: str) -> C:
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    valid = dotted_keys(cls, prefix)
    for key in values:
        if key not in names:
            full = f"{prefix}{key}"
            raise ConfigError(f"Unknown config key '{full}'.{_suggest(full, valid)}")
    kwargs: dict[str, Any] = {}
    for f in dataclasses.fields(cls):  # type: ignore[arg-type]
        if f.name not in values:
            continue
        tp = hints[f.name]
        v = values[f.name]
        key = f"{prefix}{f.name}"
        if dataclasses.is_dataclass(tp):
            if not isinstance(v, Mapping):
                raise ConfigError(f"'{key}' is a section; give its keys, e.g. {key}.<name>=...")
            kwargs[f.name] = _build(tp, v, f"{key}.")  # type: ignore[arg-type]
        else:
            kwargs[f.name] = _coerce(v, tp, key)
    return cls(**kwargs)


def parse_overrides(items: Iterable[str]) -> dict[str, Any]:
    """Turn ``["optim.lr=0.5", "train.epochs=10"]`` into a nested dict (values parsed as YAML)."""
    nested: dict[str, Any] = {}
    for item in items:
        if "=" not in item:
            raise ConfigError(
                f"Override '{item}' is not of the form key=value (e.g. optim.lr=0.5)."
            )
        key, raw = item.split("=", 1)
        key = key.strip()
        if not key:
            raise ConfigError(f"Override '{item}' has an empty key.")
        value = yaml.safe_load(raw) if raw.strip() else ""
        node = nested
        parts = key.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"Override '{item}' conflicts with another override.")
        node[parts[-1]] = value
    return nested


def _merge(base: dict[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in extra.items():
        if isinstance(v, Mapping) and isinstance(out.get(k), Mapping):
            out[k] = _merge(dict(out[k]), v)
        else:
            out[k] = v
    return out


def load_config(cls: type[C], path: str | Path | None = None, overrides: Iterable[str] = ()) -> C:
    """Defaults of ``cls``, then the YAML file at ``path``, then ``key=value`` overrides."""
    values: dict[str, Any] = {}
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise ConfigError(f"Config file '{p}' does not exist. Recipes live in configs/.")
        loaded = yaml.safe_load(p.read_text()) or {}
        if not isinstance(loaded, dict):
            raise ConfigError(f"Config file '{p}' must hold a mapping of sections.")
        values = _merge(values, loaded)
    values = _merge(values, parse_overrides(overrides))
    return _build(cls, values, "")


def to_dict(cfg: Any) -> dict[str, Any]:
    """A plain nested dict of a config dataclass (YAML- and checkpoint-friendly)."""
    out: dict[str, Any] = dataclasses.asdict(cfg)

    def fix(node: Any) -> Any:
        if isinstance(node, dict):
            return {k: fix(v) for k, v in node.items()}
        if isinstance(node, tuple):
            return [fix(v) for v in node]
        return node

    fixed: dict[str, Any] = fix(out)
    return fixed


def from_dict(cls: type[C], values: Mapping[str, Any]) -> C:
    """Rebuild a config dataclass from :func:`to_dict` output (e.g. from a checkpoint)."""
    return _build(cls, values, "")


def _type_name(tp: Any) -> str:
    if typing.get_origin(tp) is typing.Literal:
        return "|".join(str(a) for a in typing.get_args(tp))
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def describe(cls: type, prefix: str = "") -> list[tuple[str, str, str, str]]:
    """(key, type, default, help) for every leaf key: the CLI's ``--help`` listing."""
    rows: list[tuple[str, str, str, str]] = []
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        tp = hints[f.name]
        if dataclasses.is_dataclass(tp):
            rows += describe(tp, f"{prefix}{f.name}.")  # type: ignore[arg-type]
        else:
            default = f.default if f.default is not dataclasses.MISSING else ""
            help_text = str(f.metadata.get("help", ""))
            rows.append((f"{prefix}{f.name}", _type_name(tp), repr(default), help_text))
    return rows


def apply_overrides(cfg: C, overrides: Iterable[str]) -> C:
    """A copy of ``cfg`` with ``key=value`` overrides applied (validated like a recipe)."""
    values = _merge(to_dict(cfg), parse_overrides(overrides))
    return _build(type(cfg), values, "")
