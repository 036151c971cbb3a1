"""I-JEPA multi-block masking (Assran et al., CVPR 2023, Sec. 3 "Context" / "Targets",
Fig. 4): per image, ``M`` target blocks and one context block with the targets removed.

Decisions (each tested in ``tests/test_masks.py``; see ``docs/masks.md``):

* **Independent scale and aspect ratio.** Every target block draws its scale
  ``s ~ U(target_scale)`` and its aspect ratio ``a ~ U(target_aspect)`` from two separate
  uniform numbers. The official code uses one number for both, so large blocks are always
  tall ones. The aspect ratio is uniform (not log-uniform), as the paper and SPEC state.
* **Shape from scale and aspect**, ``a = height / width`` (the official convention):
  ``h = round(sqrt(s N a))``, ``w = round(sqrt(s N / a))`` for a grid of ``N = H W``
  patches, rounded half to even (Python's and torch's ``round``), at least 1. The realised
  area and aspect are therefore within the requested ranges up to rounding
  (``|h - sqrt(s N a)| <= 1/2``, same for ``w``). A side longer than the grid (only on
  non-square grids with the paper's ranges) is cut to the grid and the other side
  recomputed to keep the area (``block_shape``).
* **Positions uniform over every place the block fits**: the top row is uniform in
  ``{0, ..., H - h}`` and the left column in ``{0, ..., W - w}``, so a block can touch the
  last row and column (the official ``randint(0, H - h)`` never lets it).
* **Context block**: aspect 1, scale ``U(context_scale)``, side ``round(sqrt(s N))``
  (on a non-square grid, cut to the short side and widened to keep the area, so scale 1
  is the whole image), uniform position; then every target patch is removed from it, so
  context and targets never overlap.
* **At least ``min_context`` context patches** (the official ``min_keep``, which it tests
  with ``>``; here ``>=``). An image whose draw leaves fewer is drawn again *as a whole*
  (targets and context), i.e. masks follow the draw conditioned on the constraint; the
  official code instead retries the context alone (relaxing its own constraint) and a
  target block's position but never its size, which hangs on an 8x8 grid. At most
  ``max_tries`` draws per image, then a ``RuntimeError``. The constructor estimates the
  acceptance rate on a fixed-seed probe and rejects, with a ``ValueError`` naming the
  settings, a grid on which the mask is impossible (or valid in under 5 % of draws).

Every random number comes from ``generator`` (``None``: torch's global CPU generator), one
row of ``4 M + 3`` float64 uniforms per draw: per target scale, aspect, top, left; then the
context's scale, top, left. ``sample`` (the per-image reference, plain Python) and
``sample_batch`` (vectorised over images, used by the collator) turn a row into the same
masks, so ``sample(g)`` equals ``sample_batch(1, g)`` for the same seed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from selfsup.masks._checks import check_grid, check_int, check_range
from selfsup.masks.geometry import block_indices, block_shape, block_shape_batch

#: Draws of the constructor's feasibility probe, its seed, and the least acceptance rate.
PROBE_DRAWS = 512
PROBE_SEED = 0
MIN_ACCEPTANCE = 0.05


@dataclass(frozen=True)
class BlockDraw:
    """Masks of ``B`` images as drawn (before any batching).

    Attributes:
        context: (B, N) bool, the context patches (targets already removed), row-major.
        boxes: (B, M, 4) long, each target block as ``(top, left, height, width)`` in patches.
        grid: ``(H, W)``.
    """

    context: Tensor
    boxes: Tensor
    grid: tuple[int, int]

    def target_sizes(self) -> Tensor:
        """(B, M) long: patches per target block (``height * width``)."""
        return self.boxes[..., 2] * self.boxes[..., 3]

    def image(self, i: int) -> tuple[Tensor, list[Tensor]]:
        """Image ``i`` as ``sample`` returns it: sorted context indices, one tensor per block."""
        width = self.grid[1]
        targets = [block_indices(t, lf, h, w, width) for t, lf, h, w in self.boxes[i].tolist()]
        return self.context[i].nonzero().flatten(), targets


class MultiBlockMaskSampler:
    """Draws I-JEPA's context and target blocks on an ``H x W`` patch grid.

    Args:
        grid: ``(H, W)`` patches (e.g. (14, 14) for 224 px / patch 16, (8, 8) for 32 px / 4).
        num_targets: ``M`` target blocks per image (paper: 4).
        target_scale: range of a target block's area as a fraction of the grid (0.15, 0.2).
        target_aspect: range of a target block's height / width (0.75, 1.5), uniform.
        context_scale: range of the context block's area before removal (0.85, 1.0).
        min_context: least context patches left after removing the targets (official 10).
        max_tries: draws per image before giving up with a ``RuntimeError``.

    Raises:
        ValueError: a bad argument, or settings that (almost) never leave ``min_context``
            context patches on this grid.
    """

    def __init__(
        self,
        grid: tuple[int, int] = (14, 14),
        num_targets: int = 4,
        target_scale: tuple[float, float] = (0.15, 0.2),
        target_aspect: tuple[float, float] = (0.75, 1.5),
        context_scale: tuple[float, float] = (0.85, 1.0),
        min_context: int = 10,
        *,
        max_tries: int = 1000,
    ) -> None:
        self.grid = check_grid(grid)
        self.num_patches = self.grid[0] * self.grid[1]
        self.num_targets = check_int("num_targets", num_targets, 1, None, "at least one block")
        self.target_scale = check_range("target_scale", target_scale, unit=True)
        self.target_aspect = check_range("target_aspect", target_aspect, unit=False)
        self.context_scale = check_range("context_scale", context_scale, unit=True)
        self.min_context = check_int(
            "min_context",
            min_context,
            1,
            self.num_patches,
            f"the grid {self.grid} has {self.num_patches} patches; for more context patches "
            "use a larger patch grid: a larger image or a smaller patch size",
        )
        self.max_tries = check_int("max_tries", max_tries, 1, None, "a positive count")
        self._check_feasible()

    def __repr__(self) -> str:
        return (
            f"MultiBlockMaskSampler(grid={self.grid}, num_targets={self.num_targets}, "
            f"target_scale={self.target_scale}, target_aspect={self.target_aspect}, "
            f"context_scale={self.context_scale}, min_context={self.min_context})"
        )

    @property
    def draw_width(self) -> int:
        """Uniform numbers per draw: 4 per target block, 3 for the context."""
        return 4 * self.num_targets + 3

    # ------------------------------------------------------------------ reference
    def _layout_reference(
        self, u: list[float]
    ) -> tuple[list[int], list[tuple[int, int, int, int]]]:
        """One draw in plain Python: (sorted context indices, target boxes (top, left, h, w))."""
        (height, width), m, n = self.grid, self.num_targets, self.num_patches
        boxes = []
        for i in range(m):
            s = self.target_scale[0] + u[i] * (self.target_scale[1] - self.target_scale[0])
            a = self.target_aspect[0] + u[m + i] * (self.target_aspect[1] - self.target_aspect[0])
            h, w = block_shape(s * n, a, height, width)
            top = min(math.floor(u[2 * m + i] * (height - h + 1)), height - h)
            left = min(math.floor(u[3 * m + i] * (width - w + 1)), width - w)
            boxes.append((top, left, h, w))
        s = self.context_scale[0] + u[4 * m] * (self.context_scale[1] - self.context_scale[0])
        ch, cw = block_shape(s * n, 1.0, height, width)
        ctop = min(math.floor(u[4 * m + 1] * (height - ch + 1)), height - ch)
        cleft = min(math.floor(u[4 * m + 2] * (width - cw + 1)), width - cw)
        covered = {
            (r, c) for t, lf, h, w in boxes for r in range(t, t + h) for c in range(lf, lf + w)
        }
        context = [
            r * width + c
            for r in range(ctop, ctop + ch)
            for c in range(cleft, cleft + cw)
            if (r, c) not in covered
        ]
        return context, boxes

    def sample(self, generator: torch.Generator | None = None) -> tuple[Tensor, list[Tensor]]:
        """One image's masks (the per-image reference implementation).

        Returns:
            context: (K,) long, sorted flat row-major indices, ``K >= min_context``.
            targets: ``num_targets`` tensors (h_m * w_m,) long, sorted, each a full rectangle.
        """
        for _ in range(self.max_tries):
            u = torch.rand(self.draw_width, generator=generator, dtype=torch.float64).tolist()
            context, boxes = self._layout_reference(u)
            if len(context) >= self.min_context:
                width = self.grid[1]
                return torch.tensor(context, dtype=torch.long), [
                    block_indices(*box, width) for box in boxes
                ]
        raise self._exhausted()

    # ------------------------------------------------------------------ vectorised
    def _layout_batch(self, u: Tensor) -> tuple[Tensor, Tensor]:
        """``_layout_reference`` for rows of ``u`` (R, 4M+3) float64 at once.

        Returns (R, N) bool context masks and (R, M, 4) long boxes (top, left, h, w).
        """
        (height, width), m, n = self.grid, self.num_targets, self.num_patches
        s = self.target_scale[0] + u[:, :m] * (self.target_scale[1] - self.target_scale[0])
        a = self.target_aspect[0] + u[:, m : 2 * m] * (
            self.target_aspect[1] - self.target_aspect[0]
        )
        h, w = block_shape_batch(s * n, a, height, width)
        top = torch.minimum((u[:, 2 * m : 3 * m] * (height - h + 1)).floor().long(), height - h)
        left = torch.minimum((u[:, 3 * m : 4 * m] * (width - w + 1)).floor().long(), width - w)
        s = self.context_scale[0] + u[:, 4 * m] * (self.context_scale[1] - self.context_scale[0])
        ch, cw = block_shape_batch(s * n, torch.ones_like(s), height, width)
        ctop = torch.minimum((u[:, 4 * m + 1] * (height - ch + 1)).floor().long(), height - ch)
        cleft = torch.minimum((u[:, 4 * m + 2] * (width - cw + 1)).floor().long(), width - cw)

        rows, cols = torch.arange(height), torch.arange(width)
        # (R, M, H) and (R, M, W) memberships; their outer product is each block's mask.
        in_rows = (rows >= top[..., None]) & (rows < (top + h)[..., None])
        in_cols = (cols >= left[..., None]) & (cols < (left + w)[..., None])
        covered = torch.zeros(len(u), height, width, dtype=torch.bool)
        for m in range(self.num_targets):  # a few blocks: cheaper than an (R, M, H, W) mask
            covered |= in_rows[:, m, :, None] & in_cols[:, m, None, :]
        c_rows = (rows >= ctop[:, None]) & (rows < (ctop + ch)[:, None])
        c_cols = (cols >= cleft[:, None]) & (cols < (cleft + cw)[:, None])
        context = c_rows[:, :, None] & c_cols[:, None, :] & ~covered
        return context.flatten(1), torch.stack([top, left, h, w], dim=-1)

    def sample_batch(self, batch_size: int, generator: torch.Generator | None = None) -> BlockDraw:
        """Masks of ``batch_size`` images, vectorised; same distribution as ``sample``.

        All images are drawn at once; those left with fewer than ``min_context`` context
        patches are drawn again together (fresh rows), up to ``max_tries`` rounds.
        """
        check_int("batch_size", batch_size, 1, None, "a positive count")
        context = torch.zeros(batch_size, self.num_patches, dtype=torch.bool)
        boxes = torch.zeros(batch_size, self.num_targets, 4, dtype=torch.long)
        pending = torch.arange(batch_size)
        for _ in range(self.max_tries):
            u = torch.rand(len(pending), self.draw_width, generator=generator, dtype=torch.float64)
            ctx, bx = self._layout_batch(u)
            ok = ctx.sum(1) >= self.min_context
            context[pending[ok]], boxes[pending[ok]] = ctx[ok], bx[ok]
            pending = pending[~ok]
            if len(pending) == 0:
                return BlockDraw(context, boxes, self.grid)
        raise self._exhausted()

    # ------------------------------------------------------------------ feasibility
    def _settings(self) -> str:
        n = self.num_patches
        lo, hi = (round(s * n, 1) for s in self.target_scale)
        clo, chi = (round(s * n, 1) for s in self.context_scale)
        return (
            f"grid={self.grid} ({n} patches), num_targets={self.num_targets}, "
            f"target_scale={self.target_scale} (~{lo}-{hi} patches per block), "
            f"target_aspect={self.target_aspect}, context_scale={self.context_scale} "
            f"(~{clo}-{chi} patches before removing the targets), "
            f"min_context={self.min_context}"
        )

    _FIX = (
        "Lower min_context, num_targets or target_scale, raise context_scale, or use a "
        "larger patch grid (a larger image or a smaller patch size)."
    )

    def _exhausted(self) -> RuntimeError:
        return RuntimeError(
            f"MultiBlockMaskSampler: no draw in max_tries={self.max_tries} left "
            f"min_context={self.min_context} context patches ({self._settings()}). {self._FIX}"
        )

    def _check_feasible(self) -> None:
        """Reject settings whose probe acceptance rate is below ``MIN_ACCEPTANCE``.

        Uses its own fixed-seed generator: constructing a sampler never moves torch's RNG.
        """
        g = torch.Generator().manual_seed(PROBE_SEED)
        u = torch.rand(PROBE_DRAWS, self.draw_width, generator=g, dtype=torch.float64)
        kept = self._layout_batch(u)[0].sum(1)
        rate = float((kept >= self.min_context).double().mean())
        if rate < MIN_ACCEPTANCE:
            raise ValueError(
                f"MultiBlockMaskSampler: the mask is impossible (or nearly) for this grid: "
                f"only {rate:.1%} of {PROBE_DRAWS} trial draws keep min_context="
                f"{self.min_context} context patches after removing the targets (at most "
                f"{int(kept.max())} kept, median {int(kept.median())}); need at least "
                f"{MIN_ACCEPTANCE:.0%}. Settings: {self._settings()}. {self._FIX}"
            )
