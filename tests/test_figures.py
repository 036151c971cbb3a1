"""The papers' figures (selfsup.figures, ``selfsup figure``): the numbers behind each figure,
the PNGs' size and mode, determinism, the patch decoder's honesty check, and the CLI.

The I-JEPA checkpoint is test_ijepa_cli's tiny run (ViT-tiny, patch 8 on 32 px: a 4 x 4
grid, 4 steps) on test_cli's red/blue image tree."""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from test_cli import assert_user_error, overrides, run
from test_ijepa_cli import ijepa_overrides

from selfsup.build import load_split
from selfsup.data.augment_ops import rotate90, sobel
from selfsup.figures import (
    FIGURE4_OPS,
    augmentation_grid,
    augmentation_panels,
    channel_histograms,
    crop_histogram_data,
    crop_histograms,
    mask_grid,
    patchify,
    predictor_figure,
    sample_masks,
    train_decoder,
    unpatchify,
)
from selfsup.recipes import DataSection


def png(path: Path) -> tuple[tuple[int, int], str, np.ndarray]:
    with Image.open(path) as image:
        assert image.format == "PNG"
        return image.size, image.mode, np.asarray(image).copy()


def textured(n: int, seed: int = 0) -> torch.Tensor:
    """(n, 3, 32, 32) uint8: noise around a different colour per image."""
    g = torch.Generator().manual_seed(seed)
    base = torch.randint(40, 200, (n, 3, 1, 1), generator=g)
    return (base + torch.randint(-40, 40, (n, 3, 32, 32), generator=g)).to(torch.uint8)


@pytest.fixture(autouse=True, scope="module")
def _one_thread() -> Iterator[None]:
    """One torch thread: the machine is shared, and tiny ops on two contended threads
    run ten times slower than on one."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def ijepa_checkpoint(data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    run_dir = tmp_path_factory.mktemp("run") / "ijepa"
    code, _, err = run("pretrain", "ijepa", *ijepa_overrides(data, run_dir))
    assert code == 0, err
    return run_dir / "last.pt"


# --------------------------------------------------------------------------- Figure 6
def test_channel_histograms_match_histc() -> None:
    x = torch.rand(3, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    x[0, 0, 0, 0] = 1.0  # the top edge falls in the last bin
    h = channel_histograms(x, bins=8)
    assert h.shape == (3, 3, 8)
    for b in range(3):
        for c in range(3):
            reference = torch.histc(x[b, c], bins=8, min=0.0, max=1.0) / 256
            torch.testing.assert_close(h[b, c], reference)


def test_crop_histograms_coincide_without_colour_and_differ_with_it() -> None:
    # A constant colour: every crop without colour distortion has the same histogram.
    flat = torch.tensor([200, 60, 120], dtype=torch.uint8).view(1, 3, 1, 1).expand(1, 3, 32, 32)
    result = crop_histogram_data(flat.contiguous(), num_crops=6, seed=3)
    assert result.crops.shape == (2, 1, 6, 3, 32, 32)
    plain, distorted = result.histograms[0, 0], result.histograms[1, 0]  # (6, 3, 32)
    expected = torch.zeros(3, 32)
    expected[[0, 1, 2], [200 * 32 // 255, 60 * 32 // 255, 120 * 32 // 255]] = 1.0
    assert all(torch.equal(h, expected) for h in plain)
    assert any(not torch.equal(h, distorted[0]) for h in distorted[1:])
    # Textured images: crops of one image are far more alike without colour distortion.
    h = crop_histogram_data(textured(3), num_crops=5, seed=0).histograms  # (2, 3, 5, 3, 32)
    pairwise = (h[:, :, :, None] - h[:, :, None]).abs().sum(-1).mean((1, 2, 3, 4))
    assert pairwise[1] > 3 * pairwise[0]
    with pytest.raises(ValueError, match="num_crops must be an integer >= 2"):
        crop_histogram_data(flat, num_crops=1)


def test_crop_histograms_png_uses_up_to_three_images(tmp_path: Path) -> None:
    size, mode, _ = png(crop_histograms(textured(5), tmp_path / "c" / "crops.png", num_crops=3))
    assert size == (360 * 3 + 60, 700) and mode == "RGB"
    assert png(crop_histograms(textured(1), tmp_path / "one.png"))[0] == (420, 700)
    with pytest.raises(ValueError, match="uint8"):
        crop_histograms(textured(1).float(), tmp_path / "x.png")


# --------------------------------------------------------------------------- SimCLR Fig. 4
def test_augmentation_panels_apply_each_requested_operator() -> None:
    images = textured(4)
    x = images.float() / 255
    panels = augmentation_panels(images, FIGURE4_OPS, seed=0)
    assert panels.shape == (4, len(FIGURE4_OPS), 3, 32, 32)
    by_name = dict(zip(FIGURE4_OPS, panels.unbind(1), strict=True))
    assert torch.equal(by_name["original"], x)
    for name in FIGURE4_OPS[1:]:  # every operator changes every image (p forced to 1)...
        assert all(not torch.equal(p, o) for p, o in zip(by_name[name], x, strict=True)), name
    drop = by_name["color_drop"]  # ...in its own way
    assert torch.equal(drop[:, 0], drop[:, 1]) and torch.equal(drop[:, 1], drop[:, 2])
    rotations = [rotate90(x, torch.full((4,), k)) for k in (1, 2, 3)]
    assert all(any(torch.equal(by_name["rotation"][i], r[i]) for r in rotations) for i in range(4))
    torch.testing.assert_close(by_name["sobel"], sobel(x))
    changed = by_name["cutout"] != x
    assert changed.any() and torch.all(by_name["cutout"][changed] == 0.5)
    # The order of the panels is the order asked for.
    two = augmentation_panels(images, ["sobel", "original"], seed=0)
    torch.testing.assert_close(two[:, 0], sobel(x))
    assert torch.equal(two[:, 1], x)


def test_augmentation_grid_png_and_bad_ops(tmp_path: Path) -> None:
    size, mode, _ = png(augmentation_grid(textured(3), tmp_path / "aug.png"))
    assert size == (130 * len(FIGURE4_OPS), 130 * 3 + 60) and mode == "RGB"
    with pytest.raises(ValueError, match=r"Unknown augmentation op 'colour'.*'color'"):
        augmentation_grid(textured(1), tmp_path / "x.png", ops=["crop", "colour"])
    with pytest.raises(ValueError, match="non-empty list"):
        augmentation_panels(textured(1), [])


# --------------------------------------------------------------------------- I-JEPA Fig. 4
def test_mask_grid_is_deterministic_for_a_seed(tmp_path: Path) -> None:
    images = textured(6)
    first = png(mask_grid(images, tmp_path / "a.png", patch_size=4, seed=5, upscale=4))
    again = png(mask_grid(images, tmp_path / "b.png", patch_size=4, seed=5, upscale=4))
    other = png(mask_grid(images, tmp_path / "c.png", patch_size=4, seed=6, upscale=4))
    assert first[0] == (4 * (32 * 4 + 20), 2 * (32 * 4 + 30) + 60) and first[1] == "RGB"
    assert np.array_equal(first[2], again[2]) and not np.array_equal(first[2], other[2])
    masks = sample_masks(images, patch_size=4, seed=5, num_targets=2, min_context=4)
    assert all(len(t) == 2 and len(c) >= 4 for c, t in masks)
    for context, targets in masks:  # context and targets never overlap
        assert not set(context.tolist()) & set(torch.cat(targets).tolist())
    with pytest.raises(ValueError, match="multiple of patch_size=5"):
        mask_grid(images, tmp_path / "x.png", patch_size=5)


# --------------------------------------------------------------------------- I-JEPA Fig. 6
def test_patchify_follows_the_vit_token_order_and_inverts() -> None:
    x = torch.rand(2, 3, 8, 12)
    patches = patchify(x, 4)  # grid 2 x 3
    assert patches.shape == (2, 6, 48)
    assert torch.equal(patches[1, 4], x[1, :, 4:8, 4:8].reshape(-1))  # row 1, column 1
    assert torch.equal(unpatchify(patches, 4, (2, 3)), x)


def test_train_decoder_is_deterministic_and_learns() -> None:
    g = torch.Generator().manual_seed(0)
    tokens = torch.randn(64, 8, generator=g)
    pixels = torch.sigmoid(tokens @ torch.randn(8, 12, generator=g))  # a learnable map
    a, loss_a = train_decoder(tokens, pixels, 2, epochs=40, batch_size=16, seed=1)
    b, loss_b = train_decoder(tokens, pixels, 2, epochs=40, batch_size=16, seed=1)
    assert loss_a == loss_b
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters(), strict=True))
    assert loss_a < 0.1 * float(pixels.var(0).mean())  # far below predicting the mean
    with pytest.raises(ValueError, match="epochs must be a positive integer"):
        train_decoder(tokens, pixels, 2, epochs=0)


def test_predictor_figure_decodes_better_than_the_mean_image(
    ijepa_checkpoint: Path, data: Path, tmp_path: Path
) -> None:
    section = DataSection(dataset=str(data), cache=False)
    train = load_split(section, "train", labelled=False).images
    test = load_split(section, "test", labelled=False).images
    shown = test[[0, 1, 4, 5]]  # two blue, two red
    kwargs = {"epochs": 20, "batch_size": 32, "seed": 0}
    path, metrics = predictor_figure(ijepa_checkpoint, train, shown, tmp_path / "p.png", **kwargs)
    size, mode, _ = png(path)
    assert size == (640, 160 * 4 + 110) and mode == "RGB"
    assert set(metrics) == {
        "target_encoder_mse", "target_encoder_mse_in_targets", "predictor_mse_in_targets",
        "mean_image_mse", "mean_image_mse_in_targets", "decoder_train_mse",
    }  # fmt: skip
    assert all(math.isfinite(v) and v >= 0 for v in metrics.values())
    # Held-out images: the target encoder's tokens carry the colour the mean image lacks.
    assert metrics["target_encoder_mse"] < 0.5 * metrics["mean_image_mse"]
    _, again = predictor_figure(ijepa_checkpoint, train, shown, tmp_path / "q.png", **kwargs)
    assert again == metrics


# --------------------------------------------------------------------------- CLI
def test_cli_draws_every_figure(data: Path, ijepa_checkpoint: Path, tmp_path: Path) -> None:
    for figure, extra in (
        ("crops", ["--images", 2]),
        ("augmentations", ["--images", 2]),
        ("masks", ["--images", 3, "--patch-size", 8]),
    ):
        out = tmp_path / f"{figure}.png"
        code, text, err = run("figure", figure, "--out", out, "--data", data, *extra)
        assert code == 0, err
        assert text.strip() == f"wrote {out}" and png(out)[1] == "RGB"
    out = tmp_path / "predictor.png"
    code, text, err = run(
        "figure", "predictor", "--checkpoint", ijepa_checkpoint, "--out", out,
        "--images", 2, "--train-images", 8, "--epochs", 2, "--device", "cpu",
    )  # fmt: skip
    assert code == 0, err
    assert png(out)[0] == (640, 160 * 2 + 110) and "predictor_mse_in_targets: " in text


def test_cli_refuses_bad_figure_requests(data: Path, tmp_path: Path) -> None:
    out = tmp_path / "x.png"
    assert_user_error(run("figure", "mask", "--out", out), "Unknown figure 'mask'", "'masks'")
    assert_user_error(run("figure", "predictor", "--out", out), "needs --checkpoint")
    assert_user_error(
        run("figure", "masks", "--out", out, "--checkpoint", out), "predictor figure only"
    )
    # A SimCLR checkpoint has no predictor.
    run_dir = tmp_path / "simclr"
    short = {"train.epochs": 1, "optim.warmup_epochs": 0}
    code, _, err = run("pretrain", "simclr", *overrides(data, run_dir, **short))
    assert code == 0, err
    assert_user_error(
        run("figure", "predictor", "--checkpoint", run_dir / "last.pt", "--out", out),
        "needs an I-JEPA checkpoint: it has a predictor",
        "simclr checkpoint",
    )
    assert not out.exists()
