"""The papers' figures, each drawn by the code that pre-training runs and written as a PNG.

- :func:`crop_histograms`: SimCLR Figure 6, colour histograms of random crops.
- :func:`augmentation_grid`: SimCLR Figure 4, each augmentation operator alone.
- :func:`mask_grid`: I-JEPA Figure 4, context and target blocks over images.
- :func:`predictor_figure`: I-JEPA Figure 6 analogue, the predictor's outputs decoded to
  pixels by a deterministic per-patch decoder (the paper uses a generative RCDM).

``selfsup figure crops|augmentations|masks|predictor`` (:mod:`selfsup.cli_figures`) draws
them from a dataset. matplotlib is needed (drawn on its Agg canvas, no display).
"""

from selfsup.figures.augment_figures import (
    FIGURE4_OPS,
    CropHistograms,
    augmentation_grid,
    augmentation_panels,
    channel_histograms,
    crop_histogram_data,
    crop_histograms,
)
from selfsup.figures.mask_figures import mask_grid, sample_masks
from selfsup.figures.patch_decoder import PatchDecoder, patchify, train_decoder, unpatchify
from selfsup.figures.predictor_decoding import ijepa_from_checkpoint, predictor_figure

__all__ = [
    "FIGURE4_OPS",
    "CropHistograms",
    "PatchDecoder",
    "augmentation_grid",
    "augmentation_panels",
    "channel_histograms",
    "crop_histogram_data",
    "crop_histograms",
    "ijepa_from_checkpoint",
    "mask_grid",
    "patchify",
    "predictor_figure",
    "sample_masks",
    "train_decoder",
    "unpatchify",
]
