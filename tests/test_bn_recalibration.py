"""BatchNorm statistics re-estimated at the test side (``selfsup.eval.batchnorm``): the
buffers against the statistics computed by hand, what must not change, and the recipe key
and CLI flag end to end on test_cli's tiny red/blue image tree."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from test_cli import assert_user_error, make_dataset, overrides, run
from torch import nn

import selfsup.evaluation as evaluation
from selfsup.engine.checkpoint import load_checkpoint
from selfsup.eval import recalibrate_batchnorm
from selfsup.models import create_model


def images(n: int, side: int = 8, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, 3, side, side), generator=g, dtype=torch.uint8)


def first_bn_model() -> nn.Module:
    """BN straight on the input: its buffers must be the input's own statistics."""
    model = nn.Sequential(nn.BatchNorm2d(3), nn.AdaptiveAvgPool2d(1), nn.Flatten())
    model[0].running_mean.fill_(5.0)  # stale training statistics
    model[0].running_var.fill_(9.0)
    return model.eval()


def by_hand(x: torch.Tensor, side: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel mean and unbiased variance of uint8 images resized to ``side``."""
    v = F.interpolate(x.double() / 255, size=(side, side), mode="bilinear", antialias=True)
    return v.mean(dim=(0, 2, 3)), v.var(dim=(0, 2, 3), correction=1)


def test_one_batch_gives_the_exact_mean_and_unbiased_variance_at_the_test_side() -> None:
    x, model = images(10), first_bn_model()
    assert recalibrate_batchnorm(model, x, num_images=10, image_size=12, batch_size=64) == 1
    mean, var = by_hand(x, 12)
    torch.testing.assert_close(model[0].running_mean.double(), mean, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(model[0].running_var.double(), var, rtol=1e-5, atol=1e-6)
    assert int(model[0].num_batches_tracked) == 1


def test_equal_batches_give_the_exact_mean_over_all_images() -> None:
    """12 images in batches of at most 4: three batches, the mean of means is the mean."""
    x, model = images(12), first_bn_model()
    recalibrate_batchnorm(model, x, num_images=12, batch_size=4)
    mean, var = by_hand(x, 8)
    torch.testing.assert_close(model[0].running_mean.double(), mean, rtol=1e-5, atol=1e-6)
    assert int(model[0].num_batches_tracked) == 3
    # The variance is the average of three batches' unbiased variances: close, not equal.
    torch.testing.assert_close(model[0].running_var.double(), var, rtol=0.05, atol=0.0)


def test_a_subset_is_drawn_by_the_seed_and_never_exceeds_the_images() -> None:
    x = images(40)
    runs = []
    for seed in (0, 0, 1):
        model = first_bn_model()
        recalibrate_batchnorm(model, x, num_images=8, batch_size=8, seed=seed)
        runs.append(model[0].running_mean.clone())
    torch.testing.assert_close(runs[0], runs[1])
    assert not torch.allclose(runs[0], runs[2])
    model = first_bn_model()
    recalibrate_batchnorm(model, x[:5], num_images=1000, batch_size=1000)  # all 5
    torch.testing.assert_close(model[0].running_mean.double(), by_hand(x[:5], 8)[0])


def test_only_the_normalisation_buffers_change_and_every_flag_is_restored() -> None:
    torch.manual_seed(0)
    encoder = create_model("resnet18", width=0.125, cifar_stem=True).eval()
    encoder.layer1.train()  # a submodule in another mode keeps it
    before = {k: v.clone() for k, v in encoder.state_dict().items()}
    modes = {name: m.training for name, m in encoder.named_modules()}
    momenta = {name: m.momentum for name, m in encoder.named_modules() if hasattr(m, "momentum")}
    n = recalibrate_batchnorm(encoder, images(16, side=16), num_images=16, image_size=20)
    assert n == sum(isinstance(m, nn.BatchNorm2d) for m in encoder.modules()) > 0
    after = encoder.state_dict()
    for key, value in before.items():
        moved = not torch.equal(value, after[key])
        assert moved == key.endswith(("running_mean", "running_var", "num_batches_tracked")), key
    assert all(p.grad is None for p in encoder.parameters())
    assert {name: m.training for name, m in encoder.named_modules()} == modes
    assert {k: m.momentum for k, m in encoder.named_modules() if hasattr(m, "momentum")} == momenta


def test_a_model_without_batchnorm_is_left_alone() -> None:
    vit = create_model("vit_tiny", img_size=8, patch_size=4)
    before = {k: v.clone() for k, v in vit.state_dict().items()}
    assert recalibrate_batchnorm(vit, images(4), num_images=4) == 0
    assert all(torch.equal(v, vit.state_dict()[k]) for k, v in before.items())


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"num_images": 1}, "num_images must be an int >= 2"),
        ({"num_images": 0}, "num_images must be an int >= 2"),
        ({"num_images": True}, "num_images must be an int >= 2"),
        ({"num_images": 8, "batch_size": 1}, "batch_size must be >= 2"),
    ],
)
def test_bad_arguments_are_named(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        recalibrate_batchnorm(first_bn_model(), images(8), **kwargs)
    with pytest.raises(ValueError, match="uint8"):
        recalibrate_batchnorm(first_bn_model(), images(8).float(), num_images=8)


def test_recipe_key_and_cli_flag_end_to_end(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """eval.bn_recalibration_images is kept in the checkpoint; --eval and selfsup eval's
    default use it on the train split at the test side; the flag overrides it; bad values
    fail before training, naming the key or the flag."""
    calls: list[tuple[int, int, int | None]] = []
    real = evaluation.recalibrate_batchnorm

    def spy(encoder: nn.Module, images: torch.Tensor, **kw: Any) -> int:
        calls.append((kw["num_images"], images.shape[0], kw["image_size"]))
        return real(encoder, images, **kw)

    monkeypatch.setattr(evaluation, "recalibrate_batchnorm", spy)
    data, run_dir = make_dataset(tmp_path / "data"), tmp_path / "run"
    keys = overrides(
        data,
        run_dir,
        **{"augment.size": 24, "eval.image_size": 32, "eval.bn_recalibration_images": 6},
    )
    code, _, err = run("pretrain", "simclr", *keys, "--eval")
    assert code == 0, err
    assert calls == [(6, 16, 32)]  # 6 of the 16 training images, at the test side
    assert load_checkpoint(run_dir / "last.pt")["meta"]["bn_recalibration_images"] == 6
    base = ("eval", "knn", "--checkpoint", run_dir / "last.pt", "--k", 5, "--device", "cpu")
    for extra, expected in (
        ((), [(6, 16, 32)]),
        (("--bn-recalibration-images", 10), [(10, 16, 32)]),
        (("--bn-recalibration-images", 0), []),
    ):
        calls.clear()
        code, _, err = run(*base, *extra)
        assert code == 0, err
        assert calls == expected, extra
    assert_user_error(
        run(*base, "--bn-recalibration-images", 1), "--bn-recalibration-images", ">= 2"
    )
    for bad in (1, -3):
        keys = overrides(data, tmp_path / "bad", **{"eval.bn_recalibration_images": bad})
        assert_user_error(run("pretrain", "simclr", *keys), "eval.bn_recalibration_images", ">= 2")
    vit = overrides(
        data,
        tmp_path / "bad",
        **{"model.encoder": "vit_tiny", "model.patch_size": 8, "eval.bn_recalibration_images": 8},
    )
    assert_user_error(run("pretrain", "simclr", *vit), "no BatchNorm layers")
    assert not (tmp_path / "bad").exists()
