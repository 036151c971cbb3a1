"""SimCLR (Chen et al., ICML 2020) composed from selfsup's parts.

Two views of each image are drawn from the augmentation family T (SPEC, "The family
T"), encoded by f (a ResNet, h = pooled features), projected by g (the projection head)
and compared with NT-Xent (the paper's Eq. 1). Only h is used after pre-training.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from selfsup.engine.protocol import StepResult
from selfsup.losses import nt_xent


class EncoderWithHead(nn.Module):
    """f followed by g: (B, 3, S, S) -> (B, out_dim). One module so DDP wraps it once."""

    def __init__(self, encoder: nn.Module, head: nn.Module) -> None:
        super().__init__()
        self.encoder = encoder
        self.head = head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.head(self.encoder(x))
        return out


class SimCLR(nn.Module):
    """The SimCLR method: augmentation, encoder f, projection head g and NT-Xent.

    Args:
        encoder: maps (B, 3, S, S) floats in [0, 1] to h (B, d).
        head: the projection head g, (B, d) -> (B, out_dim); never used for evaluation.
        augment: draws one view per image: uint8 (B, 3, H, W) -> float (B, 3, S, S).
            Called twice per step, so every random parameter is drawn per image and per
            view (SPEC: "not once per batch").
        temperature: NT-Xent temperature tau.
        resolution: progressive resizing (not in the paper): the training side as a pure
            function of the 0-based step (``selfsup.engine.schedules.ramp_size``). Where it
            differs from the augmentation's output side, both views are resized to it
            (bilinear, antialiased) before the encoder, which must then accept any input size (a
            ResNet: global average pooling). ``None``: the augmentation's side throughout.
    """

    def __init__(
        self,
        encoder: nn.Module,
        head: nn.Module,
        augment: Callable[[torch.Tensor], torch.Tensor],
        temperature: float = 0.5,
        *,
        resolution: Callable[[int], int] | None = None,
    ) -> None:
        super().__init__()
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0; got {temperature}.")
        self.net = EncoderWithHead(encoder, head)
        self.augment = augment
        self.temperature = temperature
        self.resolution = resolution
        # The DDP-wrapped net lives outside the registered submodules so that
        # state_dict() keys do not change with wrapping.
        self._train_net: list[nn.Module] = [self.net]

    @property
    def encoder(self) -> nn.Module:
        """The encoder f (unwrapped)."""
        return self.net.encoder

    def trainable_modules(self) -> list[nn.Module]:
        """f and g, trained together."""
        return [self.net]

    def wrap_trainable(self, wrap: Callable[[nn.Module], nn.Module]) -> None:
        """Route training forwards through ``wrap(net)`` (DDP in several processes)."""
        self._train_net = [wrap(self.net)]

    def training_step(self, images: torch.Tensor, step: int) -> StepResult:
        """Two views, one forward pass over both (BN sees 2B images), NT-Xent.

        ``images``: (B, 3, H, W) uint8 on the training device.
        """
        b = images.shape[0]
        # Both views in one call over the 2B images (every parameter is drawn per image,
        # so these are still two independent views): half the kernel launches of two
        # calls, which bound the step on a GPU (some 540 per call; benchmarks/RESULTS.md).
        views = self.augment(torch.cat([images, images], dim=0))
        logs: dict[str, torch.Tensor | float] = {}
        if self.resolution is not None:
            side = self.resolution(step)
            if side != views.shape[-1]:
                # Resampling the crop once more costs little next to the encoder; bilinear
                # weights are non-negative, so the views stay in [0, 1].
                views = F.interpolate(
                    views, size=(side, side), mode="bilinear", align_corners=False, antialias=True
                )
            logs["resolution"] = float(side)
        z = self._train_net[0](views)
        loss = nt_xent(z[:b], z[b:], temperature=self.temperature)
        return StepResult(loss=loss, logs=logs)

    def after_optimizer_step(self, step: int) -> None:
        """SimCLR has no momentum encoder: nothing to do."""

    def eval_encoder(self) -> nn.Module:
        """The encoder f: h, not g(h), is the representation (SPEC, Table 3)."""
        return self.net.encoder
