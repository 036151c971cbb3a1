"""Collapse statistics of a batch of representations, and a monitor that warns on collapse.

A joint-embedding method without negatives (I-JEPA) can collapse: every image mapped to
the same representation, or to a low-dimensional subspace. Two standard signals:

* **normalised standard deviation** (Jing et al. 2022; lightly's ``std_of_l2_normalized``):
  the per-dimension standard deviation across the batch of L2-normalised vectors,
  averaged over dimensions and multiplied by sqrt(D) so that isotropic features give
  about 1 and a collapsed batch gives 0;
* **RankMe** (Garrido et al., ICML 2023, Eq. 1): the effective rank
  ``exp(-sum_k p_k log p_k)`` with ``p_k = sigma_k / ||sigma||_1 + eps`` over the singular
  values sigma of the (B, D) matrix; between 1 (collapse) and min(B, D).
"""

from __future__ import annotations

import math
import warnings

import torch
from torch import Tensor

_RANKME_EPS = 1e-7  # the paper's epsilon


def _check_matrix(z: Tensor) -> Tensor:
    if z.ndim != 2 or z.shape[0] < 2:
        raise ValueError(f"representations must be (B, D) with B >= 2; got {tuple(z.shape)}.")
    return z.detach().float()


def normalized_std(z: Tensor) -> Tensor:
    """sqrt(D) x mean over dimensions of the batch std of L2-normalised rows; z: (B, D).

    Returns a 0-d float32 tensor (no host synchronisation).
    """
    z = _check_matrix(z)
    unit = torch.nn.functional.normalize(z, dim=1)
    return unit.std(dim=0).mean() * math.sqrt(z.shape[1])


def rankme(z: Tensor) -> Tensor:
    """RankMe effective rank of z: (B, D) -> 0-d float32 tensor in [1, min(B, D)]."""
    z = _check_matrix(z)
    sigma = torch.linalg.svdvals(z)
    p = sigma / sigma.sum().clamp_min(torch.finfo(sigma.dtype).tiny) + _RANKME_EPS
    return torch.exp(-(p * p.log()).sum())


class CollapseMonitor:
    """Computes both statistics every ``every`` steps; warns once when they near collapse.

    Args:
        every: compute on steps ``0, every, 2 * every, ...`` (an SVD per call; cheap for
            (256, 192), not free for (2048, 1280)); between, the last values are returned.
        min_std: warn when the normalised std falls below this (1 ~ healthy, 0 = collapse).
        min_rank_fraction: warn when RankMe falls below this fraction of min(B, D)
            (and below 2, whichever is larger).
    """

    def __init__(
        self, every: int = 10, min_std: float = 0.05, min_rank_fraction: float = 0.02
    ) -> None:
        if every < 1:
            raise ValueError(f"every must be >= 1; got {every}.")
        if not 0 <= min_std < 1 or not 0 <= min_rank_fraction < 1:
            raise ValueError(
                f"min_std and min_rank_fraction must lie in [0, 1); got {min_std}, "
                f"{min_rank_fraction}."
            )
        self.every, self.min_std, self.min_rank_fraction = every, min_std, min_rank_fraction
        self.last: dict[str, Tensor] = {}
        self.warned = False

    def update(self, step: int, z: Tensor) -> dict[str, Tensor]:
        """The statistics of z: (B, D) at ``step`` (or the last computed ones)."""
        if step % self.every == 0 or not self.last:
            std, rank = normalized_std(z), rankme(z)
            self.last = {"target_std": std, "target_rankme": rank}
            self._check(step, float(std), float(rank), min(z.shape))  # one sync per period
        return self.last

    def _check(self, step: int, std: float, rank: float, full_rank: int) -> None:
        min_rank = max(2.0, self.min_rank_fraction * full_rank)
        if self.warned or (std >= self.min_std and rank >= min_rank):
            return
        self.warned = True
        warnings.warn(
            f"Representation collapse at step {step}: normalised std {std:.3f} (healthy ~1, "
            f"warn below {self.min_std}), RankMe {rank:.1f} of at most {full_rank} (warn below "
            f"{min_rank:.1f}). Lower the learning rate, lengthen the warm-up or raise the EMA "
            "momentum.",
            RuntimeWarning,
            stacklevel=2,
        )
