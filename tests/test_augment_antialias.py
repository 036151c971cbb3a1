"""Antialiased resized crops (``augment.antialias``) against torchvision's, image by image.

Reference: ``torchvision.transforms.v2.functional.resized_crop(..., antialias=True)``
per image, the filter Pillow applies in every PIL-based pipeline (lightly's
``SimCLRTransform`` among them). Plus the closed-form properties of the weights and the
wiring from the config to the crop.
"""

from __future__ import annotations

import pytest
import torch
import torchvision.transforms.v2.functional as F2
from host_waits import forbid_host_waits

from selfsup.build.ijepa import build_ijepa
from selfsup.build.simclr import build_simclr
from selfsup.config import load_config
from selfsup.data import augment_ops as ops
from selfsup.data.augment import RandomResizedCrop, simclr_augmentation
from selfsup.data.augment_resample import resize_weights, resized_crop_antialiased
from selfsup.recipes import IJEPAConfig, SimCLRConfig

# (top, left, height, width) in a 24 x 32 image: shrunk a lot, a little, not at all,
# enlarged, one pixel, a full image, boxes on every edge.
BOXES = torch.tensor(
    [[0, 0, 24, 32], [3, 5, 20, 25], [10, 2, 8, 12], [0, 7, 23, 24], [5, 5, 1, 3], [12, 0, 12, 32]]
)
FLIP = torch.tensor([False, True, False, True, False, True])


def images() -> torch.Tensor:
    return torch.rand(len(BOXES), 3, 24, 32, generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize("size", [8, 16, 20, 32])
def test_antialiased_crop_matches_torchvision_image_by_image(size: int) -> None:
    x = images()
    out = ops.resized_crop(x, BOXES, size, flip=FLIP, antialias=True)
    for img, got, (top, left, h, w), flip in zip(x, out, BOXES.tolist(), FLIP, strict=True):
        ref = F2.resized_crop(img, top, left, h, w, [size, size], antialias=True)
        torch.testing.assert_close(got, ref.flip(-1) if flip else ref, atol=2e-6, rtol=0)


def test_where_every_box_is_enlarged_antialiasing_changes_nothing() -> None:
    x = images()
    boxes = torch.tensor([[2, 3, 7, 9], [0, 0, 12, 12], [20, 30, 4, 2]] * 2)
    plain = ops.resized_crop(x, boxes, 12, flip=FLIP)
    filtered = ops.resized_crop(x, boxes, 12, flip=FLIP, antialias=True)
    torch.testing.assert_close(filtered, plain, atol=2e-6, rtol=0)


def test_shrinking_is_filtered_not_sampled() -> None:
    # A one-pixel checkerboard shrunk from 32 to 20 px is aliasing's worst case: sampled,
    # it becomes a moire pattern (values 0.18 to 0.82 measured); filtered, a flat grey
    # within 0.01 of 0.5 away from the border.
    checker = (torch.arange(32)[:, None] + torch.arange(32)[None, :]) % 2
    x = checker.float().expand(1, 3, 32, 32)
    box = torch.tensor([[0, 0, 32, 32]])
    filtered = ops.resized_crop(x, box, 20, antialias=True)[..., 1:-1, 1:-1]
    sampled = ops.resized_crop(x, box, 20)[..., 1:-1, 1:-1]
    assert (filtered - 0.5).abs().max() < 0.01
    assert (sampled - 0.5).abs().max() > 0.3


def test_weights_are_a_partition_of_unity_inside_each_box() -> None:
    start, length = torch.tensor([0, 3, 10, 31]), torch.tensor([32, 20, 5, 1])
    w = resize_weights(start, length, 12, 32, flip=torch.tensor([False, True, False, False]))
    assert w.shape == (4, 12, 32) and (w >= 0).all()
    torch.testing.assert_close(w.sum(dim=2), torch.ones(4, 12))
    pixels = torch.arange(32)
    outside = (pixels[None] < start[:, None]) | (pixels[None] >= (start + length)[:, None])
    assert (w.masked_select(outside[:, None, :].expand_as(w)) == 0).all()


def test_antialiased_views_stay_in_range_and_never_wait_for_the_device(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    aug = simclr_augmentation("cifar", size=20, antialias=True)
    x = torch.randint(0, 256, (16, 3, 32, 32), dtype=torch.uint8)
    monkeypatch.setattr(ops, "subset_pays", lambda device: False)  # the accelerator path
    with forbid_host_waits():
        views = aug(x, generator=torch.Generator().manual_seed(0))
    assert views.shape == (16, 3, 20, 20) and views.min() >= 0 and views.max() <= 1


def test_antialias_is_bilinear_only() -> None:
    with pytest.raises(ValueError, match="bilinear"):
        ops.resized_crop(images(), BOXES, 8, interpolation="bicubic", antialias=True)
    with pytest.raises(ValueError, match="bilinear"):
        RandomResizedCrop(8, interpolation="bicubic", antialias=True)
    with pytest.raises(ValueError, match="boxes must have shape"):
        resized_crop_antialiased(images(), BOXES[:2], 8)


@pytest.mark.parametrize("value", [True, False])
def test_the_config_option_reaches_the_crop(value: bool) -> None:
    option = [f"augment.antialias={str(value).lower()}"]
    simclr = build_simclr(load_config(SimCLRConfig, None, option)).augment
    ijepa_cfg = load_config(
        IJEPAConfig,
        None,
        [*option, "augment.size=32", "model.patch_size=4", "model.encoder=vit_tiny"],
    )
    ijepa = build_ijepa(ijepa_cfg, total_steps=10).augment
    for augment in (simclr, ijepa):
        crops = [m for m in augment.modules() if isinstance(m, RandomResizedCrop)]
        assert [crop.antialias for crop in crops] == [value]
