"""NT-Xent against three references: the paper's formula, a closed form, and lightly."""

from __future__ import annotations

import math

import pytest
import torch
from host_waits import forbid_host_waits

from selfsup.losses import NTXentLoss, nt_xent


def naive_nt_xent(z_a: torch.Tensor, z_b: torch.Tensor, tau: float) -> float:
    """SimCLR eq. (1) transcribed literally, in Python float64.

    Views are interleaved as in the paper: z_{2k-1} = z_a[k], z_{2k} = z_b[k] (1-based),
    here 0-based: views[2k] = z_a[k], views[2k+1] = z_b[k].
    """
    views: list[list[float]] = []
    for k in range(z_a.shape[0]):
        views.append([float(v) for v in z_a[k]])
        views.append([float(v) for v in z_b[k]])

    def sim(u: list[float], v: list[float]) -> float:
        dot = sum(x * y for x, y in zip(u, v, strict=True))
        return dot / (math.sqrt(sum(x * x for x in u)) * math.sqrt(sum(y * y for y in v)))

    def ell(i: int, j: int) -> float:
        numerator = math.exp(sim(views[i], views[j]) / tau)
        denominator = sum(
            math.exp(sim(views[i], views[k]) / tau) for k in range(len(views)) if k != i
        )
        return -math.log(numerator / denominator)

    n = z_a.shape[0]
    total = sum(ell(2 * k, 2 * k + 1) + ell(2 * k + 1, 2 * k) for k in range(n))
    return total / (2 * n)


@pytest.mark.parametrize("n", [2, 3, 8])
@pytest.mark.parametrize("d", [1, 4, 16])
@pytest.mark.parametrize("tau", [0.05, 0.1, 0.5, 1.0])
def test_matches_naive_formula(n: int, d: int, tau: float) -> None:
    g = torch.Generator().manual_seed(1000 * n + 10 * d + int(100 * tau))
    z_a = torch.randn(n, d, generator=g)
    z_b = torch.randn(n, d, generator=g)
    expected = naive_nt_xent(z_a, z_b, tau)
    got = nt_xent(z_a, z_b, temperature=tau)
    assert got.dtype == torch.float32 and got.ndim == 0
    # fp32 logits of size 1/tau = 20 carry ~1e-6 relative error.
    assert got.item() == pytest.approx(expected, rel=1e-5, abs=1e-5)


def test_positive_pair_is_correlated_views() -> None:
    """Correlated views score lower than the same vectors with positives shuffled."""
    g = torch.Generator().manual_seed(0)
    z_a = torch.randn(6, 8, generator=g)
    z_b = z_a + 0.1 * torch.randn(6, 8, generator=g)
    shuffled = z_b.roll(1, dims=0)
    assert nt_xent(z_a, z_b, 0.2) < nt_xent(z_a, shuffled, 0.2) - 1.0
    assert nt_xent(z_a, shuffled, 0.2).item() == pytest.approx(
        naive_nt_xent(z_a, shuffled, 0.2), rel=1e-5
    )


@pytest.mark.parametrize("n", [2, 5, 64])
@pytest.mark.parametrize("tau", [0.05, 0.5])
def test_closed_form_all_equal(n: int, tau: float) -> None:
    """All 2N views identical: every logit equals 1/τ, so ℓ = log(2N - 1) for every anchor."""
    direction = torch.randn(1, 7)
    scales = torch.rand(2 * n, 1) * 10 + 0.1  # positive scales leave the direction unchanged
    z = direction * scales
    got = nt_xent(z[:n], z[n:], temperature=tau)
    assert got.item() == pytest.approx(math.log(2 * n - 1), rel=1e-5)


@pytest.mark.parametrize("n, d, tau", [(2, 3, 0.5), (7, 16, 0.1), (32, 128, 0.2), (16, 8, 0.05)])
def test_matches_lightly_values_and_gradients(n: int, d: int, tau: float) -> None:
    # lightly.loss.NTXentLoss.forward(out0, out1): out1[i] is the positive of out0[i],
    # mean cross-entropy over the 2N anchors -- the same convention as nt_xent(z_a, z_b).
    from lightly.loss import NTXentLoss as LightlyNTXent

    g = torch.Generator().manual_seed(n * d)
    z_a = torch.randn(n, d, generator=g)
    z_b = torch.randn(n, d, generator=g)
    ours_a, ours_b = z_a.clone().requires_grad_(), z_b.clone().requires_grad_()
    ref_a, ref_b = z_a.clone().requires_grad_(), z_b.clone().requires_grad_()

    ours = nt_xent(ours_a, ours_b, temperature=tau)
    ref = LightlyNTXent(temperature=tau)(ref_a, ref_b)
    ours.backward()
    ref.backward()

    torch.testing.assert_close(ours, ref, rtol=1e-5, atol=1e-6)
    assert ours_a.grad is not None and ours_b.grad is not None
    torch.testing.assert_close(ours_a.grad, ref_a.grad, rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(ours_b.grad, ref_b.grad, rtol=1e-4, atol=1e-6)


def test_symmetric_in_its_two_views() -> None:
    g = torch.Generator().manual_seed(3)
    z_a, z_b = torch.randn(9, 5, generator=g), torch.randn(9, 5, generator=g)
    torch.testing.assert_close(nt_xent(z_a, z_b, 0.3), nt_xent(z_b, z_a, 0.3))


def test_module_wrapper_equals_function() -> None:
    g = torch.Generator().manual_seed(4)
    z_a, z_b = torch.randn(4, 6, generator=g), torch.randn(4, 6, generator=g)
    loss = NTXentLoss(temperature=0.25)
    assert loss.temperature == 0.25
    torch.testing.assert_close(loss(z_a, z_b), nt_xent(z_a, z_b, 0.25))


def test_bf16_at_low_temperature_is_finite_and_close_to_fp32() -> None:
    g = torch.Generator().manual_seed(5)
    z_a32, z_b32 = torch.randn(16, 32, generator=g), torch.randn(16, 32, generator=g)
    z_a = z_a32.bfloat16().requires_grad_()
    z_b = z_b32.bfloat16().requires_grad_()

    loss = nt_xent(z_a, z_b, temperature=0.05)
    loss.backward()
    assert loss.dtype == torch.float32 and torch.isfinite(loss)
    assert z_a.grad is not None and z_b.grad is not None
    assert z_a.grad.dtype == torch.bfloat16
    assert torch.isfinite(z_a.grad).all() and torch.isfinite(z_b.grad).all()
    # Computed in fp32 internally: identical to fp32 on the same (bf16-rounded) values ...
    torch.testing.assert_close(loss, nt_xent(z_a.float(), z_b.float(), 0.05), rtol=0, atol=0)
    # ... and within the effect of bf16 input rounding (~2^-9 relative) of the fp32 loss.
    assert loss.item() == pytest.approx(nt_xent(z_a32, z_b32, 0.05).item(), rel=2e-2)


def test_autocast_does_not_lower_precision() -> None:
    """Under bf16 autocast the matmul would run in bf16; the loss must switch that off."""
    g = torch.Generator().manual_seed(6)
    z_a, z_b = torch.randn(16, 32, generator=g), torch.randn(16, 32, generator=g)
    reference = nt_xent(z_a, z_b, 0.05)
    with torch.autocast(device_type="cpu", dtype=torch.bfloat16):
        under_autocast = nt_xent(z_a, z_b, 0.05)
    assert under_autocast.dtype == torch.float32
    torch.testing.assert_close(under_autocast, reference, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("scale", [1e-30, 1e20, 1e30])
def test_extreme_magnitudes_are_scale_invariant(scale: float) -> None:
    # ‖z‖² overflows fp32 from |z| ~ 1e19 on; a plain F.normalize would return zeros.
    g = torch.Generator().manual_seed(7)
    z_a, z_b = torch.randn(5, 8, generator=g), torch.randn(5, 8, generator=g)
    big_a = (z_a * scale).requires_grad_()
    big_b = (z_b * scale).requires_grad_()
    loss = nt_xent(big_a, big_b, 0.1)
    loss.backward()
    torch.testing.assert_close(loss, nt_xent(z_a, z_b, 0.1), rtol=1e-5, atol=1e-5)
    assert big_a.grad is not None and torch.isfinite(big_a.grad).all()
    assert big_b.grad is not None and torch.isfinite(big_b.grad).all()


def test_huge_bf16_values_are_finite() -> None:
    g = torch.Generator().manual_seed(8)
    z_a = (torch.randn(4, 8, generator=g) * 1e38).bfloat16()
    z_b = (torch.randn(4, 8, generator=g) * 1e38).bfloat16()
    assert torch.isfinite(z_a).all()
    assert torch.isfinite(nt_xent(z_a, z_b, 0.05))


def test_batch_of_one_image_raises() -> None:
    z = torch.randn(1, 8)
    with pytest.raises(ValueError, match="at least 2 images per batch"):
        nt_xent(z, z.clone())


@pytest.mark.parametrize(
    "z_a, z_b",
    [
        (torch.randn(4, 8), torch.randn(5, 8)),  # different N
        (torch.randn(4, 8), torch.randn(4, 7)),  # different D
        (torch.randn(4), torch.randn(4)),  # not (N, D)
        (torch.randn(2, 3, 4), torch.randn(2, 3, 4)),
        (torch.ones(4, 8, dtype=torch.long), torch.ones(4, 8, dtype=torch.long)),
        (torch.randn(4, 0), torch.randn(4, 0)),
    ],
)
def test_bad_shapes_and_dtypes_raise(z_a: torch.Tensor, z_b: torch.Tensor) -> None:
    with pytest.raises(ValueError):
        nt_xent(z_a, z_b)


@pytest.mark.parametrize("tau", [0.0, -0.5, float("nan"), float("inf"), True, "0.5"])
def test_bad_temperature_raises(tau: object) -> None:
    z = torch.randn(4, 8)
    with pytest.raises(ValueError, match="temperature"):
        nt_xent(z, z.clone(), temperature=tau)
    with pytest.raises(ValueError, match="temperature"):
        NTXentLoss(temperature=tau)


def test_loss_and_gradient_never_make_the_host_wait() -> None:
    z_a = torch.randn(6, 4, requires_grad=True)
    z_b = torch.randn(6, 4, requires_grad=True)
    with forbid_host_waits():
        loss = nt_xent(z_a, z_b, 0.5)
        loss.backward()
    assert z_a.grad is not None and z_b.grad is not None
