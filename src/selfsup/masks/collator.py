"""Batching I-JEPA's masks into rectangular index tensors.

Images in a batch have contexts and target blocks of different sizes, while the encoder
and predictor want ``(B, K)`` and ``(B, M, T)`` index tensors. Two ways (``docs/masks.md``
measures both):

* ``"truncate"``: every context is cut to the shortest context of the batch and every
  target block to the smallest block of the batch, keeping a *uniformly random* subset
  (drawn from the same generator). The official code keeps the first indices instead,
  which always drops the bottom-right patches of a mask (the prediction task then never
  asks for a block's last rows). No padding: ``context_valid`` and ``target_valid`` are
  ``None``. Costs information (dropped patches), saves compute.
* ``"pad"``: every mask is kept whole and padded with index 0 to the longest of the batch;
  ``context_valid`` / ``target_valid`` mark the real entries (padding must be excluded from
  attention and from the loss). Keeps every patch, costs compute on the padding.

Kept indices are sorted row-major in every row, real entries first.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Literal

import torch
from torch import Tensor

from selfsup.masks.multiblock import BlockDraw, MultiBlockMaskSampler

Batching = Literal["truncate", "pad"]
BATCHING_MODES: tuple[str, ...] = ("truncate", "pad")


@dataclass(frozen=True)
class MaskBatch:
    """One batch of I-JEPA masks (flat row-major patch indices).

    Attributes:
        context_idx: (B, K) long, context patches of each image.
        target_idx: (B, M, T) long, patches of each of the M target blocks.
        context_valid: (B, K) bool, False on padding; ``None`` when nothing is padded.
        target_valid: (B, M, T) bool, False on padding; ``None`` when nothing is padded.
    """

    context_idx: Tensor
    target_idx: Tensor
    context_valid: Tensor | None = None
    target_valid: Tensor | None = None

    def map(self, fn: Callable[[Tensor], Tensor]) -> MaskBatch:
        """A copy with ``fn`` applied to every tensor (``None`` fields stay ``None``)."""

        def apply(t: Tensor | None) -> Tensor | None:
            return None if t is None else fn(t)

        return replace(
            self,
            context_idx=fn(self.context_idx),
            target_idx=fn(self.target_idx),
            context_valid=apply(self.context_valid),
            target_valid=apply(self.target_valid),
        )

    def to(self, device: torch.device | str, non_blocking: bool = False) -> MaskBatch:
        """A copy with every tensor on ``device``."""
        return self.map(lambda t: t.to(device, non_blocking=non_blocking))


def _random_subset(keep: Tensor, count: int, generator: torch.Generator | None) -> Tensor:
    """Positions (..., count) of a uniformly random ``count``-subset of the True entries of
    ``keep`` (..., L) along the last dim, sorted. Every row must hold >= ``count`` True.

    The ``count`` smallest of i.i.d. uniform keys (non-members keyed above 1) are a uniform
    random subset of the members.
    """
    keys = torch.rand(keep.shape, generator=generator)
    keys.masked_fill_(~keep, 2.0)
    return keys.topk(count, dim=-1, largest=False).indices.sort(dim=-1).values


def _first_members(keep: Tensor, count: int) -> Tensor:
    """Positions (..., count) of the True entries of ``keep`` (..., L), in order, then the
    positions of False entries (the padding slots, masked by the caller)."""
    # A stable sort of "not a member" puts members first, each group in index order.
    return torch.sort((~keep).to(torch.uint8), dim=-1, stable=True).indices[..., :count]


class MaskCollator:
    """Draws a batch of multi-block masks and makes them rectangular.

    Args:
        sampler: the per-image mask distribution.
        batching: ``"truncate"`` (random subsets down to the batch minimum, no padding) or
            ``"pad"`` (pad to the batch maximum with index 0, with validity masks).
    """

    def __init__(self, sampler: MultiBlockMaskSampler, batching: Batching = "truncate") -> None:
        if not isinstance(sampler, MultiBlockMaskSampler):
            raise ValueError(f"sampler must be a MultiBlockMaskSampler; got {type(sampler)}.")
        if batching not in BATCHING_MODES:
            raise ValueError(f"batching must be one of {BATCHING_MODES}; got {batching!r}.")
        self.sampler = sampler
        self.batching = batching

    def __repr__(self) -> str:
        return f"MaskCollator({self.sampler!r}, batching={self.batching!r})"

    def __call__(self, batch_size: int, generator: torch.Generator | None = None) -> MaskBatch:
        """Masks for ``batch_size`` images; every random number from ``generator``
        (``None``: torch's global CPU RNG), so the same seed gives the same batch."""
        draw = self.sampler.sample_batch(batch_size, generator)
        return self.collate(draw, generator)

    def collate(self, draw: BlockDraw, generator: torch.Generator | None = None) -> MaskBatch:
        """Rectangular index tensors from per-image masks ``draw`` (see module docstring)."""
        width = draw.grid[1]
        top, left, height, bw = draw.boxes.unbind(-1)  # each (B, M)
        sizes = height * bw
        counts = draw.context.sum(1)
        # Target blocks as (B, M, L) slot grids: slot j is row j // w, column j % w.
        slots = torch.arange(int(sizes.max()))
        member = slots < sizes[..., None]
        if self.batching == "pad":
            ctx_pos = _first_members(draw.context, int(counts.max()))
            ctx_valid = torch.arange(ctx_pos.shape[1]) < counts[:, None]
            tgt_pos = slots.expand(member.shape)
            tgt_valid: Tensor | None = member
        else:
            ctx_pos = _random_subset(draw.context, int(counts.min()), generator)
            ctx_valid = None
            tgt_pos = _random_subset(member, int(sizes.min()), generator)
            tgt_valid = None
        bw_ = bw[..., None]
        target_idx = (top[..., None] + tgt_pos // bw_) * width + left[..., None] + tgt_pos % bw_
        if tgt_valid is not None:
            target_idx = target_idx.masked_fill(~tgt_valid, 0)
        context_idx = ctx_pos if ctx_valid is None else ctx_pos.masked_fill(~ctx_valid, 0)
        return MaskBatch(context_idx, target_idx, ctx_valid, tgt_valid)
