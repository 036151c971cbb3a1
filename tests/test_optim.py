"""LARS against a hand transcription of SimCLR's update rule; the weight-decay rule; errors."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from selfsup.engine.optim import LARS, build_optimizer, parameter_groups


def _norm(v: list[float]) -> float:
    return math.sqrt(sum(x * x for x in v))


def _lars_reference(
    w: list[float],
    grads: list[list[float]],
    *,
    lrs: list[float],
    m: float,
    wd: float,
    eta: float,
    exclude: bool,
    nesterov: bool = False,
) -> list[float]:
    """SimCLR's lars_optimizer.py, one Python float at a time, over several steps."""
    v = [0.0] * len(w)
    for g, lr in zip(grads, lrs, strict=True):
        if not exclude:
            g = [gi + wd * wi for gi, wi in zip(g, w, strict=True)]
            w_norm, g_norm = _norm(w), _norm(g)
            ratio = eta * w_norm / g_norm if w_norm > 0 and g_norm > 0 else 1.0
        else:
            ratio = 1.0
        scaled = lr * ratio
        v = [m * vi + scaled * gi for vi, gi in zip(v, g, strict=True)]
        update = [m * vi + scaled * gi for vi, gi in zip(v, g, strict=True)] if nesterov else v
        w = [wi - ui for wi, ui in zip(w, update, strict=True)]
    return w


def _run_lars(
    w0: torch.Tensor,
    grads: list[torch.Tensor],
    *,
    exclude: bool,
    lrs: list[float] | None = None,
    lr: float,
    wd: float = 0.0,
    momentum: float = 0.9,
    trust_coefficient: float = 1e-3,
    nesterov: bool = False,
) -> torch.Tensor:
    p = nn.Parameter(w0.clone())
    group = {"params": [p], "weight_decay": 0.0 if exclude else wd, "lars_exclude": exclude}
    opt = LARS(
        [group], lr=lr, momentum=momentum, trust_coefficient=trust_coefficient, nesterov=nesterov
    )
    for i, g in enumerate(grads):
        if lrs is not None:  # a schedule: SimCLR keeps lr inside the momentum buffer
            opt.param_groups[0]["lr"] = lrs[i]
        p.grad = g.clone()
        opt.step()
    return p.detach()


@pytest.mark.parametrize("nesterov", [False, True])
@pytest.mark.parametrize("exclude", [False, True])
def test_lars_matches_hand_transcription(exclude: bool, nesterov: bool) -> None:
    w0 = torch.tensor([0.5, -1.5, 2.0, 0.25], dtype=torch.float64)
    grads = [
        torch.tensor([0.1, 0.2, -0.3, 0.05], dtype=torch.float64),
        torch.tensor([-0.4, 0.0, 0.7, 0.2], dtype=torch.float64),
        torch.tensor([0.3, -0.1, 0.1, -0.6], dtype=torch.float64),
    ]
    lrs, m, wd, eta = [0.7, 0.2, 1.3], 0.9, 0.05, 1e-3
    ours = _run_lars(
        w0,
        grads,
        exclude=exclude,
        lrs=lrs,
        lr=lrs[0],
        momentum=m,
        wd=wd,
        trust_coefficient=eta,
        nesterov=nesterov,
    )
    ref = _lars_reference(
        w0.tolist(),
        [g.tolist() for g in grads],
        lrs=lrs,
        m=m,
        wd=wd if not exclude else 0.0,
        eta=eta,
        exclude=exclude,
        nesterov=nesterov,
    )
    torch.testing.assert_close(ours, torch.tensor(ref, dtype=torch.float64), rtol=1e-12, atol=0)
    # The excluded group is plain momentum SGD: much larger steps than the trust-scaled one.
    moved = (ours - w0).abs().max().item()
    assert (moved > 0.1) if exclude else (moved < 0.01)


def test_lars_update_is_invariant_to_gradient_scale() -> None:
    """With wd = 0 the step is lr * eta * ||w|| * g/||g||: scaling g changes nothing."""
    w0 = torch.tensor([[1.0, -2.0], [0.5, 3.0]], dtype=torch.float64)
    g = torch.tensor([[0.3, 0.1], [-0.2, 0.4]], dtype=torch.float64)
    lr, eta = 2.0, 1e-3
    a = _run_lars(w0, [g], exclude=False, lr=lr, wd=0.0, trust_coefficient=eta)
    b = _run_lars(w0, [1000.0 * g], exclude=False, lr=lr, wd=0.0, trust_coefficient=eta)
    torch.testing.assert_close(a, b, rtol=1e-12, atol=0)
    # The relative step is lr * eta whatever the scale of w.
    for scale in (1.0, 100.0):
        w = scale * w0
        step = w - _run_lars(w, [g], exclude=False, lr=lr, wd=0.0, trust_coefficient=eta)
        assert (step.norm() / w.norm()).item() == pytest.approx(lr * eta, rel=1e-12)


def test_lars_zero_weight_falls_back_to_ratio_one() -> None:
    g = torch.tensor([0.3, -0.4], dtype=torch.float64)
    out = _run_lars(torch.zeros(2, dtype=torch.float64), [g], exclude=False, lr=0.5, wd=0.1)
    torch.testing.assert_close(out, -0.5 * g, rtol=1e-12, atol=0)


def test_lars_excluded_group_equals_torch_sgd_at_constant_lr() -> None:
    torch.manual_seed(0)
    w0 = torch.randn(5)
    grads = [torch.randn(5) for _ in range(4)]
    ours = _run_lars(w0, grads, exclude=True, lr=0.1, momentum=0.9)
    p = nn.Parameter(w0.clone())
    sgd = torch.optim.SGD([p], lr=0.1, momentum=0.9)
    for g in grads:
        p.grad = g.clone()
        sgd.step()
    torch.testing.assert_close(ours, p.detach(), rtol=1e-6, atol=1e-7)


def test_lars_rejects_bad_settings() -> None:
    p = nn.Parameter(torch.ones(2))
    with pytest.raises(ValueError, match="momentum"):
        LARS([p], lr=0.1, momentum=1.0)
    with pytest.raises(ValueError, match="trust_coefficient"):
        LARS([p], lr=0.1, trust_coefficient=0.0)
    with pytest.raises(ValueError, match="lr"):
        LARS([p], lr=-1.0)
    with pytest.raises(ValueError, match="lars_exclude=True gets no weight decay"):
        LARS([{"params": [p], "weight_decay": 0.1, "lars_exclude": True}], lr=0.1)


class _Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.bn = nn.BatchNorm2d(4)
        self.fc = nn.Linear(4, 2)
        self.ln = nn.LayerNorm(2)
        self.frozen = nn.Linear(2, 2)
        self.frozen.requires_grad_(False)


def _ids(params: list[Any]) -> set[int]:
    return {id(p) for p in params}


def test_parameter_groups_one_rule() -> None:
    net = _Net()
    shared = nn.Sequential(net.fc)  # the same Linear reached through a second module
    groups = parameter_groups([net, shared], weight_decay=1e-4)
    assert len(groups) == 2
    decay, no_decay = groups
    assert _ids(decay["params"]) == _ids([net.conv.weight, net.fc.weight])
    assert decay["weight_decay"] == 1e-4 and not decay.get("lars_exclude", False)
    assert _ids(no_decay["params"]) == _ids(
        [net.conv.bias, net.bn.weight, net.bn.bias, net.fc.bias, net.ln.weight, net.ln.bias]
    )
    assert no_decay["weight_decay"] == 0.0 and no_decay["lars_exclude"] is True
    # Each parameter once, frozen ones left out.
    n_params = len(decay["params"]) + len(no_decay["params"])
    assert n_params == len({id(p) for p in net.parameters() if p.requires_grad})


def test_decay_norm_and_bias_matches_torch_sgd_over_all_parameters() -> None:
    # lightly's and dkobak's CIFAR-10 scripts: SGD(model.parameters(), weight_decay=wd).
    torch.manual_seed(0)
    ours_net, ref_net = _Net(), _Net()
    ref_net.load_state_dict(ours_net.state_dict())
    groups = parameter_groups([ours_net], 5e-4, decay_norm_and_bias=True)
    assert len(groups) == 1 and groups[0]["weight_decay"] == 5e-4
    assert "lars_exclude" not in groups[0]
    ours = build_optimizer("sgd", groups, lr=0.1, weight_decay=0.0, momentum=0.9)
    ref = torch.optim.SGD(
        [p for p in ref_net.parameters() if p.requires_grad], lr=0.1, momentum=0.9,
        weight_decay=5e-4,
    )  # fmt: skip
    x = torch.randn(4, 3, 8, 8)
    for _ in range(3):
        for net, opt in ((ours_net, ours), (ref_net, ref)):
            opt.zero_grad()
            out = net.ln(net.fc(net.bn(net.conv(x)).mean(dim=(2, 3))))
            out.square().sum().backward()
            opt.step()
    ref_state = ref_net.state_dict()
    for name, value in ours_net.state_dict().items():
        torch.testing.assert_close(value, ref_state[name], msg=name)
    # The default keeps norm parameters and biases out: the two rules differ.
    default = parameter_groups([ours_net], 5e-4)
    assert len(default) == 2 and default[1]["weight_decay"] == 0.0


def test_parameter_groups_errors() -> None:
    with pytest.raises(ValueError, match="weight_decay"):
        parameter_groups([_Net()], weight_decay=-1.0)
    frozen = nn.Linear(2, 2).requires_grad_(False)
    with pytest.raises(ValueError, match="no trainable parameters"):
        parameter_groups([frozen], weight_decay=0.0)


def test_build_optimizer_by_name() -> None:
    net = _Net()
    lars = build_optimizer("LARS", parameter_groups([net], 1e-4), lr=0.3, weight_decay=1e-6)
    assert isinstance(lars, LARS)
    assert lars.param_groups[0]["weight_decay"] == 1e-4  # the group's own value wins
    assert lars.param_groups[1]["weight_decay"] == 0.0 and lars.param_groups[1]["lars_exclude"]
    sgd = build_optimizer(
        "sgd", parameter_groups([net], 1e-4), lr=0.1, weight_decay=0.0, nesterov=True
    )
    assert isinstance(sgd, torch.optim.SGD)
    assert sgd.param_groups[0]["nesterov"] and sgd.param_groups[0]["momentum"] == 0.9
    adamw = build_optimizer(
        "adamw", parameter_groups([net], 1e-4), lr=1e-3, weight_decay=0.04, betas=(0.9, 0.95)
    )
    assert isinstance(adamw, torch.optim.AdamW)
    assert adamw.param_groups[0]["betas"] == (0.9, 0.95)


def test_build_optimizer_unknown_name() -> None:
    groups = parameter_groups([_Net()], 0.0)
    with pytest.raises(ValueError, match=r"lars, sgd, adamw\. Did you mean 'lars'\?"):
        build_optimizer("lasr", groups, lr=0.1, weight_decay=0.0)
    with pytest.raises(ValueError, match="Unknown optimizer 'rmsprop'"):
        build_optimizer("rmsprop", groups, lr=0.1, weight_decay=0.0)


@pytest.mark.parametrize(("flag", "num_groups"), [("false", 2), ("true", 1)])
def test_simclr_recipe_hands_decay_norm_and_bias_to_the_optimiser(
    flag: str, num_groups: int, tmp_path: Path
) -> None:
    from selfsup.build import simclr_trainer
    from selfsup.config import load_config
    from selfsup.recipes import SimCLRConfig

    cfg = load_config(
        SimCLRConfig,
        None,
        [
            f"optim.decay_norm_and_bias={flag}",
            "optim.name=sgd",
            "model.width=0.25",
            "augment.size=16",
            "train.batch_size=4",
            "train.device=cpu",
            f"train.run_dir={tmp_path / 'run'}",
        ],
    )
    trainer = simclr_trainer(cfg, torch.randint(0, 256, (8, 3, 16, 16), dtype=torch.uint8))
    assert len(trainer.optimizer.param_groups) == num_groups
