"""I-JEPA loss against naive transcriptions of Eq. 1 and the official code; collapse
statistics against closed forms."""

from __future__ import annotations

import warnings

import pytest
import torch
import torch.nn.functional as F

from selfsup.eval.collapse import CollapseMonitor, batch_std, collapse_statistics, rankme
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


def test_batch_std_and_statistics() -> None:
    torch.manual_seed(3)
    assert float(batch_std(torch.randn(4096, 2, 8))) == pytest.approx(1.0, abs=0.03)
    # Tokens that depend on the position only (identical across images) are collapsed.
    positional = torch.randn(1, 6, 8).expand(16, -1, -1)
    stats = collapse_statistics(positional)
    assert float(stats["target_std"]) == 0.0
    # Two images: tokens +1 and -1 everywhere -> std sqrt(2) of (+1, -1).
    two = torch.stack([torch.ones(3, 4), -torch.ones(3, 4)])
    assert float(batch_std(two)) == pytest.approx(2**0.5)
    with pytest.raises(ValueError, match="B >= 2"):
        batch_std(torch.zeros(1, 3, 4))


def test_monitor_warns_once_on_a_fall_and_caches() -> None:
    mon = CollapseMonitor(every=5)
    torch.manual_seed(4)
    healthy = torch.randn(64, 4, 16)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        first = mon.update(0, healthy * 0.05)  # a low level is no warning by itself
        assert mon.update(3, torch.ones(64, 4, 16)) is first  # not a computation step
        mon.update(5, healthy)
    collapsed = torch.ones(64, 4, 16) + 1e-5 * torch.randn(64, 4, 16)
    with pytest.warns(RuntimeWarning, match="collapse at step 10: target_std"):
        mon.update(10, collapsed)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        mon.update(15, collapsed)  # warned already
    with pytest.raises(ValueError):
        CollapseMonitor(every=0)
