"""Encoders looked up by name: ``create_model("resnet50", width=2)``.

A factory is any callable returning an ``nn.Module`` whose ``forward`` maps images to
features and which carries an ``int`` attribute ``num_features`` (the feature size d the
projection head and the evaluation heads are built on). The registry knows nothing about
ResNets or ViTs; each family registers its own factories with :func:`register_model`.
"""

from __future__ import annotations

import difflib
import inspect
from collections.abc import Callable
from typing import Any, TypeVar

from torch import nn

Factory = Callable[..., nn.Module]
F = TypeVar("F", bound=Factory)

_REGISTRY: dict[str, Factory] = {}


class UnknownModelError(ValueError):
    """Raised by :func:`create_model` for a name that no factory was registered under."""


def register_model(name: str) -> Callable[[F], F]:
    """Decorator registering ``factory`` under ``name``; returns the factory unchanged.

    Registering a name twice is an error (it would silently shadow the first factory).
    """
    if not isinstance(name, str) or not name:
        raise ValueError(f"model name must be a non-empty string, got {name!r}")

    def decorator(factory: F) -> F:
        if name in _REGISTRY:
            raise ValueError(
                f"model {name!r} is already registered (by {_REGISTRY[name].__module__}); "
                "choose another name"
            )
        _REGISTRY[name] = factory
        return factory

    return decorator


def list_models() -> list[str]:
    """Names of every registered model, sorted."""
    return sorted(_REGISTRY)


def is_model(name: str) -> bool:
    """True when ``name`` is registered."""
    return name in _REGISTRY


def _suggest(word: str, choices: list[str]) -> str:
    close = difflib.get_close_matches(word, choices, n=1, cutoff=0.5)
    return f" Did you mean {close[0]!r}?" if close else ""


def model_arguments(name: str) -> tuple[str, ...] | None:
    """The keyword arguments the factory of ``name`` takes (None: it takes ``**kwargs``).

    Lets a caller pass each family only its own options (ResNets: width, cifar_stem;
    ViTs: img_size, patch_size).
    """
    if name not in _REGISTRY:
        raise UnknownModelError(f"unknown model {name!r}.{_suggest(name, list_models())}")
    params = inspect.signature(_REGISTRY[name]).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return None
    return tuple(
        k
        for k, p in params.items()
        if p.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    )


def _check_kwargs(name: str, kwargs: dict[str, Any]) -> None:
    """Reject keyword arguments the factory does not take, naming the closest valid one."""
    accepted = model_arguments(name)
    if accepted is None:
        return  # the factory takes **kwargs and validates them itself
    for key in kwargs:
        if key not in accepted:
            raise ValueError(
                f"model {name!r} has no argument {key!r}.{_suggest(key, list(accepted))} "
                f"Valid arguments: {', '.join(accepted) or '(none)'}."
            )


def create_model(name: str, **kwargs: Any) -> nn.Module:
    """Build the model registered under ``name`` with the factory's keyword arguments.

    Raises:
        UnknownModelError: ``name`` is not registered (the message suggests the closest).
        ValueError: a keyword argument the factory does not accept.
        TypeError: the factory returned a module without an ``int`` ``num_features``.
    """
    if name not in _REGISTRY:
        raise UnknownModelError(
            f"unknown model {name!r}.{_suggest(name, list_models())} "
            f"Registered models: {', '.join(list_models())}."
        )
    factory = _REGISTRY[name]
    _check_kwargs(name, kwargs)
    model = factory(**kwargs)
    num_features = getattr(model, "num_features", None)
    if not isinstance(model, nn.Module) or not isinstance(num_features, int):
        raise TypeError(
            f"factory for {name!r} must return an nn.Module with an int attribute "
            f"'num_features'; got {type(model).__name__} with num_features={num_features!r}"
        )
    return model
