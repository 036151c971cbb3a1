"""SimCLR Table 3's transformation-prediction probe (selfsup.probes.transforms): the
transformed images, the MLP, h against a head that discards everything, and the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from test_cli import make_dataset, overrides, run
from torch import nn

from selfsup.probes.transforms import TASKS, mlp_probe, transform_images, transforms_probe


def images(n: int, side: int = 8, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, 3, side, side), generator=g, dtype=torch.uint8)


def test_each_transformation_is_applied_exactly_where_labelled() -> None:
    x = images(400)
    g = lambda: torch.Generator().manual_seed(1)  # noqa: E731
    gray, y = transform_images("grayscale", x, g())
    assert 0.15 < y.float().mean() < 0.25  # p = 0.2: the 80 % random guess
    same_channels = (gray[:, 0] == gray[:, 1]).all((1, 2)) & (gray[:, 1] == gray[:, 2]).all((1, 2))
    assert torch.equal(same_channels, y.bool()) and torch.equal(gray[y == 0], x[y == 0])
    rotated, k = transform_images("rotation", x, g())
    assert set(k.tolist()) == {0, 1, 2, 3}
    for i in range(8):  # counter-clockwise quarter turns, exact
        assert torch.equal(rotated[i], torch.rot90(x[i], int(k[i]), dims=(1, 2)))
    for task in ("corrupted", "sobel"):
        out, y = transform_images(task, x, g())
        assert 0.4 < y.float().mean() < 0.6
        assert torch.equal(out[y == 0], x[y == 0]) and not torch.equal(out[y == 1], x[y == 1])
    with pytest.raises(ValueError, match="unknown task 'blur'"):
        transform_images("blur", x, g())


def test_mlp_probe_separates_separable_features_and_not_noise() -> None:
    g = torch.Generator().manual_seed(0)
    labels = torch.randint(0, 2, (600,), generator=g)
    features = torch.randn(600, 16, generator=g) + 3.0 * labels[:, None]
    top1 = mlp_probe(features[:400], labels[:400], features[400:], labels[400:], num_classes=2)
    assert top1 == 100.0
    noise = torch.randn(600, 16, generator=g)
    chance = mlp_probe(noise[:400], labels[:400], noise[400:], labels[400:], num_classes=2)
    assert 30.0 < chance < 70.0


def smooth_images(n: int, seed: int) -> torch.Tensor:
    """(n, 3, 8, 8) uint8: random 2 x 2 colour fields upsampled (no fine texture)."""
    g = torch.Generator().manual_seed(seed)
    coarse = torch.rand(n, 3, 2, 2, generator=g)
    fine = F.interpolate(coarse, size=(8, 8), mode="bilinear", align_corners=True)
    return fine.mul(255).round().to(torch.uint8)


class Visible(nn.Module):
    """A stand-in encoder whose h shows the transformations: per-channel means and stds,
    the channel differences (0 for grayscale and Sobel) and the high-frequency energy."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        diff = (x[:, :2] - x[:, 1:]).abs().mean((2, 3))  # (B, 2)
        lap = (4 * x[..., 1:-1, 1:-1] - x[..., :-2, 1:-1] - x[..., 2:, 1:-1]
               - x[..., 1:-1, :-2] - x[..., 1:-1, 2:]).abs().mean((1, 2, 3))  # fmt: skip
        return torch.cat([x.mean((2, 3)), x.std((2, 3)), diff, lap[:, None]], 1)


def test_h_keeps_what_a_constant_head_discards() -> None:
    head = nn.Linear(9, 4)
    nn.init.zeros_(head.weight)
    nn.init.zeros_(head.bias)  # g(h) = 0 for every image: nothing is left
    train, test = smooth_images(600, 0), smooth_images(300, 1)
    result = transforms_probe(Visible(), head, train, test, epochs=15)
    assert list(result) == [t.name for t in TASKS]
    assert result["grayscale"]["h"] > 97.0 and result["sobel"]["h"] > 97.0
    assert result["corrupted"]["h"] > 85.0  # noise std ~ U(0, 0.1): the faintest hide
    for task in TASKS:  # a constant input: the MLP can only learn the majority label
        assert result[task.name]["g(h)"] <= max(task.random_guess, 100 - task.random_guess) + 8
    assert result["rotation"]["paper_h"] == 67.6 and result["rotation"]["random_guess"] == 25.0
    no_head = transforms_probe(Visible(), None, images(50), images(20, seed=1), epochs=1)
    assert all("g(h)" not in row and "h" in row for row in no_head.values())


def test_cli_prints_the_table_with_the_papers_figures(tmp_path: Path) -> None:
    data = make_dataset(tmp_path / "rb")
    code, _, err = run("pretrain", "simclr", *overrides(data, tmp_path / "run"))
    assert code == 0, err
    args = ("--checkpoint", tmp_path / "run" / "last.pt", "--device", "cpu", "--epochs", 2)
    code, text, err = run("probe", "transforms", *args, "--train-images", 16)
    assert code == 0, err
    assert "paper g(h)" in text and "original vs Sobel-filtered" in text and "56.3" in text
    code, text, err = run("probe", "transforms", *args, "--json")
    assert code == 0, err
    result = json.loads(text)
    assert all(0 <= row["h"] <= 100 and 0 <= row["g(h)"] <= 100 for row in result.values())
