"""Few-label fine-tuning (selfsup.eval.finetune): label budgets, class-balanced nested
subsets, and the training loop on a tiny separable problem."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from selfsup.eval.finetune import (
    LabelBudget,
    balanced_subset,
    default_finetune_epochs,
    finetune,
)


@pytest.mark.parametrize(
    ("spec", "fraction", "per_class"),
    [("1%", 0.01, None), ("10 %", 0.1, None), ("0.5%", 0.005, None), ("100%", 1.0, None),
     ("25-per-class", None, 25), ("4 per class", None, 4), ("1-per-class", None, 1)],
)  # fmt: skip
def test_label_budgets_parse(spec: str, fraction: float | None, per_class: int | None) -> None:
    budget = LabelBudget.parse(spec)
    assert budget.per_class == per_class
    assert budget.fraction == (None if fraction is None else pytest.approx(fraction))


@pytest.mark.parametrize("spec", ["", "1", "ten%", "0%", "150%", "0-per-class", "-3%"])
def test_bad_label_budgets_are_refused_with_the_accepted_forms(spec: str) -> None:
    with pytest.raises(ValueError, match="labels"):
        LabelBudget.parse(spec)


def labels_of(counts: list[int]) -> torch.Tensor:
    """Shuffled labels with ``counts[c]`` images of class c."""
    labels = torch.cat([torch.full((n,), c) for c, n in enumerate(counts)])
    return labels[torch.randperm(len(labels), generator=torch.Generator().manual_seed(3))]


def test_subsets_are_class_balanced_seeded_sorted_and_nested() -> None:
    labels = labels_of([500, 300, 200])
    small = balanced_subset(labels, LabelBudget(fraction=0.01), 3, seed=0)
    large = balanced_subset(labels, LabelBudget(fraction=0.1), 3, seed=0)
    assert torch.bincount(labels[small], minlength=3).tolist() == [5, 3, 2]
    assert torch.bincount(labels[large], minlength=3).tolist() == [50, 30, 20]
    assert torch.equal(small, small.sort().values) and len(small.unique()) == len(small)
    assert set(small.tolist()) <= set(large.tolist())  # the 1 % subset is inside the 10 %
    assert torch.equal(small, balanced_subset(labels, LabelBudget(fraction=0.01), 3, seed=0))
    assert not torch.equal(small, balanced_subset(labels, LabelBudget(fraction=0.01), 3, seed=1))
    per_class = balanced_subset(labels, LabelBudget(per_class=7), 3, seed=0)
    assert torch.bincount(labels[per_class], minlength=3).tolist() == [7, 7, 7]
    # A tiny class still gets one image.
    assert torch.bincount(
        labels[balanced_subset(labels_of([500, 20]), LabelBudget(fraction=0.01), 2, seed=0)]
    ).tolist() == [5, 1]  # noqa: E501


def test_a_per_class_budget_larger_than_a_class_names_it() -> None:
    with pytest.raises(ValueError, match="class 1 has 3"):
        balanced_subset(labels_of([10, 3]), LabelBudget(per_class=4), 2, seed=0)


def test_default_epochs_follow_the_paper() -> None:
    assert default_finetune_epochs(500, 50_000) == 60  # 1 %
    assert default_finetune_epochs(5_000, 50_000) == 30  # 10 %


def colour_data(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(n, 3, 16, 16) uint8 noise images whose class (0 red, 1 green, 2 blue) is the
    brightest channel, and their labels."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % 3
    images = torch.randint(0, 100, (n, 3, 16, 16), generator=g, dtype=torch.uint8)
    images[torch.arange(n), labels] += 120
    return images, labels


def small_encoder() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(),
    )  # fmt: skip


def test_finetune_trains_encoder_and_head_and_reports_test_accuracy() -> None:
    train_x, train_y = colour_data(30, 0)
    test_x, test_y = colour_data(60, 1)
    encoder = small_encoder()
    before = [p.detach().clone() for p in encoder.parameters()]
    r = finetune(encoder, train_x, train_y, test_x, test_y, num_classes=3, epochs=20,
                 batch_size=256, lr=0.5, crop_scale=(0.5, 1.0))  # fmt: skip
    assert r.top1 == 100.0 and r.top5 == 100.0
    assert r.batch_size == 30 and r.steps == 20 and r.num_labels == 30  # batch capped at M
    assert all(not torch.equal(a, b) for a, b in zip(before, encoder.parameters(), strict=True))
    # Same seed, same run: the subset, crops, head init and batches are all seeded.
    again = finetune(small_encoder(), train_x, train_y, test_x, test_y, num_classes=3,
                     epochs=20, lr=0.5, crop_scale=(0.5, 1.0))  # fmt: skip
    assert again == r


def test_default_lr_is_the_papers_rule_and_frozen_parameters_stay_frozen() -> None:
    train_x, train_y = colour_data(64, 0)
    encoder = small_encoder()
    encoder[0].requires_grad_(False)
    conv = encoder[0].weight.detach().clone()
    r = finetune(encoder, train_x, train_y, *colour_data(9, 1), num_classes=3, epochs=1,
                 batch_size=32)  # fmt: skip
    assert r.lr == pytest.approx(0.05 * 32 / 256) and r.steps == 2
    assert torch.equal(encoder[0].weight, conv)


def test_finetune_refuses_bad_input() -> None:
    x, y = colour_data(6, 0)
    with pytest.raises(ValueError, match="uint8"):
        finetune(small_encoder(), x.float(), y, x, y, num_classes=3, epochs=1)
    with pytest.raises(ValueError, match="epochs and batch_size"):
        finetune(small_encoder(), x, y, x, y, num_classes=3, epochs=0)
    with pytest.raises(ValueError, match="at least 2"):
        finetune(small_encoder(), x[:1], y[:1], x, y, num_classes=3, epochs=1)
    with pytest.raises(ValueError, match="one per image"):
        finetune(small_encoder(), x, y[:3], x, y, num_classes=3, epochs=1)
