"""I-JEPA loss against naive transcriptions of Eq. 1 and the official code; collapse
statistics against closed forms."""

from __future__ import annotations

import math
import warnings

import pytest
import torch
import torch.nn.functional as F

from selfsup.eval.collapse import CollapseMonitor, normalized_std, rankme
from selfsup.losses import ijepa_loss


def _official(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """The official src/train.py: smooth L1 per block (mean over all elements), mean of blocks."""
    losses = [F.smooth_l1_loss(pred[:, i], target[:, i]) for i in range(pred.shape[1])]
    return torch.stack(losses).mean()


def test_smooth_l1_matches_official_code() -> None:
    torch.manual_seed(0)
    p, t = torch.randn(3, 4, 5, 8) * 2, torch.randn(3, 4, 5, 8)
    torch.testing.assert_close(ijepa_loss(p, t, "smooth_l1"), _official(p, t))


def test_l2_is_eq1_divided_by_dimension() -> None:
    torch.manual_seed(1)
    b, m, t_, d = 2, 4, 6, 16
    p, t = torch.randn(b, m, t_, d), torch.randn(b, m, t_, d)
    # Eq. 1 per image: (1/M) sum_i sum_j ||p - t||^2; averaged over images, divided by T*D.
    eq1 = torch.stack(
        [
            sum(((p[n, i, j] - t[n, i, j]) ** 2).sum() for i in range(m) for j in range(t_)) / m
            for n in range(b)
        ]
    ).mean()
    torch.testing.assert_close(ijepa_loss(p, t, "l2"), eq1 / (t_ * d))


def test_padding_is_ignored() -> None:
    torch.manual_seed(2)
    p, t = torch.randn(2, 3, 4, 8), torch.randn(2, 3, 4, 8)
    valid = torch.ones(2, 3, 4, dtype=torch.bool)
    valid[:, :, 3] = False
    padded_p, padded_t = p.clone(), t.clone()
    padded_p[:, :, 3] = 100.0  # garbage in padded entries must not count
    for kind in ("smooth_l1", "l2"):
        want = ijepa_loss(p[:, :, :3], t[:, :, :3], kind)
        torch.testing.assert_close(ijepa_loss(padded_p, padded_t, kind, valid), want)


def test_loss_is_float32_under_bf16_and_zero_at_target() -> None:
    t = torch.randn(2, 2, 3, 8).bfloat16()
    assert ijepa_loss(t, t).dtype == torch.float32
    assert float(ijepa_loss(t, t, "l2")) == 0.0


def test_bad_input() -> None:
    with pytest.raises(ValueError, match="choose one of"):
        ijepa_loss(torch.zeros(1, 1, 1, 2), torch.zeros(1, 1, 1, 2), "l1")
    with pytest.raises(ValueError, match=r"\(B, M, T, D\)"):
        ijepa_loss(torch.zeros(1, 1, 2), torch.zeros(1, 1, 2))
    with pytest.raises(ValueError, match="nothing to predict"):
        z = torch.zeros(1, 1, 1, 2)
        ijepa_loss(z, z, valid=torch.zeros(1, 1, 1, dtype=torch.bool))


def test_rankme_closed_forms() -> None:
    q, _ = torch.linalg.qr(torch.randn(64, 64))
    # k equal singular values: p_k = 1/k, entropy log k, effective rank k (up to eps).
    for k in (1, 5, 32):
        z = q[:, :k] @ q[:, k : 2 * k].T * 3.0  # (64, 64), k singular values equal to 3
        assert float(rankme(z)) == pytest.approx(k, rel=1e-3)  # eps adds ~1e-4


def test_normalized_std_closed_forms() -> None:
    torch.manual_seed(3)
    assert float(normalized_std(torch.randn(4096, 32))) == pytest.approx(1.0, abs=0.03)
    assert float(normalized_std(torch.ones(8, 32) * 5)) == pytest.approx(0.0, abs=1e-6)
    # Two antipodal points in D dims along one axis: std of +-1 over 2 rows is sqrt(2)
    # on that axis, 0 elsewhere.
    z = torch.zeros(2, 4)
    z[0, 0], z[1, 0] = 1.0, -1.0
    assert float(normalized_std(z)) == pytest.approx(math.sqrt(2) / 4 * 2)


def test_monitor_warns_once_and_caches() -> None:
    mon = CollapseMonitor(every=5)
    healthy = torch.randn(64, 16)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        first = mon.update(0, healthy)
        assert mon.update(3, torch.ones(64, 16)) is first  # not a computation step
    collapsed = torch.ones(64, 16) + 1e-6 * torch.randn(64, 16)
    with pytest.warns(RuntimeWarning, match="collapse at step 5"):
        mon.update(5, collapsed)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        mon.update(10, collapsed)  # warned already
    with pytest.raises(ValueError):
        CollapseMonitor(every=0)
