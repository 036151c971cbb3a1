"""Encoders, registry and projection heads: one contract over every registered model
(pooled encoders give (B, d), token encoders (B, num_patches, d)),
torchvision parity, the SimCLR width multipliers, the CIFAR stem, and the head formulas."""

from __future__ import annotations

import inspect
from typing import Any

import pytest
import torch
import torchvision
from torch import nn

from selfsup.models import (
    ProjectionHead,
    ResNetEncoder,
    UnknownModelError,
    create_model,
    is_model,
    list_models,
    projection_head,
    register_model,
)
from selfsup.models import registry as registry_module

# ---------------------------------------------------------------- contract over the registry


def _small_kwargs(name: str) -> dict[str, Any]:
    """The smallest configuration a factory offers: width 0.25, 32-px images."""
    params = inspect.signature(registry_module._REGISTRY[name]).parameters
    small: dict[str, Any] = {"width": 0.25, "img_size": 32}
    return {k: v for k, v in small.items() if k in params}


def _contract_cases() -> list[tuple[str, dict[str, Any]]]:
    # ViTs: 32-px images at their default patch 16 give 4 tokens, the cheapest setting that
    # still exercises attention (1 token makes softmax constant). The cost of vit_large and
    # vit_huge is their parameter count (init and gradients), which no image setting lowers.
    cases = [(name, _small_kwargs(name)) for name in list_models()]
    for name in ("resnet18", "resnet50"):
        cases.append((name, {**_small_kwargs(name), "cifar_stem": True}))
    cases.append(("vit_tiny", {"img_size": 32, "patch_size": 4}))  # the 32-px recipe: 8x8 grid
    return cases


@pytest.mark.parametrize(
    "name, kwargs", _contract_cases(), ids=lambda v: v if isinstance(v, str) else str(v)
)
def test_model_contract(name: str, kwargs: dict[str, Any]) -> None:
    torch.manual_seed(0)
    model = create_model(name, **kwargs).train()
    assert isinstance(model.num_features, int) and model.num_features > 0
    x = torch.randn(2, 3, 32, 32)
    h = model(x)
    if getattr(model, "token_output", False):  # token models: one feature vector per patch
        assert h.shape == (2, model.num_patches, model.num_features)
    else:
        assert h.shape == (2, model.num_features)
    assert torch.isfinite(h).all()
    h.sum().backward()
    for pname, p in model.named_parameters():
        assert p.grad is not None, f"{name}: parameter {pname} received no gradient"
        assert torch.isfinite(p.grad).all(), f"{name}: non-finite gradient in {pname}"


def test_registered_names() -> None:
    expected = {"resnet18", "resnet34", "resnet50", "resnet101", "resnet152"}
    assert expected <= set(list_models())
    assert all(is_model(n) for n in expected)
    assert not is_model("resnet5")


# ---------------------------------------------------------------- torchvision parity


@pytest.mark.parametrize("name", ["resnet18", "resnet34", "resnet50", "resnet101", "resnet152"])
def test_parameter_names_and_shapes_equal_torchvision(name: str) -> None:
    with torch.device("meta"):  # shapes only: no memory, no initialisation cost
        ours = create_model(name)
        theirs = getattr(torchvision.models, name)()
    theirs_shapes = {k: v.shape for k, v in theirs.state_dict().items() if not k.startswith("fc.")}
    ours_shapes = {k: v.shape for k, v in ours.state_dict().items()}
    assert ours_shapes == theirs_shapes
    n_theirs = sum(p.numel() for n, p in theirs.named_parameters() if not n.startswith("fc."))
    assert sum(p.numel() for p in ours.parameters()) == n_theirs


@pytest.mark.parametrize("name", ["resnet18", "resnet50"])
def test_torchvision_weights_give_identical_outputs(name: str) -> None:
    torch.manual_seed(0)
    theirs = getattr(torchvision.models, name)()
    theirs.fc = nn.Identity()
    # Non-trivial BN statistics, so that eval mode exercises them.
    for m in theirs.modules():
        if isinstance(m, nn.BatchNorm2d):
            assert m.running_mean is not None and m.running_var is not None
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 1.5)
    ours = create_model(name)
    ours.load_state_dict(theirs.state_dict(), strict=True)  # fc is Identity on both sides
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(ours.eval()(x), theirs.eval()(x), rtol=0, atol=0)


# ---------------------------------------------------------------- SimCLR widths


@pytest.mark.parametrize("width, paper_params", [(2, 94e6), (4, 375e6)])
def test_resnet50_width_matches_paper_parameter_count(width: int, paper_params: float) -> None:
    # SimCLR Fig. 1: ResNet-50 24M, (2x) 94M, (4x) 375M parameters (without fc).
    with torch.device("meta"):
        model = create_model("resnet50", width=width)
    n = sum(p.numel() for p in model.parameters())
    assert abs(n - paper_params) / paper_params < 0.01


@pytest.mark.parametrize(
    "name, width, stem, inner, features",
    [
        ("resnet50", 2, 128, 128, 4096),  # every channel doubled, stem included
        ("resnet50", 4, 256, 256, 8192),
        ("resnet50", 0.25, 16, 16, 512),
        ("resnet18", 2, 128, 128, 1024),
        ("resnet18", 0.5, 32, 32, 256),
    ],
)
def test_width_scales_every_channel(
    name: str, width: float, stem: int, inner: int, features: int
) -> None:
    with torch.device("meta"):
        model = create_model(name, width=width)
    assert isinstance(model, ResNetEncoder)
    assert model.conv1.out_channels == stem
    assert model.layer1[0].conv1.out_channels == inner  # inner width, not only the outputs
    last_conv = [m for m in model.layer4.modules() if isinstance(m, nn.Conv2d)][-1]
    assert last_conv.out_channels == features == model.num_features


def test_tiny_width_keeps_at_least_one_channel() -> None:
    model = create_model("resnet50", width=0.01)
    assert all(m.out_channels >= 1 for m in model.modules() if isinstance(m, nn.Conv2d))
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, model.num_features)


@pytest.mark.parametrize("width", [0, -1.0, float("nan"), float("inf"), True, "2"])
def test_bad_width_raises(width: object) -> None:
    with pytest.raises(ValueError, match="width"):
        create_model("resnet18", width=width)


# ---------------------------------------------------------------- stems and zero-init


def test_cifar_stem_structure_and_resolution() -> None:
    cifar = create_model("resnet18", width=0.25, cifar_stem=True)
    standard = create_model("resnet18", width=0.25)
    assert cifar.conv1.kernel_size == (3, 3) and cifar.conv1.stride == (1, 1)
    assert cifar.conv1.padding == (1, 1)
    assert isinstance(cifar.maxpool, nn.Identity)
    assert standard.conv1.kernel_size == (7, 7) and standard.conv1.stride == (2, 2)
    assert isinstance(standard.maxpool, nn.MaxPool2d)

    sizes: dict[str, tuple[int, ...]] = {}
    for label, model in (("cifar", cifar), ("standard", standard)):
        model.layer1.register_forward_hook(
            lambda _m, _i, out, label=label: sizes.__setitem__(label, tuple(out.shape[-2:]))
        )
        model(torch.randn(2, 3, 32, 32))
    assert sizes == {"cifar": (32, 32), "standard": (8, 8)}


@pytest.mark.parametrize("name", ["resnet18", "resnet50"])
def test_zero_init_residual_makes_blocks_identities(name: str) -> None:
    model = create_model(name, width=0.25, zero_init_residual=True).eval()
    default = create_model(name, width=0.25)
    last_bn = "bn2" if name == "resnet18" else "bn3"
    block = model.layer1[1]  # no downsample: output = relu(x + branch(x))
    assert torch.all(getattr(block, last_bn).weight == 0)
    assert torch.all(getattr(default.layer1[1], last_bn).weight == 1)
    x = torch.rand(2, block.conv1.in_channels, 8, 8)  # non-negative, like a post-ReLU input
    with torch.no_grad():
        torch.testing.assert_close(block(x), x)


# ---------------------------------------------------------------- registry errors


@pytest.mark.parametrize("typo, closest", [("resnt18", "resnet18"), ("resnet5", "resnet50")])
def test_unknown_name_suggests_closest(typo: str, closest: str) -> None:
    with pytest.raises(UnknownModelError, match=f"{typo!r}.*Did you mean {closest!r}"):
        create_model(typo)
    assert issubclass(UnknownModelError, ValueError)


def test_unknown_kwarg_names_it_and_suggests() -> None:
    with pytest.raises(ValueError, match="'widht'.*Did you mean 'width'"):
        create_model("resnet18", widht=2)


def test_registry_is_generic_and_checks_the_contract(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(registry_module, "_REGISTRY", dict(registry_module._REGISTRY))

    class Flat(nn.Module):
        num_features = 12

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x.flatten(1)[:, :12]

    @register_model("flat_test")
    def flat() -> nn.Module:
        return Flat()

    @register_model("broken_test")
    def broken() -> nn.Module:
        return nn.Identity()  # no num_features

    assert is_model("flat_test") and "flat_test" in list_models()
    assert create_model("flat_test").num_features == 12
    with pytest.raises(TypeError, match="num_features"):
        create_model("broken_test")
    with pytest.raises(ValueError, match="already registered"):
        register_model("flat_test")(flat)


# ---------------------------------------------------------------- projection heads


def _bn_by_hand(y: torch.Tensor, bn: nn.BatchNorm1d, training: bool) -> torch.Tensor:
    if training:  # batch statistics, biased variance
        mean, var = y.mean(0), y.var(0, unbiased=False)
    else:
        assert bn.running_mean is not None and bn.running_var is not None
        mean, var = bn.running_mean, bn.running_var
    return (y - mean) / torch.sqrt(var + bn.eps) * bn.weight + bn.bias


def _randomise_bn(head: nn.Module) -> None:
    for m in head.modules():
        if isinstance(m, nn.BatchNorm1d):
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.5, 0.5)
            assert m.running_mean is not None and m.running_var is not None
            m.running_mean.uniform_(-0.2, 0.2)
            m.running_var.uniform_(0.5, 1.5)


@pytest.mark.parametrize("training", [True, False])
def test_v1_head_formula(training: bool) -> None:
    torch.manual_seed(0)
    head = ProjectionHead(in_dim=3, hidden_dim=5, out_dim=2, num_layers=2)
    _randomise_bn(head)
    head.train(training)
    lin1, bn, relu, lin2 = head.mlp
    assert isinstance(lin1, nn.Linear) and lin1.bias is None
    assert isinstance(bn, nn.BatchNorm1d) and isinstance(relu, nn.ReLU)
    assert isinstance(lin2, nn.Linear) and lin2.bias is None
    h = torch.randn(4, 3)
    expected = torch.relu(_bn_by_hand(h @ lin1.weight.T, bn, training)) @ lin2.weight.T
    with torch.no_grad():
        torch.testing.assert_close(head(h), expected)


def test_v2_head_formula() -> None:
    torch.manual_seed(1)
    head = projection_head("v2", in_dim=4, hidden_dim=6, out_dim=3)
    _randomise_bn(head)
    lin1, bn1, _, lin2, bn2, _, lin3 = head.mlp
    h = torch.randn(5, 4)
    hidden = torch.relu(_bn_by_hand(h @ lin1.weight.T, bn1, True))
    hidden = torch.relu(_bn_by_hand(hidden @ lin2.weight.T, bn2, True))
    with torch.no_grad():
        torch.testing.assert_close(head(h), hidden @ lin3.weight.T)


@pytest.mark.parametrize(
    "version, linears, bns", [(1, 2, 1), ("v1", 2, 1), (2, 3, 2), ("V2", 3, 2)]
)
def test_projection_head_versions(version: int | str, linears: int, bns: int) -> None:
    head = projection_head(version, in_dim=16)
    kinds = [type(m) for m in head.mlp]
    assert kinds.count(nn.Linear) == linears and kinds.count(nn.BatchNorm1d) == bns
    assert kinds[-1] is nn.Linear  # no BN or ReLU on z
    hidden = [m for m in head.mlp if isinstance(m, nn.Linear)][0]
    assert hidden.out_features == 16  # hidden width defaults to d (SPEC)
    assert head(torch.randn(3, 16)).shape == (3, 128)


def test_head_without_batch_norm_has_hidden_biases() -> None:
    head = ProjectionHead(8, 4, out_dim=2, batch_norm=False)
    assert [type(m) for m in head.mlp] == [nn.Linear, nn.ReLU, nn.Linear]
    assert head.mlp[0].bias is not None


def test_head_bad_arguments_raise() -> None:
    with pytest.raises(ValueError, match="version"):
        projection_head(3, in_dim=8)
    with pytest.raises(ValueError, match="num_layers"):
        ProjectionHead(8, 8, num_layers=0)
    with pytest.raises(ValueError, match="in_dim"):
        ProjectionHead(0, 8)
    with pytest.raises(ValueError, match=r"\(B, 8\)"):
        ProjectionHead(8, 8)(torch.randn(2, 7))
    assert ProjectionHead(8, 8).out_dim == 128
