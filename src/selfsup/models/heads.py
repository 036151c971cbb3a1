"""SimCLR projection head g (Chen et al. 2020, Sec. 2.1 eq. (2); SimCLRv2, Chen et al. 2020b).

The head maps the representation h (B, in_dim) to z (B, out_dim) on which the contrastive
loss is computed. It exists only for pre-training: it is discarded afterwards and
**never used for evaluation** -- linear probes, kNN and fine-tuning all read h, because
g(h) loses information the loss does not need (paper Table 3: rotation is predictable
from h at 67.6 % but from g(h) at 25.6 %).
"""

from __future__ import annotations

import torch
from torch import nn


class ProjectionHead(nn.Module):
    """MLP projection head: ``num_layers - 1`` blocks Linear → BN → ReLU, then a Linear.

    * ``num_layers=2`` (SimCLR v1, eq. (2)): z = W2·ReLU(BN(W1·h)).
    * ``num_layers=3`` (SimCLRv2): z = W3·ReLU(BN(W2·ReLU(BN(W1·h)))).
    * ``num_layers=1``: the linear projection z = W1·h of the paper's Fig. 8 ablation.

    Bias terms: a Linear followed by BN has no bias (BN's β plays that role); with
    ``batch_norm=False`` the hidden Linears have a bias. The output layer is a plain
    ``W·x`` without bias, BN or ReLU, exactly the formula above. *Departure from the
    official code:* google-research/simclr (``model_util.projection_head``, v1 and v2)
    puts a BatchNorm without centering (γ only) after the last Linear; we follow the
    paper's formula and keep z un-normalised, since NT-Xent L2-normalises z anyway.

    Args:
        in_dim: size d of h (the encoder's ``num_features``).
        hidden_dim: width of the hidden layers (the paper uses d).
        out_dim: size of z (128 in the paper).
        num_layers: number of Linear layers, >= 1.
        batch_norm: BN after each hidden Linear (True in SimCLR).

    Shapes: (B, in_dim) -> (B, out_dim). In training mode BN needs B >= 2.
    """

    def __init__(
        self,
        in_dim: int,
        hidden_dim: int,
        out_dim: int = 128,
        num_layers: int = 2,
        batch_norm: bool = True,
    ) -> None:
        super().__init__()
        for label, value in (("in_dim", in_dim), ("hidden_dim", hidden_dim), ("out_dim", out_dim)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{label} must be a positive int, got {value!r}")
        if isinstance(num_layers, bool) or not isinstance(num_layers, int) or num_layers < 1:
            raise ValueError(f"num_layers must be an int >= 1, got {num_layers!r}")
        layers: list[nn.Module] = []
        dim = in_dim
        for _ in range(num_layers - 1):
            layers.append(nn.Linear(dim, hidden_dim, bias=not batch_norm))
            if batch_norm:
                layers.append(nn.BatchNorm1d(hidden_dim))
            layers.append(nn.ReLU(inplace=True))
            dim = hidden_dim
        layers.append(nn.Linear(dim, out_dim, bias=False))
        self.mlp = nn.Sequential(*layers)
        self.in_dim = in_dim
        self.out_dim = out_dim
        self.num_layers = num_layers

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        """(B, in_dim) representation h -> (B, out_dim) projection z."""
        if h.ndim != 2 or h.shape[1] != self.in_dim:
            raise ValueError(
                f"ProjectionHead expects h of shape (B, {self.in_dim}), got {tuple(h.shape)}"
            )
        out: torch.Tensor = self.mlp(h)
        return out


_VERSIONS = {"1": 2, "v1": 2, "2": 3, "v2": 3}


def projection_head(
    version: str | int, in_dim: int, hidden_dim: int | None = None, out_dim: int = 128
) -> ProjectionHead:
    """The SimCLR v1 (2 layers) or v2 (3 layers) head; ``hidden_dim`` defaults to ``in_dim``.

    ``version`` is 1, 2, "1", "2", "v1" or "v2" (case-insensitive).
    """
    key = str(version).strip().lower()
    if isinstance(version, bool) or key not in _VERSIONS:
        raise ValueError(
            f"unknown projection head version {version!r}; use 1/'v1' (2 layers, SimCLR) "
            "or 2/'v2' (3 layers, SimCLRv2)"
        )
    return ProjectionHead(
        in_dim, in_dim if hidden_dim is None else hidden_dim, out_dim, num_layers=_VERSIONS[key]
    )
