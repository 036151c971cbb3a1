"""I-JEPA multi-block masks: geometry, distributions, reproducibility, batching, drawing,
bad input, and the official behaviour (lightly 1.6's IJEPAMaskCollator) as a reference."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, cast

import numpy as np
import pytest
import torch
from PIL import Image

from selfsup.masks import (
    MaskBatch,
    MaskCollator,
    MultiBlockMaskSampler,
    block_indices,
    block_shape,
    draw_masks,
)
from selfsup.masks.collator import Batching
from selfsup.masks.geometry import block_shape_batch

PAPER = {
    "num_targets": 4,
    "target_scale": (0.15, 0.2),
    "target_aspect": (0.75, 1.5),
    "context_scale": (0.85, 1.0),
    "min_context": 10,
}


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def is_rectangle(idx: torch.Tensor, width: int) -> bool:
    """Whether sorted flat indices are exactly a full axis-aligned rectangle of the grid."""
    rows, cols = idx // width, idx % width
    r0, c0 = int(rows.min()), int(cols.min())
    h, w = int(rows.max()) - r0 + 1, int(cols.max()) - c0 + 1
    return torch.equal(idx, block_indices(r0, c0, h, w, width))


# --------------------------------------------------------------------------- geometry
@pytest.mark.parametrize("grid", [(8, 8), (14, 14), (6, 11)])
def test_per_image_masks_disjoint_rectangles_min_context(grid: tuple[int, int]) -> None:
    sampler = MultiBlockMaskSampler(grid, **PAPER)
    g, n = gen(0), grid[0] * grid[1]
    for _ in range(100):
        context, targets = sampler.sample(g)
        assert context.dtype == torch.long and len(targets) == 4
        assert len(context) >= 10
        assert torch.equal(context, context.unique())  # sorted, no duplicates
        assert int(context.min()) >= 0 and int(context.max()) < n
        for t in targets:
            assert t.dtype == torch.long and is_rectangle(t, grid[1])
            assert int(t.max()) < n
            assert not np.intersect1d(context.numpy(), t.numpy()).size


def test_areas_and_aspects_within_bounds_up_to_rounding() -> None:
    """h = round(x), w = round(y) with x y = s N, x / y = a: so x in [h - 1/2, h + 1/2],
    y in [w - 1/2, w + 1/2], and the box of possible (x, y) must meet the allowed region."""
    for grid in [(8, 8), (14, 14), (20, 20)]:
        sampler = MultiBlockMaskSampler(grid, **PAPER)
        n = grid[0] * grid[1]
        boxes = sampler.sample_batch(500, gen(1)).boxes.reshape(-1, 4).double()
        h, w = boxes[:, 2], boxes[:, 3]
        assert bool(((h - 0.5) * (w - 0.5) <= 0.2 * n).all())
        assert bool(((h + 0.5) * (w + 0.5) >= 0.15 * n).all())
        assert bool(((h - 0.5) / (w + 0.5) <= 1.5).all())
        assert bool(((h + 0.5) / (w - 0.5) >= 0.75).all())
    # The blocks use the whole ranges (a large grid, where rounding hardly matters).
    sampler = MultiBlockMaskSampler((60, 60), **PAPER)
    boxes = sampler.sample_batch(100, gen(2)).boxes.reshape(-1, 4).double()
    area, aspect = boxes[:, 2] * boxes[:, 3] / 3600, boxes[:, 2] / boxes[:, 3]
    assert float(area.min()) < 0.155 and float(area.max()) > 0.195
    assert float(aspect.min()) < 0.8 and float(aspect.max()) > 1.4


def test_block_shape_rounding_and_non_square_grids() -> None:
    assert block_shape(12.8, 1.0, 8, 8) == (4, 4)  # sqrt(12.8) = 3.58 rounds up
    assert block_shape(9.6, 0.75, 8, 8) == (3, 4)  # sqrt(7.2) = 2.68, sqrt(12.8) = 3.58
    # Too tall for a 3-row grid: cut to 3 rows, widened to keep the area 24.
    assert block_shape(24.0, 1.5, 3, 40) == (3, 8)
    assert block_shape(0.1, 1.0, 5, 5) == (1, 1)  # at least one patch
    # Context on a non-square grid at scale 1: the whole grid, not a square inside it.
    assert block_shape(16.0 * 8, 1.0, 16, 8) == (16, 8)
    area = torch.rand(500, generator=gen(3), dtype=torch.float64) * 60
    aspect = 0.3 + torch.rand(500, generator=gen(4), dtype=torch.float64) * 3
    h, w = block_shape_batch(area, aspect, 5, 9)
    ref = [block_shape(x, a, 5, 9) for x, a in zip(area.tolist(), aspect.tolist(), strict=True)]
    assert list(zip(h.tolist(), w.tolist(), strict=True)) == ref


@pytest.mark.parametrize("grid", [(8, 8), (14, 14)])
def test_every_cell_reachable_by_a_target_last_row_and_column_included(
    grid: tuple[int, int],
) -> None:
    sampler = MultiBlockMaskSampler(grid, **PAPER)
    draw = sampler.sample_batch(3000, gen(5))
    top, left, h, w = draw.boxes.reshape(-1, 4).unbind(1)
    rows, cols = torch.arange(grid[0]), torch.arange(grid[1])
    in_r = (rows >= top[:, None]) & (rows < (top + h)[:, None])
    in_c = (cols >= left[:, None]) & (cols < (left + w)[:, None])
    hits = (in_r[:, :, None] & in_c[:, None, :]).sum(0)
    assert bool((hits > 0).all())
    # The official randint(0, H - h) never reaches the last row/column; here the last row
    # is covered as often as the first (the distribution is symmetric).
    assert float(hits[-1].sum()) == pytest.approx(float(hits[0].sum()), rel=0.1)
    assert float(hits[:, -1].sum()) == pytest.approx(float(hits[:, 0].sum()), rel=0.1)


def test_positions_uniform_over_every_place_the_block_fits() -> None:
    # A fixed 4x4 block on 8x8: top and left uniform on {0, ..., 4}.
    sampler = MultiBlockMaskSampler((8, 8), 1, (0.25, 0.25), (1.0, 1.0), (1.0, 1.0), min_context=1)
    boxes = sampler.sample_batch(5000, gen(6)).boxes[:, 0]
    assert bool((boxes[:, 2:] == 4).all())
    for col in (0, 1):
        counts = torch.bincount(boxes[:, col], minlength=5).double()
        assert len(counts) == 5
        # Binomial(5000, 1/5): sd = 28.3; 5 sd.
        assert float((counts - 1000).abs().max()) < 5 * math.sqrt(5000 * 0.2 * 0.8)


def test_scale_and_aspect_independent_unlike_official() -> None:
    """On a grid large enough that rounding is negligible, log area and log aspect of the
    realised blocks are uncorrelated; lightly's (official) single-number draw gives ~0.6."""

    def corr(shapes: torch.Tensor) -> float:
        h, w = shapes[:, 0].double(), shapes[:, 1].double()
        return float(torch.corrcoef(torch.stack([(h * w).log(), (h / w).log()]))[0, 1])

    sampler = MultiBlockMaskSampler((32, 32), **PAPER)
    ours = sampler.sample_batch(1500, gen(7)).boxes.reshape(-1, 4)[:, 2:]
    assert abs(corr(ours)) < 0.05  # 6000 blocks: sd of a null correlation ~0.013

    from lightly.data.ijepa_collate import IJEPAMaskCollator

    official = IJEPAMaskCollator(input_size=32 * 16, patch_size=16)
    g = gen(7)
    shapes = [official._sample_block_size(g, (0.15, 0.2), (0.75, 1.5)) for _ in range(1000)]
    assert corr(torch.tensor(shapes)) > 0.5


# --------------------------------------------------------------------------- min_context
def test_min_context_resampling_and_reference_equals_vectorised() -> None:
    # 8x8 with min_context=30: about half of the draws are rejected and redrawn.
    sampler = MultiBlockMaskSampler((8, 8), **{**PAPER, "min_context": 30})
    draw = sampler.sample_batch(300, gen(8))
    assert int(draw.context.sum(1).min()) >= 30
    for seed in range(30):
        ctx, tgts = sampler.sample(gen(seed))
        ref_ctx, ref_tgts = sampler.sample_batch(1, gen(seed)).image(0)
        assert len(ctx) >= 30 and torch.equal(ctx, ref_ctx)
        assert all(torch.equal(a, b) for a, b in zip(tgts, ref_tgts, strict=True))
    # Row by row, the plain-Python layout and the vectorised one agree on any uniforms.
    u = torch.rand(200, sampler.draw_width, generator=gen(9), dtype=torch.float64)
    context, boxes = sampler._layout_batch(u)
    for i in range(200):
        ref_ctx_list, ref_boxes = sampler._layout_reference(u[i].tolist())
        assert context[i].nonzero().flatten().tolist() == ref_ctx_list
        assert boxes[i].tolist() == [list(b) for b in ref_boxes]


def test_small_grid_works_quickly_with_paper_defaults() -> None:
    """SPEC: the official collator loops forever on 8x8; ours returns valid masks."""
    sampler = MultiBlockMaskSampler((8, 8), **PAPER)
    mb = MaskCollator(sampler, "pad")(256, gen(10))
    assert mb.context_valid is not None and int(mb.context_valid.sum(1).min()) >= 10


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"grid": (0, 8)}, "grid"),
        ({"grid": (8,)}, "grid"),
        ({"grid": (8.0, 8)}, "grid"),
        ({"grid": (8, 8), "num_targets": 0}, "num_targets"),
        ({"grid": (8, 8), "target_scale": (0.2, 0.15)}, "target_scale"),
        ({"grid": (8, 8), "target_scale": (0.0, 0.2)}, "target_scale"),
        ({"grid": (8, 8), "context_scale": (0.85, 1.2)}, "context_scale"),
        ({"grid": (8, 8), "target_aspect": (1.5, 0.75)}, "target_aspect"),
        ({"grid": (8, 8), "target_aspect": (-1.0, 2.0)}, "target_aspect"),
        ({"grid": (8, 8), "min_context": 0}, "min_context"),
        ({"grid": (8, 8), "min_context": 65}, "min_context"),
        ({"grid": (8, 8), "max_tries": 0}, "max_tries"),
        ({"grid": (2, 2)}, "min_context.*larger image or a smaller patch size"),
        ({"grid": (4, 4), "min_context": 12}, "impossible"),  # targets take the context
        ({"grid": (8, 8), "min_context": 60}, "impossible"),
    ],
)
def test_bad_arguments_raise_clear_errors(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        MultiBlockMaskSampler(**kwargs)


def test_impossible_message_names_settings_and_fix() -> None:
    with pytest.raises(ValueError) as err:
        MultiBlockMaskSampler((4, 4), min_context=12)
    msg = str(err.value)
    for part in ("grid=(4, 4)", "min_context=12", "num_targets=4", "smaller patch size"):
        assert part in msg


def test_exhausted_tries_raise_runtime_error() -> None:
    # 50 % acceptance and one try per image: 64 images all valid has probability 2^-64.
    sampler = MultiBlockMaskSampler((8, 8), **{**PAPER, "min_context": 30}, max_tries=1)
    with pytest.raises(RuntimeError, match="max_tries=1"):
        sampler.sample_batch(64, gen(11))


# --------------------------------------------------------------------------- seeds
def test_same_seed_same_masks_different_seed_different() -> None:
    sampler = MultiBlockMaskSampler((14, 14), **PAPER)
    a, b, c = sampler.sample(gen(1)), sampler.sample(gen(1)), sampler.sample(gen(2))
    assert torch.equal(a[0], b[0]) and all(map(torch.equal, a[1], b[1]))
    assert not (torch.equal(a[0], c[0]) and all(map(torch.equal, a[1], c[1])))
    modes: tuple[Batching, ...] = ("truncate", "pad")
    for mode in modes:
        collator = MaskCollator(sampler, mode)
        x, y, z = collator(8, gen(3)), collator(8, gen(3)), collator(8, gen(4))
        assert torch.equal(x.context_idx, y.context_idx)
        assert torch.equal(x.target_idx, y.target_idx)
        assert not torch.equal(x.target_idx, z.target_idx)
        # None: torch's global RNG, which a trainer seeds and checkpoints.
        torch.manual_seed(5)
        p = collator(8)
        torch.manual_seed(5)
        q = collator(8)
        assert torch.equal(p.context_idx, q.context_idx)
        assert torch.equal(p.target_idx, q.target_idx)
    state = torch.get_rng_state()
    MultiBlockMaskSampler((14, 14), **PAPER)  # the feasibility probe uses its own generator
    assert torch.equal(state, torch.get_rng_state())


# --------------------------------------------------------------------------- collator
@pytest.mark.parametrize("grid", [(8, 8), (14, 14)])
def test_truncate_keeps_random_subsets_of_the_per_image_masks(grid: tuple[int, int]) -> None:
    sampler = MultiBlockMaskSampler(grid, **PAPER)
    draw = sampler.sample_batch(32, gen(12))
    mb = MaskCollator(sampler, "truncate").collate(draw, gen(13))
    assert mb.context_valid is None and mb.target_valid is None
    k, t = int(draw.context.sum(1).min()), int(draw.target_sizes().min())
    assert mb.context_idx.shape == (32, k) and mb.target_idx.shape == (32, 4, t)
    assert mb.context_idx.dtype == torch.long and mb.target_idx.dtype == torch.long
    for i in range(32):
        ctx, tgts = draw.image(i)
        row = mb.context_idx[i]
        assert torch.equal(row, row.unique())  # sorted, distinct
        assert bool(torch.isin(row, ctx).all())
        for m in range(4):
            block = mb.target_idx[i, m]
            assert torch.equal(block, block.unique()) and bool(torch.isin(block, tgts[m]).all())


@pytest.mark.parametrize("grid", [(8, 8), (14, 14)])
def test_pad_keeps_exactly_the_per_image_masks(grid: tuple[int, int]) -> None:
    sampler = MultiBlockMaskSampler(grid, **PAPER)
    draw = sampler.sample_batch(32, gen(14))
    mb = MaskCollator(sampler, "pad").collate(draw)
    assert mb.context_valid is not None and mb.target_valid is not None
    assert mb.context_idx.shape == (32, int(draw.context.sum(1).max()))
    assert mb.target_idx.shape == (32, 4, int(draw.target_sizes().max()))
    for i in range(32):
        ctx, tgts = draw.image(i)
        valid = mb.context_valid[i]
        assert torch.equal(mb.context_idx[i][valid], ctx)
        assert bool(valid[: len(ctx)].all()) and not bool(valid[len(ctx) :].any())
        assert bool((mb.context_idx[i][~valid] == 0).all())  # padded with index 0
        for m in range(4):
            v = mb.target_valid[i, m]
            assert torch.equal(mb.target_idx[i, m][v], tgts[m])
            assert bool((mb.target_idx[i, m][~v] == 0).all())


def test_collator_draws_what_the_sampler_draws_and_moves() -> None:
    sampler = MultiBlockMaskSampler((14, 14), **PAPER)
    mb = MaskCollator(sampler, "pad")(16, gen(15))
    draw = sampler.sample_batch(16, gen(15))
    assert mb.context_valid is not None
    assert torch.equal(mb.context_valid.sum(1), draw.context.sum(1))
    moved = mb.to("cpu")
    assert isinstance(moved, MaskBatch) and moved is not mb
    assert torch.equal(moved.target_idx, mb.target_idx)
    doubled = mb.map(lambda t: t * 2)  # every field, padding masks included
    assert mb.target_valid is not None and doubled.target_valid is not None
    assert torch.equal(doubled.context_idx, mb.context_idx * 2)
    assert torch.equal(doubled.target_idx, mb.target_idx * 2)
    assert torch.equal(doubled.context_valid, mb.context_valid * 2)
    assert torch.equal(doubled.target_valid, mb.target_valid * 2)
    truncated = MaskCollator(sampler, "truncate")(4, gen(15))
    assert truncated.map(lambda t: t + 1).context_valid is None  # None stays None
    with pytest.raises(ValueError, match="batching"):
        MaskCollator(sampler, cast(Any, "crop"))
    with pytest.raises(ValueError, match="batch_size"):
        MaskCollator(sampler)(0)


def test_random_truncation_is_unbiased_positional_cut_drops_bottom_rows() -> None:
    """Each patch of a block is kept with the same probability under our truncation; the
    official ``mask[:min_keep]`` (a naive transcription here) keeps the first rows."""
    sampler = MultiBlockMaskSampler((14, 14), **PAPER)
    g = gen(16)
    ours = torch.zeros(2)  # kept fraction of a block's first and last rows
    official = torch.zeros(2)
    for _ in range(20):
        draw = sampler.sample_batch(64, g)
        truncated = MaskCollator(sampler, "truncate").collate(draw, g).target_idx
        # The official cut, transcribed: each block's sorted indices [:min size].
        cut = MaskCollator(sampler, "pad").collate(draw).target_idx[..., : truncated.shape[-1]]
        top, _, h, w = draw.boxes.unbind(-1)
        for kept, acc in ((truncated, ours), (cut, official)):
            rel = kept // 14 - top[..., None]  # row within the block
            for j, row in enumerate((torch.zeros_like(h), h - 1)):
                acc[j] += (rel == row[..., None]).sum() / w.sum()
    ours, official = ours / 20, official / 20
    assert float(ours[1]) == pytest.approx(float(ours[0]), rel=0.05)
    assert float(official[0]) == pytest.approx(1.0)  # first rows always kept
    assert float(official[1]) < 0.5 * float(official[0])


# --------------------------------------------------------------------------- official
def test_sizes_in_the_range_of_the_official_collator_on_14x14() -> None:
    """lightly 1.6's IJEPAMaskCollator (the official code) with the paper's settings, batch
    16: SPEC measured context 58.7 patches (after its cut to the batch minimum), target 33.4.
    Ours: targets of the same size (independent draws change the spread, not the mean);
    per-image contexts larger (the context may reach the last row and column; the official
    one is a 13x13 square at (0, 0)), but the same size after the same cut to the minimum."""
    from lightly.data.ijepa_collate import IJEPAMaskCollator

    official = IJEPAMaskCollator(
        input_size=224,
        patch_size=16,
        enc_mask_scale=(0.85, 1.0),
        pred_mask_scale=(0.15, 0.2),
        aspect_ratio=(0.75, 1.5),
        nenc=1,
        npred=4,
        min_keep=10,
    )
    torch.manual_seed(0)  # its positions come from the global RNG
    off_ctx, off_tgt = [], []
    for _ in range(15):
        _, enc, pred = official([torch.zeros(1)] * 16)
        off_ctx.append(enc[0].shape[1])
        off_tgt.append(pred[0].shape[1])
    assert 50 < np.mean(off_ctx) < 68 and 31 < np.mean(off_tgt) < 36  # SPEC: 58.7, 33.4

    sampler = MultiBlockMaskSampler((14, 14), **PAPER)
    g = gen(17)
    draw = sampler.sample_batch(480, g)
    assert float(draw.target_sizes().double().mean()) == pytest.approx(np.mean(off_tgt), rel=0.08)
    assert float(draw.context.sum(1).double().mean()) > 1.3 * np.mean(off_ctx)
    cut = [MaskCollator(sampler, "truncate")(16, g).context_idx.shape[1] for _ in range(30)]
    assert np.mean(cut) == pytest.approx(np.mean(off_ctx), rel=0.15)


# --------------------------------------------------------------------------- figure
def test_draw_masks_writes_png_with_coloured_targets(tmp_path: Path) -> None:
    image = torch.full((3, 32, 32), 128, dtype=torch.uint8)
    # 8x8 grid, patch 4: three disjoint blocks, the context is rows 2-4, one patch dropped.
    targets = [
        block_indices(0, 0, 2, 2, 8),
        block_indices(5, 5, 3, 3, 8),
        block_indices(0, 5, 2, 3, 8),
    ]
    context = torch.arange(16, 40)
    context = context[context != 20]
    out = draw_masks(
        image, context, targets, patch_size=4, path=tmp_path / "f" / "m.png", upscale=2
    )
    with Image.open(out) as png:
        assert png.format == "PNG" and png.size == (64, 64) and png.mode == "RGB"
        pixels = torch.from_numpy(np.asarray(png).copy()).permute(2, 0, 1)

    def centre(idx: int) -> tuple[int, ...]:  # pixel at the middle of patch idx (upscaled x2)
        r, c = divmod(idx, 8)
        return tuple(pixels[:, r * 8 + 4, c * 8 + 4].tolist())

    grey = (128, 128, 128)
    assert all(centre(i) == grey for i in context.tolist())  # context: untouched
    covered = set(torch.cat(targets).tolist())
    others = [i for i in range(64) if i not in covered and i not in set(context.tolist())]
    assert 20 in others and all(max(centre(i)) < 128 for i in others)  # dimmed
    colours = [{centre(i) for i in block.tolist()} for block in targets]
    assert all(len(c) == 1 and grey not in c for c in colours)  # one tint per block
    assert len(set.union(*colours)) == 3  # distinct blocks, distinct colours
    # The outline (bounding box) is drawn on the block's border pixels in its colour.
    assert tuple(pixels[:, 0, 0].tolist()) == (214, 39, 40)
    # Real masks from the sampler draw too.
    ctx, tgts = MultiBlockMaskSampler((8, 8), **PAPER).sample(gen(18))
    with Image.open(draw_masks(image, ctx, tgts, 4, tmp_path / "s.png")) as png:
        assert png.size == (32, 32)
    with pytest.raises(ValueError, match="multiple of patch_size"):
        draw_masks(image, context, targets, patch_size=5, path=tmp_path / "x.png")
    with pytest.raises(ValueError, match="outside"):
        draw_masks(image, torch.tensor([64]), targets, patch_size=4, path=tmp_path / "x.png")
    with pytest.raises(ValueError, match="uint8"):
        draw_masks(image.float(), context, targets, patch_size=4, path=tmp_path / "x.png")
