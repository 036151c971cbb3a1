"""Average-pooled patch tokens: the I-JEPA evaluation representation (Assran et al. 2023, Sec. 5).

I-JEPA has no class token; its linear probes read the *average-pooled* patch tokens of the
target encoder, either of the last layer or of the last four layers concatenated (the paper's
"last 4 layers" probe, following DINO's evaluation). :class:`TokenPooling` wraps a token
encoder so that it looks like any other encoder to the evaluators: images -> (B, num_features).
"""

from __future__ import annotations

import torch
from torch import nn


class TokenPooling(nn.Module):
    """Mean over patch tokens of the last ``layers`` layers, concatenated on the feature axis.

    Args:
        encoder: a token model (``token_output = True``) whose ``forward(x)`` gives (B, N, D)
            and, for ``layers > 1``, ``intermediate_layers(x, n)`` n tensors (B, N, D), each
            after the final norm (:class:`~selfsup.models.vit.VisionTransformer`).
        layers: how many of the last layers to pool (1 or 4 in the paper).

    Shapes: x (B, C, H, W) -> (B, layers·D), oldest layer first; ``num_features = layers·D``.
    """

    def __init__(self, encoder: nn.Module, layers: int = 1) -> None:
        super().__init__()
        if not getattr(encoder, "token_output", False):
            raise ValueError(
                f"TokenPooling needs a token encoder (a ViT with token_output=True); "
                f"{type(encoder).__name__} already returns pooled features"
            )
        depth = getattr(encoder, "depth", None)
        if isinstance(layers, bool) or not isinstance(layers, int) or layers < 1:
            raise ValueError(f"layers must be a positive integer, got {layers!r}")
        if layers > 1 and (depth is None or not hasattr(encoder, "intermediate_layers")):
            raise ValueError(f"layers={layers} needs an encoder with intermediate_layers")
        if depth is not None and layers > depth:
            raise ValueError(f"layers={layers} exceeds the encoder's depth {depth}")
        self.encoder = encoder
        self.layers = layers
        width = getattr(encoder, "num_features", None)
        if not isinstance(width, int):
            raise ValueError(f"the encoder needs an int num_features, got {width!r}")
        self.num_features = layers * width

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.layers == 1:
            return self.encoder(x).mean(dim=1)
        # getattr: nn.Module.__getattr__ would type the attribute as Tensor | Module.
        outputs = getattr(self.encoder, "intermediate_layers")(x, self.layers)  # noqa: B009
        return torch.cat([tokens.mean(dim=1) for tokens in outputs], dim=-1)
