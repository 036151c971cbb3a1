"""What the training engine knows of a method (this protocol and nothing else) and of
the periodic callbacks it runs (a kNN monitor).

A method (SimCLR, I-JEPA) is an ``nn.Module`` that composes the parts (augmentation,
encoder, head, loss). The engine hands it a batch of uint8 images already on the
training device and gets back a :class:`StepResult`; it never looks inside.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import torch
from torch import nn


@dataclass
class StepResult:
    """What one training step returns.

    ``loss`` is the scalar to back-propagate (with its graph). ``logs`` holds detached
    scalar tensors or floats to record (the engine converts them at logging time only,
    so a step does not force a device synchronisation).
    """

    loss: torch.Tensor
    logs: dict[str, torch.Tensor | float] = field(default_factory=dict)


@runtime_checkable
class Method(Protocol):
    """The interface between a method and the engine.

    Methods subclass ``nn.Module`` so that ``state_dict``, ``to``, ``train`` and
    ``eval`` come from torch (the trainer checks this; the protocol leaves those methods
    out so that ``nn.Module``'s own signatures stay the reference for type checkers).
    ``state_dict()`` must not depend on DDP wrapping: methods keep wrapped modules
    outside their registered submodules.
    """

    def trainable_modules(self) -> list[nn.Module]:
        """The modules whose parameters the optimiser updates (unwrapped)."""
        ...

    def wrap_trainable(self, wrap: Callable[[nn.Module], nn.Module]) -> None:
        """Route training forwards through ``wrap(module)`` (DDP) for each trainable module.

        Frozen modules (an EMA target encoder) are never wrapped.
        """
        ...

    def training_step(self, images: torch.Tensor, step: int) -> StepResult:
        """One step's forward pass and loss.

        ``images``: (B, 3, H, W) uint8 on the training device, this process's share of
        the global batch. Augmentation happens inside the method, on that device.
        """
        ...

    def after_optimizer_step(self, step: int) -> None:
        """Hook run after each optimiser step (EMA updates); may do nothing."""
        ...

    def eval_encoder(self) -> nn.Module:
        """The encoder used for evaluation: float images (B, 3, S, S) in [0, 1] -> (B, d)."""
        ...


class PeriodicCallback(Protocol):
    """Called every ``every_steps`` completed steps with (steps completed, unwrapped method).

    Runs on the main process only, while the others wait at their next collective, so
    it must not communicate (nor run a DDP-wrapped module). The returned scalars are
    logged; the method is put back in training mode afterwards.
    """

    every_steps: int

    def __call__(self, step: int, method: Method) -> dict[str, float]: ...
