"""Optimisers: LARS as in SimCLR, SGD and AdamW from torch, and the weight-decay rule.

The weight-decay rule is one line (nanoGPT's): parameters with ``ndim <= 1`` (biases,
BatchNorm/LayerNorm scales and shifts) neither decay nor take LARS's trust ratio; every
other parameter decays. SimCLR excludes exactly BN parameters and biases from both (its
``EXCLUDE_FROM_WEIGHT_DECAY`` list); I-JEPA excludes biases and 1-D parameters from decay.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import nn
from torch.optim import Optimizer

OPTIMIZERS = ("lars", "sgd", "adamw")


def parameter_groups(
    modules: Iterable[nn.Module], weight_decay: float, *, decay_norm_and_bias: bool = False
) -> list[dict[str, Any]]:
    """Split the trainable parameters of ``modules`` into a decayed and a non-decayed group.

    Returns up to two groups (empty ones are left out): ``{"params": [...], "weight_decay":
    weight_decay}`` for parameters with ``ndim >= 2`` and ``{"params": [...],
    "weight_decay": 0.0, "lars_exclude": True}`` for ``ndim <= 1``. A parameter shared by
    several modules appears once; frozen parameters (``requires_grad=False``) are left out.
    ``decay_norm_and_bias=True`` puts every parameter in the decayed group (torch's plain
    ``weight_decay``, as lightly's and dkobak's SGD CIFAR-10 scripts run; under LARS the
    1-D parameters then also take the trust ratio, as in the LARS paper).
    """
    if weight_decay < 0:
        raise ValueError(f"weight_decay must be >= 0; got {weight_decay}.")
    seen: set[int] = set()
    decay: list[nn.Parameter] = []
    no_decay: list[nn.Parameter] = []
    for module in modules:
        for p in module.parameters():
            if id(p) in seen or not p.requires_grad:
                continue
            seen.add(id(p))
            (no_decay if p.ndim <= 1 and not decay_norm_and_bias else decay).append(p)
    if not seen:
        raise ValueError("The modules have no trainable parameters (requires_grad=True).")
    groups: list[dict[str, Any]] = []
    if decay:
        groups.append({"params": decay, "weight_decay": weight_decay})
    if no_decay:
        groups.append({"params": no_decay, "weight_decay": 0.0, "lars_exclude": True})
    return groups


class LARS(Optimizer):
    """Layer-wise Adaptive Rate Scaling (You et al. 2017) as in SimCLR's official code.

    Per parameter ``w`` with gradient ``g``, learning rate ``lr``, momentum ``m``, trust
    coefficient ``eta`` and weight decay ``wd`` (SimCLR ``lars_optimizer.py``)::

        g <- g + wd * w                                    # decay enters the trust ratio
        r  = eta * ||w|| / ||g||  if ||w|| > 0 and ||g|| > 0  else 1
        v <- m * v + lr * r * g                            # lr inside the momentum buffer
        w <- w - v        (nesterov: w <- w - (m * v + lr * r * g))

    Groups flagged ``lars_exclude=True`` (biases, norm parameters) take neither the
    weight decay nor the ratio (``r = 1``): plain momentum SGD. The learning rate sits
    inside the buffer as in SimCLR (TF momentum); with a constant ``lr`` this equals
    torch's SGD form ``v <- m v + g; w <- w - lr v``.
    """

    def __init__(
        self,
        params: Iterable[Any],
        lr: float,
        momentum: float = 0.9,
        weight_decay: float = 0.0,
        trust_coefficient: float = 1e-3,
        nesterov: bool = False,
    ) -> None:
        if lr < 0:
            raise ValueError(f"lr must be >= 0; got {lr}.")
        if not 0.0 <= momentum < 1.0:
            raise ValueError(f"momentum must lie in [0, 1); got {momentum}.")
        if weight_decay < 0:
            raise ValueError(f"weight_decay must be >= 0; got {weight_decay}.")
        if trust_coefficient <= 0:
            raise ValueError(f"trust_coefficient (eta) must be > 0; got {trust_coefficient}.")
        defaults = {
            "lr": lr,
            "momentum": momentum,
            "weight_decay": weight_decay,
            "trust_coefficient": trust_coefficient,
            "nesterov": nesterov,
            "lars_exclude": False,
        }
        super().__init__(params, defaults)

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        """Add a group; an excluded group must not ask for weight decay (it would be ignored)."""
        super().add_param_group(param_group)
        group = self.param_groups[-1]
        if group["lars_exclude"] and group["weight_decay"] != 0:
            raise ValueError(
                "A LARS group with lars_exclude=True gets no weight decay, but it has "
                f"weight_decay={group['weight_decay']}; set it to 0 (parameter_groups does)."
            )

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:  # type: ignore[override]
        """One update of every parameter with a gradient (see the class docstring)."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            if not params:
                continue
            if any(p.grad.is_sparse for p in params):
                raise RuntimeError("LARS does not support sparse gradients.")
            lr, m = group["lr"], group["momentum"]
            grads = [p.grad for p in params]
            if group["lars_exclude"]:
                steps = torch._foreach_mul(grads, lr)
            else:
                if group["weight_decay"] != 0:
                    grads = list(torch._foreach_add(grads, params, alpha=group["weight_decay"]))
                # Norms stay on the device: no synchronisation per parameter.
                w_norm = torch.stack(torch._foreach_norm(params))
                g_norm = torch.stack(torch._foreach_norm(grads))
                ratio = torch.where(
                    (w_norm > 0) & (g_norm > 0),
                    group["trust_coefficient"] * w_norm / g_norm,
                    torch.ones_like(w_norm),
                )
                scaled_lr = (ratio * lr).to(params[0].dtype)
                steps = torch._foreach_mul(grads, list(scaled_lr.unbind()))
            bufs = []
            for p in params:
                state = self.state[p]
                if "momentum_buffer" not in state:
                    state["momentum_buffer"] = torch.zeros_like(
                        p, memory_format=torch.preserve_format
                    )
                bufs.append(state["momentum_buffer"])
            torch._foreach_mul_(bufs, m)
            torch._foreach_add_(bufs, steps)
            if group["nesterov"]:
                torch._foreach_add_(steps, bufs, alpha=m)  # lr*r*g + m*v
                torch._foreach_sub_(params, steps)
            else:
                torch._foreach_sub_(params, bufs)
        return loss


def build_optimizer(
    name: str,
    groups: list[dict[str, Any]],
    *,
    lr: float,
    weight_decay: float,
    momentum: float = 0.9,
    betas: tuple[float, float] = (0.9, 0.999),
    nesterov: bool = False,
    trust_coefficient: float = 1e-3,
    eps: float = 1e-8,
) -> Optimizer:
    """An optimiser by name over parameter groups (from :func:`parameter_groups`).

    ``"lars"``: :class:`LARS` (momentum, trust coefficient, nesterov); ``"sgd"``: torch SGD
    (momentum, nesterov); ``"adamw"``: torch AdamW (betas, eps). A group's own
    ``weight_decay`` overrides the default ``weight_decay``; extra group keys
    (``lars_exclude``, ``lr_scale``) are carried along and ignored by SGD and AdamW.
    """
    if lr < 0:
        raise ValueError(f"lr must be >= 0; got {lr}.")
    if weight_decay < 0:
        raise ValueError(f"weight_decay must be >= 0; got {weight_decay}.")
    key = name.lower()
    if key == "lars":
        return LARS(
            groups,
            lr=lr,
            momentum=momentum,
            weight_decay=weight_decay,
            trust_coefficient=trust_coefficient,
            nesterov=nesterov,
        )
    if key == "sgd":
        return torch.optim.SGD(
            groups, lr=lr, momentum=momentum, weight_decay=weight_decay, nesterov=nesterov
        )
    if key == "adamw":
        return torch.optim.AdamW(groups, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay)
    close = difflib.get_close_matches(key, OPTIMIZERS, n=1)
    hint = f" Did you mean '{close[0]}'?" if close else ""
    raise ValueError(f"Unknown optimizer '{name}'; choose one of {', '.join(OPTIMIZERS)}." + hint)
