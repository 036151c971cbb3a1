"""NT-Xent, the normalised temperature-scaled cross-entropy of SimCLR (Chen et al. 2020, eq. (1)).

For 2N views z_1 ... z_2N where (2k-1, 2k) are the two views of image k,

    sim(u, v) = uᵀv / (‖u‖‖v‖)
    ℓ(i, j)   = -log( exp(sim(z_i, z_j)/τ) / Σ_{k≠i} exp(sim(z_i, z_k)/τ) )
    L         = 1/(2N) Σ_k [ℓ(2k-1, 2k) + ℓ(2k, 2k-1)]

so every anchor has 1 positive and 2N-2 negatives. Here the views come as two tensors,
``z_a[k]`` and ``z_b[k]`` being the two views of image k.

**Several processes.** The negatives are the views of the *global* batch. Each process
gathers z_a and z_b from every process with :func:`selfsup.dist.gather_with_grad`,
scores its own 2N anchors against all 2·P·N views (the positive of local anchor i sits
at global index ``rank·N + i``) and averages over its own anchors. Every process holds
the same number of anchors, so the mean over processes of these per-process losses is
the single-process loss L on the concatenated batch; the gather's backward sums each
slice's gradient over processes, hence DDP's gradient *average* over processes equals
the gradient of L. Every process must pass the same N.

**Numerics.** The inputs are cast to float32 and autocast is switched off inside: in
bf16 (8-bit mantissa) a cosine similarity carries an error of about 4e-3, which τ = 0.05
magnifies twentyfold into the logits, and the squared norm of fp16 activations overflows
past 65504. Each row is first divided by its largest absolute entry (a constant for
autograd; the normalised direction does not depend on it) so that ‖z‖² cannot overflow
even for huge activations. Self-similarities are masked with -inf and the denominator
is a ``logsumexp``, so no ``exp`` is ever evaluated on a large number.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from selfsup import dist


def _check_temperature(temperature: float) -> None:
    if isinstance(temperature, bool) or not isinstance(temperature, (int, float)):
        raise ValueError(f"temperature must be a positive number, got {temperature!r}")
    if not (math.isfinite(temperature) and temperature > 0):
        raise ValueError(f"temperature must be a positive finite number, got {temperature}")


def _check_inputs(z_a: Tensor, z_b: Tensor, temperature: float) -> None:
    _check_temperature(temperature)
    if not isinstance(z_a, Tensor) or not isinstance(z_b, Tensor):
        raise TypeError(
            f"z_a and z_b must be tensors, got {type(z_a).__name__}, {type(z_b).__name__}"
        )
    if z_a.ndim != 2 or z_a.shape != z_b.shape:
        raise ValueError(
            "NT-Xent expects two views of shape (N, D) each, with the same shape; got "
            f"z_a {tuple(z_a.shape)} and z_b {tuple(z_b.shape)}"
        )
    if not (z_a.is_floating_point() and z_b.is_floating_point()):
        raise ValueError(f"z_a and z_b must be floating point, got {z_a.dtype}, {z_b.dtype}")
    if z_a.device != z_b.device:
        raise ValueError(f"z_a and z_b are on different devices: {z_a.device}, {z_b.device}")
    if z_a.shape[1] < 1:
        raise ValueError("NT-Xent needs embeddings with D >= 1 features, got D = 0")
    n_global = z_a.shape[0] * dist.world_size()
    if n_global < 2:
        raise ValueError(
            "NT-Xent needs at least 2 images per batch (over all processes), got "
            f"{n_global}: with a single image its two views have no negatives and the "
            "loss is identically 0. Increase the batch size."
        )


def _unit_rows(z: Tensor) -> Tensor:
    """Rows of z (N, D) as float32 unit vectors, without overflow in ‖z‖²."""
    z = z.float()
    # Detached per-row scale: normalize(z / s) = normalize(z), and because s is constant
    # for autograd, the gradient is exactly that of normalize(z).
    scale = z.detach().abs().amax(dim=1, keepdim=True).clamp_min(torch.finfo(z.dtype).tiny)
    return F.normalize(z / scale, dim=1)


def nt_xent(z_a: Tensor, z_b: Tensor, temperature: float = 0.5) -> Tensor:
    """NT-Xent loss L of SimCLR eq. (1) for the views z_a, z_b of the same N images.

    Args:
        z_a: (N, D) projections of the first views (any float dtype).
        z_b: (N, D) projections of the second views; ``z_b[k]`` is the positive of ``z_a[k]``.
        temperature: τ > 0 (0.1 ImageNet, 0.5 common CIFAR recipe).

    Returns:
        Scalar float32 tensor: the mean of ℓ over this process's 2N anchors, each scored
        against the 2·world_size·N views of the global batch.

    Raises:
        ValueError: shapes differ or are not (N, D), fewer than 2 images in the global
            batch, non-float inputs, or τ <= 0.
    """
    _check_inputs(z_a, z_b, temperature)
    n = z_a.shape[0]
    with torch.autocast(device_type=z_a.device.type, enabled=False):
        a = _unit_rows(z_a)
        b = _unit_rows(z_b)
        a_all = dist.gather_with_grad(a)  # (P·N, D), this process's rows at [rank·N, rank·N+N)
        b_all = dist.gather_with_grad(b)
        m = a_all.shape[0]  # P·N images in the global batch
        offset = dist.rank() * n

        anchors = torch.cat([a, b], dim=0)  # (2N, D)
        keys = torch.cat([a_all, b_all], dim=0)  # (2M, D): all a views, then all b views
        logits = anchors @ keys.T / temperature  # (2N, 2M)

        local = torch.arange(n, device=a.device)
        self_idx = torch.cat([offset + local, m + offset + local])  # anchor's own column
        pos_idx = torch.cat([m + offset + local, offset + local])  # its other view
        # The masks are comparisons, not index assignments: writing a Python scalar through
        # indices copies it to the device and makes the host wait (CUDA's sync debug mode).
        cols = torch.arange(2 * m, device=a.device)
        self_mask = cols[None, :] == self_idx[:, None]  # (2N, 2M)
        # k ≠ i in the denominator: exp(-inf) = 0 removes the self-similarity exactly.
        logits = logits.masked_fill(self_mask, float("-inf"))
        positives = logits.gather(1, pos_idx[:, None]).squeeze(1)  # (2N,)
        loss = torch.logsumexp(logits, dim=1) - positives
        return loss.mean()


class NTXentLoss(nn.Module):
    """Module form of :func:`nt_xent` holding the temperature τ.

    ``forward(z_a, z_b)``: (N, D), (N, D) -> scalar.
    """

    def __init__(self, temperature: float = 0.5) -> None:
        super().__init__()
        _check_temperature(temperature)
        self.temperature = float(temperature)

    def forward(self, z_a: Tensor, z_b: Tensor) -> Tensor:
        """Scalar NT-Xent loss of the two views (see :func:`nt_xent`)."""
        return nt_xent(z_a, z_b, self.temperature)

    def extra_repr(self) -> str:
        return f"temperature={self.temperature}"
