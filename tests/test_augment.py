"""Batched augmentations vs torchvision applied image by image, their statistics, and API.

References: torchvision's v2 functional ops (and its RandomResizedCrop sampler), naive
per-image transcriptions, closed forms (identity at zero strength), rates of the
family T (SPEC, "The family T"). Images are tiny to keep the file fast.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import pytest
import torch
import torchvision.transforms.v2 as T2
import torchvision.transforms.v2.functional as F2
from host_waits import forbid_host_waits

from selfsup.data import augment_color as color
from selfsup.data import augment_ops as ops
from selfsup.data.augment import (
    AUGMENTATION_OPS,
    AUGMENTATION_PRESETS,
    BatchAugmentation,
    ColorJitter,
    GaussianBlur,
    GaussianNoise,
    RandomGrayscale,
    RandomResizedCrop,
    RandomRotation,
    blur_kernel_size,
    build_augmentation,
    simclr_augmentation,
)

Op = Callable[..., torch.Tensor]  # (image or batch, parameter or per-image parameters)


def _images(b: int = 6, side: int = 10, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(b, 3, side, side, generator=g)
    x[0] = 0.4  # a flat grey image: hue/saturation edge cases
    x[1, 1] = x[1, 0]  # ties between channels
    return x


def _per_image(fn: Op, x: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
    return torch.stack([fn(x[i], float(params[i])) for i in range(x.shape[0])])


# --- each batched operator equals torchvision's, image by image --------------------------


@pytest.mark.parametrize(
    ("ours", "theirs"),
    [
        (color.adjust_brightness, F2.adjust_brightness),
        (color.adjust_contrast, F2.adjust_contrast),
        (color.adjust_saturation, F2.adjust_saturation),
    ],
)
def test_blend_ops_match_torchvision(ours: Op, theirs: Op) -> None:
    x = _images()
    factors = torch.tensor([0.0, 0.3, 1.0, 1.4, 1.8, 2.5])  # 0 and > 1 hit the clamps
    torch.testing.assert_close(ours(x, factors), _per_image(theirs, x, factors))


def test_hue_matches_torchvision() -> None:
    x = _images(b=8)
    shifts = torch.tensor([0.0, 0.1, -0.1, 0.5, -0.5, 0.25, -0.37, 0.05])
    out = color.adjust_hue(x, shifts)
    torch.testing.assert_close(out, _per_image(F2.adjust_hue, x, shifts), atol=5e-6, rtol=0)


def test_grayscale_flip_rotation_match_torchvision() -> None:
    x = _images()
    ref = torch.stack([F2.rgb_to_grayscale(img, num_output_channels=3) for img in x])
    torch.testing.assert_close(color.grayscale(x), ref)
    flip = torch.tensor([True, False, True, True, False, False])
    ref = torch.stack(
        [F2.horizontal_flip(img) if f else img for img, f in zip(x, flip, strict=True)]
    )
    assert torch.equal(ops.hflip(x, flip), ref)
    turns = torch.tensor([0, 1, 2, 3, 1, 3])
    ref = torch.stack([F2.rotate(img, 90.0 * int(k)) for img, k in zip(x, turns, strict=True)])
    assert torch.equal(ops.rotate90(x, turns), ref)


@pytest.mark.parametrize("kernel_size", [3, 5])
def test_gaussian_blur_matches_torchvision(kernel_size: int) -> None:
    x = _images(side=9)
    sigmas = torch.tensor([0.1, 0.5, 1.0, 1.5, 2.0, 0.8])
    out = ops.gaussian_blur(x, kernel_size, sigmas)
    ref = torch.stack(
        [
            F2.gaussian_blur(img, [kernel_size] * 2, [float(s)] * 2)
            for img, s in zip(x, sigmas, strict=True)
        ]
    )
    torch.testing.assert_close(out, ref, atol=1e-6, rtol=1e-5)


def test_resized_crop_matches_torchvision_bilinear() -> None:
    x = _images(b=5, side=16)
    # (top, left, height, width): upsampling, downsampling, a full image, edges, 1 px wide
    boxes = torch.tensor(
        [[2, 3, 5, 7], [0, 0, 16, 16], [4, 1, 12, 10], [9, 8, 7, 8], [3, 15, 6, 1]]
    )
    flip = torch.tensor([False, True, False, True, False])
    out = ops.resized_crop(x, boxes, 8, flip=flip)
    ref = []
    for img, (top, left, h, w), f in zip(x, boxes.tolist(), flip, strict=True):
        crop = F2.resized_crop(img, top, left, h, w, [8, 8], antialias=False)
        ref.append(F2.horizontal_flip(crop) if f else crop)
    torch.testing.assert_close(out, torch.stack(ref), atol=2e-6, rtol=0)


def test_resized_crop_bicubic_full_box_matches_torchvision() -> None:
    x = _images(b=3, side=12)
    boxes = torch.tensor([[0, 0, 12, 12]] * 3)
    out = ops.resized_crop(x, boxes, 20, interpolation="bicubic")
    ref = F2.resize(x, [20, 20], interpolation=T2.InterpolationMode.BICUBIC, antialias=False)
    torch.testing.assert_close(out, ref.clamp(0, 1), atol=2e-6, rtol=0)


def test_color_jitter_order_matches_sequential_torchvision() -> None:
    x = _images(b=8)
    g = torch.Generator().manual_seed(3)
    factors = torch.cat(
        [0.2 + 1.6 * torch.rand(8, 3, generator=g), torch.rand(8, 1, generator=g) - 0.5], 1
    )
    factors[0] = torch.tensor([1.0, 1.0, 1.0, 0.0])
    order = torch.argsort(torch.rand(8, 4, generator=g), dim=1)
    fns = [F2.adjust_brightness, F2.adjust_contrast, F2.adjust_saturation, F2.adjust_hue]
    ref = []
    for img, f, o in zip(x, factors, order, strict=True):
        for op in o.tolist():
            img = fns[op](img, float(f[op]))
        ref.append(img)
    out = color.color_jitter(x, factors, order)
    torch.testing.assert_close(out, torch.stack(ref), atol=5e-6, rtol=0)
    assert torch.equal(out[0], x[0])  # identity factors: exactly unchanged


def test_cutout_matches_naive_erase() -> None:
    x = _images(side=8)
    centres = torch.tensor([[0, 0], [7, 7], [3, 4], [1, 6], [5, 2], [4, 4]])
    out = ops.cutout(x, centres, side=4, fill=0.5)
    ref = x.clone()
    for i, (r, c) in enumerate(centres.tolist()):
        ref[i, :, max(r - 2, 0) : r + 2, max(c - 2, 0) : c + 2] = 0.5
    assert torch.equal(out, ref)


def test_sobel_matches_naive_transcription() -> None:
    x = _images(b=3, side=7)
    gray = F2.rgb_to_grayscale(x).squeeze(1).numpy().astype(np.float64)
    p = np.pad(gray, ((0, 0), (1, 1), (1, 1)), mode="edge")
    gx = (p[:, :-2, 2:] + 2 * p[:, 1:-1, 2:] + p[:, 2:, 2:]) - (
        p[:, :-2, :-2] + 2 * p[:, 1:-1, :-2] + p[:, 2:, :-2]
    )
    gy = (p[:, 2:, :-2] + 2 * p[:, 2:, 1:-1] + p[:, 2:, 2:]) - (
        p[:, :-2, :-2] + 2 * p[:, :-2, 1:-1] + p[:, :-2, 2:]
    )
    mag = np.sqrt(gx**2 + gy**2)
    mag = mag / np.maximum(mag.max(axis=(1, 2), keepdims=True), 1e-12)
    out = ops.sobel(x)
    assert torch.equal(out[:, 0], out[:, 2])
    torch.testing.assert_close(out[:, 0], torch.from_numpy(mag).float(), atol=1e-5, rtol=0)
    assert out[0].abs().max() == 0  # a flat image has no edges


def test_random_color_jitter_applies_its_sampled_parameters() -> None:
    x = _images(b=16, side=6)
    op = ColorJitter(strength=1.0, p=0.8)
    p = op.sample(x, torch.Generator().manual_seed(1))
    fns = [F2.adjust_brightness, F2.adjust_contrast, F2.adjust_saturation, F2.adjust_hue]
    ref = []
    for img, f, o, applied in zip(x, p["factors"], p["order"], p["applied"], strict=True):
        for k in o.tolist() if applied else []:
            img = fns[k](img, float(f[k]))
        ref.append(img)
    torch.testing.assert_close(op.transform(x, p), torch.stack(ref), atol=5e-6, rtol=0)


# --- the random parameters: ranges and rates ----------------------------------------------


def test_crop_boxes_match_torchvision_sampler() -> None:
    n, side = 6000, 64
    crop = RandomResizedCrop(32)
    x = torch.zeros(1, 1, 1, 1).expand(n, 3, side, side)  # shape only, no memory
    boxes = crop.sample(x, torch.Generator().manual_seed(0))["boxes"].double()
    top, left, h, w = boxes.unbind(1)
    assert (top >= 0).all() and (left >= 0).all()
    assert (top + h <= side).all() and (left + w <= side).all()
    area = h * w / side**2
    # Integer rounding of w and h moves the area and aspect a little past the bounds.
    assert area.min() >= 0.08 * 0.8 and area.max() <= 1.0
    assert (torch.log(w / h).abs() <= math.log(4 / 3) + 0.1).all()
    torch.manual_seed(0)
    ref = torch.tensor(
        [T2.RandomResizedCrop.get_params(torch.zeros(3, side, side), [0.08, 1.0], [3 / 4, 4 / 3])
         for _ in range(n)], dtype=torch.float64,
    )  # fmt: skip
    ref_area = ref[:, 2] * ref[:, 3] / side**2
    edges = torch.linspace(0.08, 1.0, 6)
    ours = torch.histc(area.float(), 5, 0.08, 1.0) / n
    theirs = torch.histc(ref_area.float(), 5, 0.08, 1.0) / n
    assert (ours - theirs).abs().max() < 0.03, (edges, ours, theirs)
    assert abs(area.mean() - ref_area.mean()) < 0.015
    log_r, ref_log_r = torch.log(w / h).float(), torch.log(ref[:, 3] / ref[:, 2]).float()
    bound = math.log(4 / 3)
    ours_r = torch.histc(log_r, 4, -bound, bound) / n
    theirs_r = torch.histc(ref_log_r, 4, -bound, bound) / n
    assert (ours_r - theirs_r).abs().max() < 0.03, (ours_r, theirs_r)
    # Uniform where every aspect ratio fits (area <= 3/4, the first three bins); the retry
    # loop only thins out the largest areas.
    assert ours[:3].max() - ours[:3].min() < 0.03 and ours[3:].max() < ours[:3].min()
    # The fallback (here the full image) is rare, as in torchvision.
    full, ref_full = (area == 1).float().mean(), (ref_area == 1).float().mean()
    assert full < 0.02 and abs(full - ref_full) < 0.01


def test_crop_fallback_for_extreme_images() -> None:
    # A 4x64 strip fits no crop with aspect in (3/4, 4/3) and area >= 0.08 * 256 ... except
    # very few; torchvision falls back to the centre crop with the aspect clamped.
    x = torch.zeros(200, 3, 4, 64)
    boxes = RandomResizedCrop(8, scale=(0.5, 1.0)).sample(x, torch.Generator().manual_seed(0))
    top, left, h, w = boxes["boxes"].unbind(1)
    assert (h == 4).all() and (w == round(4 * 4 / 3)).all()
    assert (left == (64 - 5) // 2).all() and (top == 0).all()


def test_rates_of_the_family() -> None:
    n = 4000
    x = torch.rand(n, 3, 4, 4, generator=torch.Generator().manual_seed(0))
    g = torch.Generator().manual_seed(1)
    flip = RandomResizedCrop(4).sample(x, g)["flip"].float().mean()
    assert abs(flip - 0.5) < 0.04
    # Colour distortion = jitter (p = 0.8) then grayscale (p = 0.2), drawn independently.
    aug = build_augmentation(["color"], size=4, strength=1.0)
    jitter, gray = aug.ops[1], aug.ops[2]
    assert isinstance(jitter, ColorJitter) and isinstance(gray, RandomGrayscale)
    applied = jitter.sample(x, g)["applied"]
    dropped = gray.sample(x, g)["applied"]
    assert abs(applied.float().mean() - 0.8) < 0.03 and abs(dropped.float().mean() - 0.2) < 0.03
    assert abs((applied & dropped).float().mean() - 0.16) < 0.03
    out = aug(x, generator=g)
    is_gray = (out[:, 0] == out[:, 1]).flatten(1).all(1) & (out[:, 1] == out[:, 2]).flatten(1).all(
        1
    )
    changed = (out != x).flatten(1).any(1)
    assert abs(is_gray.float().mean() - 0.2) < 0.03
    assert abs(changed.float().mean() - (1 - 0.2 * 0.8)) < 0.03  # unchanged: neither op
    blurred = (GaussianBlur(3)(x, g) != x).flatten(1).any(1).float().mean()
    assert abs(blurred - 0.5) < 0.04
    turns = RandomRotation().sample(x, g)["quarter_turns"]
    counts = torch.bincount(turns, minlength=4).float() / n
    assert counts[0] == 0 and (counts[1:] - 1 / 3).abs().max() < 0.04


def test_noise_std_is_drawn_per_image() -> None:
    x = torch.full((64, 3, 16, 16), 0.5)
    op = GaussianNoise(std=(0.01, 0.08))
    p = op.sample(x, torch.Generator().manual_seed(0))
    out = op.transform(x, p)
    measured = (out - x).flatten(1).std(dim=1)
    torch.testing.assert_close(measured, p["stds"], atol=0.01, rtol=0.1)
    assert p["stds"].std() > 0.01


# --- identity, independence, reproducibility ------------------------------------------------


def test_identity_cases() -> None:
    x = _images(side=8)
    jitter = build_augmentation(
        ["color_jitter"], 8, strength=0.0, probabilities={"color_jitter": 1.0}
    )
    assert torch.equal(jitter(x), x)
    assert torch.equal(
        color.color_jitter(
            x, torch.tensor([[1.0, 1.0, 1.0, 0.0]] * 6), torch.argsort(torch.rand(6, 4))
        ),
        x,
    )
    crop = build_augmentation(
        ["crop"], 8, crop_scale=(1.0, 1.0), crop_ratio=(1.0, 1.0), probabilities={"flip": 0.0}
    )
    assert torch.equal(crop(x), x)


def test_views_and_images_are_independent() -> None:
    x = torch.rand(1, 3, 10, 10).expand(8, 3, 10, 10)  # eight copies of one image
    aug = simclr_augmentation("cifar", size=10)
    a, b = aug(x), aug(x)
    assert not torch.equal(a, b)
    assert all(not torch.equal(a[0], a[i]) for i in range(1, 8))  # parameters per image


def test_generator_reproducibility_and_global_rng() -> None:
    x = torch.randint(0, 256, (6, 3, 12, 12), dtype=torch.uint8)
    aug = simclr_augmentation("imagenet", size=10)
    a = aug(x, generator=torch.Generator().manual_seed(7))
    b = aug(x, generator=torch.Generator().manual_seed(7))
    c = aug(x, generator=torch.Generator().manual_seed(8))
    assert torch.equal(a, b) and not torch.equal(a, c)
    torch.manual_seed(11)
    d = aug(x)
    torch.manual_seed(11)
    assert torch.equal(d, aug(x))  # restoring the global RNG reproduces the views


def test_output_contract_and_uint8_equals_float() -> None:
    x = torch.randint(0, 256, (5, 3, 14, 11), dtype=torch.uint8)
    aug = simclr_augmentation("cifar", size=9)
    out = aug(x, generator=torch.Generator().manual_seed(0))
    assert out.shape == (5, 3, 9, 9) and out.dtype == torch.float32 and out.device == x.device
    assert out.min() >= 0 and out.max() <= 1
    same = aug(x.double() / 255, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(out, same, atol=1e-5, rtol=0)
    floats = torch.rand(4, 3, 9, 9)
    before = floats.clone()
    build_augmentation([n for n in AUGMENTATION_OPS if n not in ("crop", "color")], 9)(floats)
    assert torch.equal(floats, before)  # the caller's tensor is never modified in place


@pytest.mark.parametrize("name", AUGMENTATION_OPS)
def test_every_op_composes_and_changes_images(name: str) -> None:
    x = torch.rand(16, 3, 24, 24, generator=torch.Generator().manual_seed(0))
    aug = build_augmentation(
        [name], 24, probabilities={k: 1.0 for k in ["flip", "color_jitter", "color_drop", "blur"]}
    )
    out = aug(x, generator=torch.Generator().manual_seed(1))
    assert out.shape == x.shape and out.min() >= 0 and out.max() <= 1
    assert (out != x).flatten(1).any(1).all(), f"{name} left an image unchanged"


def test_resize_without_crop_and_explicit_flip_folding() -> None:
    x = torch.rand(4, 3, 20, 20)
    out = build_augmentation(["color_drop"], 10, probabilities={"color_drop": 0.0})(x)
    ref = F2.resize(x, [10, 10], antialias=True)
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=0)
    explicit = build_augmentation(["crop", "flip", "color"], 10, strength=0.5)
    implicit = build_augmentation(["crop", "color"], 10, strength=0.5)
    g = torch.Generator
    assert torch.equal(explicit(x, g().manual_seed(0)), implicit(x, g().manual_seed(0)))
    separate = build_augmentation(["crop", "color", "flip"], 10)
    assert isinstance(separate.ops[0], RandomResizedCrop) and separate.ops[0].flip_p == 0.0


def test_presets() -> None:
    assert AUGMENTATION_PRESETS == ("cifar", "imagenet")
    cifar = simclr_augmentation("cifar", 32)
    assert [type(m).__name__ for m in cifar.ops] == [
        "RandomResizedCrop",
        "ColorJitter",
        "RandomGrayscale",
    ]
    assert cifar.ops[1].strength == 0.5 and cifar.ops[1].p == 0.8 and cifar.ops[2].p == 0.2
    imagenet = simclr_augmentation("imagenet", 224)
    blur = imagenet.ops[-1]
    assert isinstance(blur, GaussianBlur) and blur.kernel_size == 23 and blur.p == 0.5
    assert imagenet.ops[1].strength == 1.0 and blur.sigma == (0.1, 2.0)
    assert blur_kernel_size(32) == 3 and blur_kernel_size(96) == 9
    assert isinstance(simclr_augmentation("cifar", 32, blur=True).ops[-1], GaussianBlur)


# --- bad input ----------------------------------------------------------------------------


def test_bad_inputs_raise_clear_errors() -> None:
    aug = simclr_augmentation("cifar", 8)
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\)"):
        aug(torch.rand(2, 8, 8, 3))
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\)"):
        aug(torch.rand(3, 8, 8))
    with pytest.raises(ValueError, match="uint8"):
        aug(torch.zeros(2, 3, 8, 8, dtype=torch.int32))
    with pytest.raises(TypeError, match="Generator"):
        aug(torch.rand(2, 3, 8, 8), generator=0)
    with pytest.raises(ValueError, match="strength"):
        build_augmentation(["color"], 8, strength=-0.1)
    with pytest.raises(ValueError, match=r"'colour'.*Did you mean 'color'.*Valid: crop"):
        build_augmentation(["crop", "colour"], 8)
    with pytest.raises(ValueError, match="Did you mean 'imagenet'"):
        simclr_augmentation("imagent")
    with pytest.raises(ValueError, match="'crop' must come first"):
        build_augmentation(["color", "crop"], 8)
    with pytest.raises(ValueError, match="more than once"):
        build_augmentation(["color", "color_drop"], 8)
    with pytest.raises(ValueError, match="probability of flip"):
        build_augmentation(["crop"], 8, probabilities={"flip": 1.5})
    with pytest.raises(ValueError, match="probability key 'blurr'"):
        build_augmentation(["crop"], 8, probabilities={"blurr": 0.5})
    with pytest.raises(TypeError, match="list of operator names"):
        build_augmentation("crop", 8)
    with pytest.raises(ValueError, match="crop scale"):
        build_augmentation(["crop"], 8, crop_scale=(0.0, 1.0))
    with pytest.raises(ValueError, match="size"):
        BatchAugmentation([], 0)


def test_accelerator_path_gives_the_cpu_views_without_waiting_for_the_device(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Every Figure 4 operator, with the subset-only ones (hue, colour drop, blur, rotation)
    # applied to some images and not others; and the ImageNet preset (blur on).
    names = [name for name in AUGMENTATION_OPS if name != "color"]  # = jitter + drop
    figure4 = build_augmentation(names, 24, probabilities={"rotation": 0.7})
    imagenet = simclr_augmentation("imagenet", size=24)
    x = torch.randint(0, 256, (64, 3, 32, 32), dtype=torch.uint8)

    def views() -> list[torch.Tensor]:
        return [
            aug(x, generator=torch.Generator().manual_seed(seed))
            for seed, aug in enumerate((figure4, imagenet))
        ]

    on_cpu = views()
    monkeypatch.setattr(ops, "subset_pays", lambda device: False)
    with forbid_host_waits():
        as_on_gpu = views()
    for got, expected in zip(as_on_gpu, on_cpu, strict=True):
        torch.testing.assert_close(got, expected, atol=1e-6, rtol=0)


@pytest.mark.parametrize("selected", [[True, False, True, False], [False] * 4, [True] * 4])
def test_apply_where_transforms_only_the_selected_images(selected: list[bool]) -> None:
    x = torch.rand(4, 3, 5, 5)
    mask = torch.tensor(selected)
    shifts = torch.tensor([0.1, 0.2, -0.3, 0.4])

    def hue(imgs: torch.Tensor, idx: torch.Tensor | None) -> torch.Tensor:
        return color.adjust_hue(imgs, shifts if idx is None else shifts[idx])

    expected = torch.where(mask.view(-1, 1, 1, 1), color.adjust_hue(x, shifts), x)
    torch.testing.assert_close(ops.apply_where(x, mask, hue), expected)
    y = x.clone()
    assert ops.apply_where(y, mask, hue, inplace=True) is y
    torch.testing.assert_close(y, expected)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_augmentation_never_synchronises() -> None:
    aug = simclr_augmentation("imagenet", size=24)
    x = torch.randint(0, 256, (64, 3, 32, 32), dtype=torch.uint8, device="cuda")
    aug(x)  # warm-up: first calls may allocate and load kernels
    torch.cuda.set_sync_debug_mode("error")
    try:
        out = aug(x)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert out.shape == (64, 3, 24, 24)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_matches_cpu_for_the_same_parameters() -> None:
    x = torch.randint(0, 256, (32, 3, 16, 16), dtype=torch.uint8)
    aug = simclr_augmentation("imagenet", size=12)
    out = aug(x.cuda(), generator=torch.Generator("cuda").manual_seed(0))
    assert out.device.type == "cuda" and out.shape == (32, 3, 12, 12)
    g = torch.Generator().manual_seed(0)  # a CPU generator also drives a CUDA batch
    a = aug(x.cuda(), generator=g)
    b = aug(x, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(a.cpu(), b, atol=1e-4, rtol=0)
