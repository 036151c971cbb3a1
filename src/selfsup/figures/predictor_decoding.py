"""I-JEPA Figure 6 analogue (Assran et al., CVPR 2023, Sec. 7): what the predictor knows.

A :class:`~selfsup.figures.patch_decoder.PatchDecoder` learns to map the frozen target
encoder's layer-normalised patch tokens (the targets of pre-training) back to their
pixels; it is then fed the predictor's outputs for the target blocks of a sampled mask.
Where those decode to the right content, the predictor has predicted it from the context.
The paper uses a generative decoder (RCDM); this one is deterministic (see that module).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from matplotlib.patches import Rectangle
from torch import Tensor

from selfsup.build.ijepa import build_ijepa
from selfsup.config import ConfigError, from_dict
from selfsup.data.augment_ops import to_float_images
from selfsup.data.augment_random import Resize
from selfsup.engine.checkpoint import load_checkpoint
from selfsup.figures._render import check_images, new_figure, save_png, show
from selfsup.figures.patch_decoder import patchify, train_decoder, unpatchify
from selfsup.masks import MaskBatch, MaskCollator
from selfsup.masks.figure import PALETTE
from selfsup.methods.ijepa import IJEPA, gather_targets
from selfsup.models.vit import VisionTransformer
from selfsup.recipes import IJEPAConfig

#: Images per target-encoder forward pass.
FORWARD_BATCH = 256
COLUMN_TITLES = (
    "original",
    "context (rest greyed)",
    "decoder(target encoder)",
    "decoder(predictor)\nin the target blocks",
)


def ijepa_from_checkpoint(path: str | Path) -> tuple[IJEPA, dict[str, Any]]:
    """The whole I-JEPA method (context and target encoders, predictor, mask sampler) of a
    ``selfsup pretrain ijepa`` checkpoint, in eval mode on the CPU; returns (method, meta)."""
    ckpt = load_checkpoint(path)
    meta = ckpt.get("meta") or {}
    state = ckpt["method_state"]
    if meta.get("method") != "ijepa" or not any(k.startswith("online.predictor.") for k in state):
        raise ConfigError(
            f"the predictor figure needs an I-JEPA checkpoint: it has a predictor, whose "
            f"outputs the figure decodes; '{path}' is a {meta.get('method', 'non-selfsup')} "
            "checkpoint without one."
        )
    cfg = from_dict(IJEPAConfig, meta["config"])
    with torch.random.fork_rng(devices=[]):  # the initial weights are overwritten below
        method = build_ijepa(cfg, total_steps=1)
    try:
        method.load_state_dict(state)
    except RuntimeError as e:
        raise ConfigError(f"Checkpoint '{path}' does not match its own I-JEPA config: {e}") from e
    return method.eval(), meta


@torch.no_grad()
def target_tokens(method: IJEPA, x: Tensor) -> Tensor:
    """(B, 3, S, S) float -> (B, N, D): the target encoder's tokens, layer-normalised
    without affine as the training targets are (I-JEPA Sec. 3, "Targets")."""
    chunks = []
    for start in range(0, len(x), FORWARD_BATCH):
        tokens = method.target_encoder(x[start : start + FORWARD_BATCH])
        chunks.append(F.layer_norm(tokens.float(), tokens.shape[-1:]))
    return torch.cat(chunks)


def _masked_mse(prediction: Tensor, target: Tensor, valid: Tensor | None) -> float:
    """Mean squared error per pixel over the entries (..., P) where ``valid`` (...) holds."""
    errors = (prediction - target).pow(2).mean(-1)
    return float(errors.mean() if valid is None else errors[valid].mean())


def decoding_metrics(
    pixels: Tensor, from_target: Tensor, from_predictor: Tensor, mean: Tensor, masks: MaskBatch
) -> dict[str, float]:
    """MSE per pixel of the decoded images against their pixels (all (..., 3 p²)).

    Args:
        pixels: (B, G, 3 p²) the shown images' patches.
        from_target: (B, G, 3 p²) the decoder on the target encoder's tokens.
        from_predictor: (B, M, T, 3 p²) the decoder on the predictor's outputs.
        mean: (G, 3 p²) the training images' mean image, the baseline.
        masks: the target blocks (padding excluded through ``target_valid``).
    """
    in_targets = gather_targets(pixels, masks.target_idx)
    mean_image = mean.expand_as(pixels)
    valid = masks.target_valid
    return {
        "target_encoder_mse": _masked_mse(from_target, pixels, None),
        "target_encoder_mse_in_targets": _masked_mse(
            gather_targets(from_target, masks.target_idx), in_targets, valid
        ),
        "predictor_mse_in_targets": _masked_mse(from_predictor, in_targets, valid),
        "mean_image_mse": _masked_mse(mean_image, pixels, None),
        "mean_image_mse_in_targets": _masked_mse(
            gather_targets(mean_image, masks.target_idx), in_targets, valid
        ),
    }


def _compose(base: Tensor, masks: MaskBatch, patches: Tensor) -> Tensor:
    """(B, N, P) patches with every valid target entry of ``patches`` (B, M, T, P) written
    in; a patch in two overlapping blocks shows the later block's prediction."""
    out = base.clone()
    valid = masks.target_valid
    for i in range(base.shape[0]):
        for m in range(masks.target_idx.shape[1]):
            keep = slice(None) if valid is None else valid[i, m]
            out[i, masks.target_idx[i, m][keep]] = patches[i, m][keep]
    return out


def predictor_figure(
    checkpoint: str | Path,
    train_images: Tensor,
    show_images: Tensor,
    path: str | Path,
    *,
    epochs: int = 10,
    batch_size: int = 256,
    device: str | torch.device = "cpu",
    seed: int = 0,
) -> tuple[Path, dict[str, float]]:
    """Train the patch decoder, decode the predictor's outputs, write the figure.

    Args:
        checkpoint: a ``selfsup pretrain ijepa`` checkpoint (a SimCLR one is refused).
        train_images: (N, 3, H, W) uint8, the decoder's training images (resized to the
            checkpoint's image size).
        show_images: (B, 3, H, W) uint8, held out from ``train_images``: one figure row each,
            and the images the metrics are measured on.
        path: the PNG to write; 640 x (160 B + 110) pixels.
        epochs, batch_size: the decoder's training (batch_size in patches per step).
        device: where the encoders, predictor and decoder run.
        seed: the decoder's initial weights and order, and the masks of the shown images.

    Returns:
        ``path`` as a Path, and mean squared errors per pixel (pixels in [0, 1]) on the
        shown images: ``target_encoder_mse`` (decoder on the target encoder's tokens, every
        patch), ``target_encoder_mse_in_targets`` and ``predictor_mse_in_targets`` (target-block
        patches only: the decoder on the target encoder's vs on the predictor's tokens),
        ``mean_image_mse`` and ``mean_image_mse_in_targets`` (the baseline that predicts the
        training images' mean image) and ``decoder_train_mse`` (last epoch, training set).
    """
    train_images, show_images = check_images(train_images), check_images(show_images)
    method, _ = ijepa_from_checkpoint(checkpoint)
    method = method.to(device)
    encoder = method.target_encoder
    if not isinstance(encoder, VisionTransformer):  # build_ijepa only builds ViTs
        raise ConfigError(f"'{checkpoint}': I-JEPA's encoder is not a ViT ({type(encoder)}).")
    p, grid = encoder.patch_size, encoder.grid
    resize = Resize(encoder.img_size)

    def prepare(images: Tensor) -> Tensor:
        return resize(to_float_images(images.to(device)))

    x_train, x_show = prepare(train_images), prepare(show_images)
    train_pixels = patchify(x_train, p)  # (N, G, 3 p²)
    decoder, train_mse = train_decoder(
        target_tokens(method, x_train).flatten(0, 1),
        train_pixels.flatten(0, 1),
        p,
        epochs=epochs,
        batch_size=batch_size,
        seed=seed,
    )
    # Whole target blocks (padding, not truncation), drawn as pre-training draws them.
    collator = MaskCollator(method.collator.sampler, batching="pad")
    masks = collator(len(x_show), torch.Generator().manual_seed(seed)).to(device)
    with torch.no_grad():
        tokens = target_tokens(method, x_show)
        predicted = method.online(x_show, masks)  # (B, M, T, D)
        from_target = decoder(tokens)  # (B, G, 3 p²)
        from_predictor = decoder(predicted)  # (B, M, T, 3 p²)
    pixels = patchify(x_show, p)
    metrics = decoding_metrics(pixels, from_target, from_predictor, train_pixels.mean(0), masks)
    metrics["decoder_train_mse"] = train_mse
    context = torch.full_like(pixels, 0.5)
    for i in range(len(x_show)):
        keep = masks.context_idx[i]
        keep = keep if masks.context_valid is None else keep[masks.context_valid[i]]
        context[i, keep] = pixels[i, keep]
    columns = [pixels, context, from_target, _compose(pixels, masks, from_predictor)]
    pictures = [unpatchify(c, p, grid).cpu() for c in columns]
    return _draw(pictures, masks.to("cpu"), p, metrics, path), metrics


def _draw(
    pictures: list[Tensor],
    masks: MaskBatch,
    patch: int,
    metrics: dict[str, float],
    path: str | Path,
) -> Path:
    """The figure: one row per image, the four ``pictures`` (B, 3, S, S) as columns, target
    blocks outlined on the two decoded columns, the metrics in the caption."""
    b = pictures[0].shape[0]
    fig = new_figure(6.4, 1.6 * b + 1.1)
    axes = fig.subplots(b, 4, squeeze=False)
    fig.subplots_adjust(left=0.01, right=0.99, bottom=0.4 / (1.6 * b + 1.1),
                        top=1 - 0.9 / (1.6 * b + 1.1), wspace=0.05, hspace=0.25)  # fmt: skip
    grid_w = pictures[0].shape[-1] // patch
    for i in range(b):
        for j, picture in enumerate(pictures):
            show(axes[i, j], picture[i], COLUMN_TITLES[j] if i == 0 else None)
        for m in range(masks.target_idx.shape[1]):
            block = masks.target_idx[i, m]
            block = block if masks.target_valid is None else block[masks.target_valid[i, m]]
            rows, cols = block // grid_w, block % grid_w
            top, left = int(rows.min()) * patch - 0.5, int(cols.min()) * patch - 0.5
            height = (int(rows.max()) + 1) * patch - top - 0.5
            width = (int(cols.max()) + 1) * patch - left - 0.5
            colour = tuple(c / 255 for c in PALETTE[m % len(PALETTE)])
            for j in (2, 3):
                axes[i, j].add_patch(Rectangle((left, top), width, height, fill=False,
                                               edgecolor=colour, linewidth=1.0))  # fmt: skip
    fig.suptitle(
        "I-JEPA Figure 6 analogue: a deterministic per-patch MLP decoder, trained on the frozen\n"
        "target encoder's tokens, stands in for the paper's generative RCDM decoder",
        fontsize=8,
    )
    fig.text(
        0.5, 0.01,
        f"held-out MSE: target encoder {metrics['target_encoder_mse']:.4f} (in targets "
        f"{metrics['target_encoder_mse_in_targets']:.4f}), predictor in targets "
        f"{metrics['predictor_mse_in_targets']:.4f}, mean image "
        f"{metrics['mean_image_mse']:.4f}",
        ha="center", va="bottom", fontsize=7,
    )  # fmt: skip
    return save_png(fig, path)
