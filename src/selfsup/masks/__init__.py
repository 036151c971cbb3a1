"""I-JEPA multi-block masks: the per-image sampler, the batch collator and Fig. 4's drawing.

See ``docs/masks.md`` for the decisions (independent scale and aspect, positions that reach
the last row and column, whole-draw resampling, random-subset truncation vs padding).
"""

from selfsup.masks.collator import BATCHING_MODES, MaskBatch, MaskCollator
from selfsup.masks.figure import draw_masks
from selfsup.masks.geometry import block_indices, block_shape
from selfsup.masks.multiblock import BlockDraw, MultiBlockMaskSampler

__all__ = [
    "BATCHING_MODES",
    "BlockDraw",
    "MaskBatch",
    "MaskCollator",
    "MultiBlockMaskSampler",
    "block_indices",
    "block_shape",
    "draw_masks",
]
