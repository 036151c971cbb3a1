"""Linear regression probe on frozen features: ridge regression, closed form.

Used for the depth probe of the I-JEPA paper's low-level tasks (its Table 4: Clevr object
counting and depth; here on selfsup's shapes dataset). A linear head is trained on frozen
features h to predict a scalar target and scored by the mean absolute error on the test
split. Choices:

* **Standardised features**, as in :mod:`selfsup.eval.linear`: each dimension shifted and
  scaled by the training split's mean and standard deviation; the target is centred.
* **Closed form, not SGD.** Squared loss with an L2 penalty has the exact solution
  ``w = (X^T X + alpha N I)^-1 X^T y``; one Cholesky solve per alpha in float64 costs
  less than an epoch of SGD and has no learning rate to tune.
* **alpha picked on held-out data**: a seeded random ``val_fraction`` of the training split
  scores each alpha of the grid by MAE; the best is refitted on the whole training split.
* The constant predictor (the training mean) is reported beside it: features that carry no
  information about the target score that MAE.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

DEFAULT_ALPHAS: tuple[float, ...] = (1e-4, 1e-3, 1e-2, 1e-1, 1.0, 10.0)
_EPS = 1e-6


@dataclass(frozen=True)
class RegressionProbeResult:
    """Outcome of :func:`ridge_probe`, errors in the target's units.

    ``baseline_mae`` is the test MAE of predicting the training mean for every image;
    ``r2`` is 1 - SSE / SST on the test split (0 for the constant predictor).
    """

    mae: float
    rmse: float
    r2: float
    baseline_mae: float
    best_alpha: float
    val_mae: dict[float, float]
    num_train: int
    num_val: int


def _check(features: Tensor, targets: Tensor, name: str) -> None:
    if features.ndim != 2 or targets.shape != (features.shape[0],) or features.shape[0] < 1:
        raise ValueError(
            f"{name}: features (N, d) and targets (N,) must agree and N >= 1; got "
            f"{tuple(features.shape)} and {tuple(targets.shape)}."
        )
    if not (torch.isfinite(features).all() and torch.isfinite(targets).all()):
        raise ValueError(f"{name}: features and targets must be finite.")


def _fit(x: Tensor, y: Tensor, alpha: float) -> tuple[Tensor, Tensor, Tensor, float]:
    """Standardise ``x``, centre ``y`` and solve the ridge system: (mean, scale, w, bias)."""
    mean, scale = x.mean(0), (x.var(0, unbiased=False) + _EPS).sqrt()
    z = (x - mean) / scale
    bias = float(y.mean())
    gram = z.T @ z + alpha * len(z) * torch.eye(z.shape[1], dtype=z.dtype)
    w = torch.linalg.solve(gram, z.T @ (y - bias))  # SPD: exact up to rounding
    return mean, scale, w, bias


def _predict(fit: tuple[Tensor, Tensor, Tensor, float], x: Tensor) -> Tensor:
    mean, scale, w, bias = fit
    return ((x - mean) / scale) @ w + bias


def ridge_probe(
    train_features: Tensor,
    train_targets: Tensor,
    test_features: Tensor,
    test_targets: Tensor,
    *,
    alphas: Sequence[float] = DEFAULT_ALPHAS,
    val_fraction: float = 0.1,
    seed: int = 0,
) -> RegressionProbeResult:
    """Ridge regression of ``train_targets`` (N,) on ``train_features`` (N, d); test MAE.

    ``alphas``: penalties relative to N (the objective is mean squared error plus
    ``alpha * ||w||^2``); with one alpha, or fewer than 10 training samples, no validation
    split is held out.
    """
    _check(train_features, train_targets, "train")
    _check(test_features, test_targets, "test")
    if train_features.shape[1] != test_features.shape[1]:
        raise ValueError("train and test features must have the same dimension d.")
    if not alphas or any(a <= 0 for a in alphas):
        raise ValueError(f"alphas must be a non-empty list of positive numbers; got {alphas}.")
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction must lie in [0, 1); got {val_fraction}.")
    x, y = train_features.double(), train_targets.double()
    n_val = int(round(val_fraction * len(x))) if len(alphas) > 1 and len(x) >= 10 else 0
    val_mae: dict[float, float] = {}
    best = alphas[0]
    if n_val:
        order = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))
        fit_idx, val_idx = order[n_val:], order[:n_val]
        for alpha in alphas:
            pred = _predict(_fit(x[fit_idx], y[fit_idx], alpha), x[val_idx])
            val_mae[float(alpha)] = float((pred - y[val_idx]).abs().mean())
        best = min(val_mae, key=lambda a: val_mae[a])
    fit = _fit(x, y, best)
    tx, ty = test_features.double(), test_targets.double()
    err = _predict(fit, tx) - ty
    sst = float(((ty - ty.mean()) ** 2).sum())
    return RegressionProbeResult(
        mae=float(err.abs().mean()),
        rmse=float(err.pow(2).mean().sqrt()),
        r2=1.0 - float(err.pow(2).sum()) / sst if sst > 0 else 0.0,
        baseline_mae=float((ty - y.mean()).abs().mean()),
        best_alpha=float(best),
        val_mae=val_mae,
        num_train=len(x),
        num_val=n_val,
    )
