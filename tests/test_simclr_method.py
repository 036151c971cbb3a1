"""SimCLR composes its parts exactly: two augmented views, one forward pass, NT-Xent.

The reference is the paper's recipe replayed by hand under the same random seed: draw the
two views with the same augmentation, run f and g once over both (BN sees 2B images),
apply NT-Xent (the library's, and a naive double-loop transcription of the paper's Eq. 1).
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from selfsup.data.augment import simclr_augmentation
from selfsup.losses import nt_xent
from selfsup.methods.simclr import SimCLR
from selfsup.models import projection_head

TAU = 0.2  # not the default 0.5, so a method that ignored its temperature would fail


class TinyEncoder(nn.Module):
    """(B, 3, S, S) -> (B, 6): conv, BN (so batch composition matters), ReLU, pooling."""

    num_features = 6

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 6, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(6)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = torch.relu(self.bn(self.conv(x))).mean(dim=(2, 3))
        return out


class FakeDDP(nn.Module):
    """Wraps a module under ``.module`` the way DistributedDataParallel does; counts calls."""

    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        self.module = module
        self.calls = 0
        self.inputs: list[torch.Tensor] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        self.inputs.append(x.detach().clone())
        out: torch.Tensor = self.module(x)
        return out


def make_method() -> SimCLR:
    torch.manual_seed(0)
    encoder = TinyEncoder()
    head = projection_head("v1", in_dim=6, hidden_dim=6, out_dim=4)
    return SimCLR(encoder, head, simclr_augmentation("cifar", size=12), temperature=TAU)


def images(b: int = 5, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (b, 3, 16, 16), dtype=torch.uint8, generator=g)


def naive_nt_xent(z_a: torch.Tensor, z_b: torch.Tensor, tau: float) -> float:
    """The paper's Eq. 1 with views interleaved as (2k-1, 2k), in float64 loops."""
    z = [v.detach().double() for pair in zip(z_a, z_b, strict=True) for v in pair]
    n2 = len(z)

    def sim(u: torch.Tensor, v: torch.Tensor) -> float:
        return float(u @ v / (u.norm() * v.norm()))

    def ell(i: int, j: int) -> float:
        den = sum(math.exp(sim(z[i], z[k]) / tau) for k in range(n2) if k != i)
        return -math.log(math.exp(sim(z[i], z[j]) / tau) / den)

    return sum(ell(2 * k, 2 * k + 1) + ell(2 * k + 1, 2 * k) for k in range(n2 // 2)) / n2


def test_training_step_is_nt_xent_of_two_fresh_views_in_one_forward_pass() -> None:
    method = make_method()
    x = images()
    b = x.shape[0]
    torch.manual_seed(123)
    loss = method.training_step(x, step=0).loss

    torch.manual_seed(123)  # replay the same draws by hand: one call over both copies
    v1, v2 = method.augment(torch.cat([x, x])).split(b)
    assert not torch.equal(v1, v2)  # each image's two views are drawn independently
    z = method.net(torch.cat([v1, v2]))  # one pass: BN statistics over all 2B views
    expected = nt_xent(z[:b], z[b:], temperature=TAU)
    assert torch.equal(loss, expected)
    assert loss.item() == pytest.approx(naive_nt_xent(z[:b], z[b:], TAU), rel=1e-5)

    # Two separate passes give other BN statistics, hence another loss: the test above
    # would notice a method that encoded the views one at a time.
    separate = nt_xent(method.net(v1), method.net(v2), temperature=TAU)
    assert not torch.allclose(separate, expected)

    loss.backward()
    for name, p in method.net.named_parameters():  # f and g are both trained
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_views_differ_per_image_and_per_view() -> None:
    method = make_method()
    spy = FakeDDP(method.net)
    method.wrap_trainable(lambda m: spy)
    b = 4
    x = images(1).expand(b, -1, -1, -1).contiguous()  # b copies of one image
    method.training_step(x, step=0)
    (views,) = spy.inputs
    assert views.shape == (2 * b, 3, 12, 12) and views.dtype == torch.float32
    flat = views.reshape(2 * b, -1)
    distance = torch.cdist(flat, flat)
    off_diagonal = distance[~torch.eye(2 * b, dtype=torch.bool)]
    # Identical inputs: any two equal views would mean a draw shared across images/views.
    assert off_diagonal.min() > 1e-3


def test_wrapping_routes_training_through_the_wrapper_and_keeps_state_dict_keys() -> None:
    method = make_method()
    keys = list(method.state_dict())
    x = images()
    torch.manual_seed(5)
    plain = method.training_step(x, step=0).loss

    for wrapper_type in (FakeDDP, nn.Sequential):
        method = make_method()
        wrapper: nn.Module = wrapper_type(method.net)

        def wrap(m: nn.Module, w: nn.Module = wrapper) -> nn.Module:
            return w

        method.wrap_trainable(wrap)
        assert list(method.state_dict()) == keys  # checkpoints do not depend on wrapping
        assert method.trainable_modules() == [method.net]  # the optimiser sees the bare net
        torch.manual_seed(5)
        wrapped = method.training_step(x, step=0).loss
        assert torch.equal(wrapped, plain)
        if isinstance(wrapper, FakeDDP):
            assert wrapper.calls == 1

    # A wrapper that changes the output proves the training forward goes through it.
    method = make_method()
    method.wrap_trainable(lambda m: nn.Sequential(m, nn.Tanh()))
    torch.manual_seed(5)
    assert not torch.equal(method.training_step(x, step=0).loss, plain)


def test_eval_encoder_is_the_encoder_without_the_head() -> None:
    method = make_method()
    encoder = method.eval_encoder()
    assert encoder is method.encoder is method.net.encoder
    assert isinstance(encoder, TinyEncoder)
    head_params = {id(p) for p in method.net.head.parameters()}
    assert head_params and not head_params & {id(p) for p in encoder.parameters()}
    h = encoder(torch.rand(3, 3, 12, 12))
    assert h.shape == (3, TinyEncoder.num_features)  # h (d = 6), not g(h) (out_dim = 4)
    # The augmentation has no trainable state: the optimiser's modules hold f and g only.
    trained = {id(p) for m in method.trainable_modules() for p in m.parameters()}
    assert trained == {id(p) for p in method.parameters()}


@pytest.mark.parametrize("tau", [0.0, -0.1])
def test_non_positive_temperature_is_rejected(tau: float) -> None:
    with pytest.raises(ValueError, match="temperature must be > 0"):
        SimCLR(TinyEncoder(), nn.Identity(), simclr_augmentation("cifar", size=12), tau)


def test_progressive_resizing_feeds_both_views_at_the_scheduled_side() -> None:
    method = make_method()  # the augmentation's side is 12
    method.resolution = lambda step: 8 if step < 3 else 12
    spy = FakeDDP(method.net)
    method.wrap_trainable(lambda m: spy)
    x = images()
    torch.manual_seed(7)
    small = method.training_step(x, step=0)
    torch.manual_seed(7)
    full = method.training_step(x, step=3)
    shrunk, whole = spy.inputs
    assert shrunk.shape == (2 * x.shape[0], 3, 8, 8) and whole.shape[-2:] == (12, 12)
    # The same draws (same seed), resized once: bilinear with antialiasing, as documented.
    expected = torch.nn.functional.interpolate(
        whole, size=(8, 8), mode="bilinear", align_corners=False, antialias=True
    )
    assert torch.equal(shrunk, expected)
    assert float(shrunk.min()) >= 0.0 and float(shrunk.max()) <= 1.0
    assert small.logs["resolution"] == 8.0 and full.logs["resolution"] == 12.0
    assert "resolution" not in make_method().training_step(x, step=0).logs


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_training_step_never_makes_the_host_wait() -> None:
    method = make_method().cuda()
    batch = images(b=16).cuda()
    method.training_step(batch, 0).loss.backward()  # warm-up
    torch.cuda.set_sync_debug_mode("error")
    try:
        result = method.training_step(batch, 1)  # two views, forward, NT-Xent
        result.loss.backward()
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert result.loss.is_cuda
