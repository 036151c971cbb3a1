"""Ridge regression probe (selfsup.eval.regression) against closed-form cases and a naive
least-squares transcription."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from selfsup.eval.regression import ridge_probe


def data(n: int, d: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=g) * torch.linspace(0.1, 10, d) + 3.0
    return x, torch.randn(n, generator=g)


def test_an_exact_linear_target_is_recovered() -> None:
    x, _ = data(200, 8, 0)
    w = torch.linspace(-2, 2, 8)
    tx, _ = data(50, 8, 1)
    r = ridge_probe(x, x @ w + 7.0, tx, tx @ w + 7.0, alphas=(1e-10,))
    assert r.mae < 1e-5 and r.r2 == pytest.approx(1.0) and r.num_val == 0
    assert r.baseline_mae > 1.0


def test_matches_a_naive_augmented_least_squares_solution() -> None:
    x, y = data(120, 5, 2)
    tx, ty = data(40, 5, 3)
    alpha = 0.3
    r = ridge_probe(x, y, tx, ty, alphas=(alpha,))
    # Naive: standardise with the training statistics, centre y, append sqrt(alpha N) I rows.
    xs, ys = x.numpy().astype(np.float64), y.numpy().astype(np.float64)
    mean, std = xs.mean(0), np.sqrt(xs.var(0) + 1e-6)
    z = (xs - mean) / std
    a = np.vstack([z, np.sqrt(alpha * len(z)) * np.eye(5)])
    b = np.concatenate([ys - ys.mean(), np.zeros(5)])
    w = np.linalg.lstsq(a, b, rcond=None)[0]
    pred = ((tx.numpy() - mean) / std) @ w + ys.mean()
    err = pred - ty.numpy()
    assert r.mae == pytest.approx(np.abs(err).mean(), rel=1e-9)
    assert r.rmse == pytest.approx(np.sqrt((err**2).mean()), rel=1e-9)


def test_uninformative_features_score_the_constant_predictor() -> None:
    x, y = data(400, 20, 4)
    tx, ty = data(400, 20, 5)
    r = ridge_probe(x, y, tx, ty)
    assert r.best_alpha == 10.0 and r.num_val == 40 and len(r.val_mae) == 6
    assert r.mae == pytest.approx(r.baseline_mae, rel=0.02) and abs(r.r2) < 0.02


def test_bad_input_is_named() -> None:
    x, y = data(20, 3, 0)
    with pytest.raises(ValueError, match="train: features"):
        ridge_probe(x, y[:5], x, y)
    with pytest.raises(ValueError, match="same dimension"):
        ridge_probe(x, y, x[:, :2], y)
    with pytest.raises(ValueError, match="finite"):
        ridge_probe(x, y * float("nan"), x, y)
    with pytest.raises(ValueError, match="alphas"):
        ridge_probe(x, y, x, y, alphas=(0.0,))
