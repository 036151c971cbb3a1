"""Collapse statistics of a batch of representations, and a monitor that warns on collapse.

A joint-embedding method without negatives (I-JEPA) can collapse: every image mapped to
the same representation, or to one that encodes only the patch position. Two signals,
both computed on what varies *between images* (so a target that depends on the position
alone counts as collapsed):

* **batch standard deviation** of the layer-normalised patch tokens: the std across the
  images of each (position, feature), averaged. The tokens have unit variance over the
  features, so the value is a fraction of the token scale; 0 = collapse.
* **RankMe** (Garrido et al., ICML 2023, Eq. 1): the effective rank
  ``exp(-sum_k p_k log p_k)``, ``p_k = sigma_k / ||sigma||_1 + eps``, of the batch of
  average-pooled tokens after subtracting their batch mean (the mean is what all images
  share); between 1 and min(B - 1, D).

A randomly initialised ViT already scores low on both (its tokens are dominated by the
position embedding), so the monitor warns on a *fall* from the best value seen in the run,
not on a fixed level.
"""

from __future__ import annotations

import warnings

import torch
from torch import Tensor

_RANKME_EPS = 1e-7  # the paper's epsilon


def rankme(z: Tensor) -> Tensor:
    """RankMe effective rank of z: (B, D) -> 0-d float32 tensor in [1, min(B, D)]."""
    if z.ndim != 2 or z.shape[0] < 2:
        raise ValueError(f"representations must be (B, D) with B >= 2; got {tuple(z.shape)}.")
    sigma = torch.linalg.svdvals(z.detach().float())
    p = sigma / sigma.sum().clamp_min(torch.finfo(sigma.dtype).tiny) + _RANKME_EPS
    return torch.exp(-(p * p.log()).sum())


def batch_std(tokens: Tensor) -> Tensor:
    """tokens (B, N, D) -> 0-d float32: std over the B images, averaged over (N, D)."""
    if tokens.ndim != 3 or tokens.shape[0] < 2:
        raise ValueError(f"tokens must be (B, N, D) with B >= 2; got {tuple(tokens.shape)}.")
    return tokens.detach().float().std(dim=0).mean()


def collapse_statistics(tokens: Tensor) -> dict[str, Tensor]:
    """``target_std`` and ``target_rankme`` (module docstring) of tokens (B, N, D)."""
    pooled = tokens.detach().float().mean(dim=1)
    return {
        "target_std": batch_std(tokens),
        "target_rankme": rankme(pooled - pooled.mean(dim=0, keepdim=True)),
    }


class CollapseMonitor:
    """Computes the statistics every ``every`` steps; warns once when they fall.

    Args:
        every: compute on steps ``0, every, 2 * every, ...`` (an SVD per call; cheap for
            (256, 192), not free for (2048, 1280)); between, the last values are returned.
        drop: warn when a statistic falls below ``drop`` times the best value seen so far.
        min_std: warn, whatever the history, when the batch std falls below this.
    """

    def __init__(self, every: int = 10, drop: float = 0.1, min_std: float = 1e-3) -> None:
        if every < 1:
            raise ValueError(f"every must be >= 1; got {every}.")
        if not 0 < drop < 1 or min_std < 0:
            raise ValueError(f"need 0 < drop < 1 and min_std >= 0; got {drop}, {min_std}.")
        self.every, self.drop, self.min_std = every, drop, min_std
        self.last: dict[str, Tensor] = {}
        self.best: dict[str, float] = {}
        self.warned = False

    def update(self, step: int, tokens: Tensor) -> dict[str, Tensor]:
        """The statistics of tokens (B, N, D) at ``step`` (or the last computed ones)."""
        if step % self.every == 0 or not self.last:
            self.last = collapse_statistics(tokens)
            self._check(step, {k: float(v) for k, v in self.last.items()})  # one sync
        return self.last

    def _check(self, step: int, now: dict[str, float]) -> None:
        fallen = [
            f"{k} {v:.3g} (best {self.best[k]:.3g})"
            for k, v in now.items()
            if k in self.best and v < self.drop * self.best[k]
        ]
        if now["target_std"] < self.min_std:
            fallen.append(f"target_std {now['target_std']:.3g} (< {self.min_std})")
        for k, v in now.items():
            self.best[k] = max(v, self.best.get(k, v))
        if fallen and not self.warned:
            self.warned = True
            warnings.warn(
                f"Representation collapse at step {step}: {', '.join(fallen)}. The target "
                "representations no longer differ between images. Lower the learning rate, "
                "lengthen the warm-up or raise the EMA momentum.",
                RuntimeWarning,
                stacklevel=3,
            )
