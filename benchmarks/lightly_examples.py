"""lightly 1.6's own example pipelines: the reference side of every benchmark.

* SimCLR: lightly's ``examples/pytorch/simclr.py`` as its users run it on CIFAR-10:
  ``torchvision.datasets.ImageFolder`` over JPEG files with ``SimCLRTransform(input_size=32,
  gaussian_blur=0.0)`` (blur off at 32 px, as in lightly's CIFAR-10 benchmark), a
  ``DataLoader`` with worker processes, ``SimCLRProjectionHead(512, 512, 128)``,
  ``NTXentLoss()`` (tau = 0.5), ``SGD(lr=0.06)`` and one forward pass per view. Only the
  backbone is swapped for selfsup's ResNet-18 with the CIFAR stem, so that both sides train
  the same architecture and only the pipeline differs.
* I-JEPA: lightly's ``examples/pytorch/ijepa.py`` (``IJEPATransform``, ``IJEPAMaskCollator``
  as the loader's ``collate_fn``, its I-JEPA modules, ``SmoothL1Loss``, AdamW, its EMA loop)
  at a chosen ViT size and with the paper's masks.

lightly is imported inside the functions: it is installed only for benchmarking, and the
scripts that do not run it must not need it. Run the scripts from the repository root
(``python benchmarks/<script>.py``); they import this module from their own folder.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import torch
import torchvision
from torch import nn

from selfsup.data import resolve_cifar10
from selfsup.models import create_model
from selfsup.models.vit import IMAGENET_MEAN, IMAGENET_STD  # = SimCLRTransform's normalisation

#: lightly's example settings (examples/pytorch/simclr.py, CIFAR-10 variant).
LIGHTLY_LR = 0.06
LIGHTLY_INPUT_SIZE = 32
LIGHTLY_WORKERS = 2
#: The paper's multi-block masks (Sec. 3, SPEC), on both sides of every I-JEPA benchmark.
IJEPA_MASKS: dict[str, Any] = {
    "num_targets": 4,
    "target_scale": (0.15, 0.2),
    "target_aspect": (0.75, 1.5),
    "context_scale": (0.85, 1.0),
    "min_context": 10,
}
#: lightly's examples/pytorch/ijepa.py: AdamW(lr=1.5e-4), EMA momentum 0.996 -> 1.0.
LIGHTLY_IJEPA_LR = 1.5e-4
LIGHTLY_IJEPA_EMA = (0.996, 1.0)
#: The official recipe's crop scale (0.3, 1.0); lightly's IJEPATransform defaults to 0.2.
IJEPA_CROP_MIN = 0.3


def cifar10_train_folder() -> Path:
    """The CIFAR-10 JPEG train tree that lightly's pipelines read with ImageFolder."""
    root = resolve_cifar10() / "train"
    if not root.is_dir():
        raise FileNotFoundError(
            f"lightly's pipeline reads the CIFAR-10 JPEG tree (train/<class>/*.jpg), but "
            f"{root} does not exist (CIFAR-10 resolved to {root.parent}). Point SELFSUP_DATA "
            "at a folder holding cifar10/train/<class>/*.jpg."
        )
    return root


class LightlyExampleSimCLR(nn.Module):
    """lightly's example model: ``z = head(backbone(x).flatten(1))``, (B, 3, S, S) -> (B, 128)."""

    def __init__(self, backbone: nn.Module) -> None:
        from lightly.models.modules import SimCLRProjectionHead

        super().__init__()
        self.backbone = backbone
        self.projection_head = SimCLRProjectionHead(512, 512, 128)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z: torch.Tensor = self.projection_head(self.backbone(x).flatten(start_dim=1))
        return z


def example_loader(
    transform: Callable[[Any], Any],
    batch_size: int,
    num_workers: int,
    collate_fn: Callable[[list[Any]], Any] | None = None,
) -> torch.utils.data.DataLoader[Any]:
    """The examples' loader: ``ImageFolder`` over the CIFAR-10 JPEG train tree with
    ``transform``, shuffled, last partial batch dropped, persistent worker processes."""
    dataset = torchvision.datasets.ImageFolder(str(cifar10_train_folder()), transform=transform)
    return torch.utils.data.DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=True,
        drop_last=True,
        num_workers=num_workers,
        persistent_workers=num_workers > 0,
        collate_fn=collate_fn,
    )


def lightly_loader(
    batch_size: int, num_workers: int = LIGHTLY_WORKERS
) -> torch.utils.data.DataLoader[Any]:
    """lightly's CIFAR-10 data path: ImageFolder over the JPEG train tree, SimCLRTransform."""
    from lightly.transforms import SimCLRTransform

    transform = SimCLRTransform(input_size=LIGHTLY_INPUT_SIZE, gaussian_blur=0.0)
    return example_loader(transform, batch_size, num_workers)


def lightly_model(device: torch.device, channels_last: bool = False) -> LightlyExampleSimCLR:
    """The example's model around selfsup's ResNet-18 (CIFAR stem), on ``device``."""
    model = LightlyExampleSimCLR(create_model("resnet18", cifar_stem=True)).to(device)
    if channels_last:
        model.to(memory_format=torch.channels_last)
    return model


def lightly_trainer(
    model: nn.Module, device: torch.device, bf16: bool = False
) -> Callable[[Any], torch.Tensor]:
    """One step of lightly's example loop (its order: forward, backward, step, zero_grad).

    Returns ``step(batch) -> loss`` for a ``DataLoader`` batch ``([x0, x1], labels)``.
    """
    from lightly.loss import NTXentLoss

    criterion = NTXentLoss()
    optimizer = torch.optim.SGD(model.parameters(), lr=LIGHTLY_LR)
    autocast = partial(torch.autocast, device.type, dtype=torch.bfloat16, enabled=bf16)

    def step(batch: Any) -> torch.Tensor:
        x0, x1 = batch[0]
        x0, x1 = x0.to(device), x1.to(device)
        with autocast():
            z0 = model(x0)
            z1 = model(x1)
            loss: torch.Tensor = criterion(z0, z1)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        return loss.detach()

    return step


class ImageNetNormalize(nn.Module):
    """The encoder as lightly trained it: [0, 1] inputs normalised with ImageNet statistics.

    ``SimCLRTransform`` normalises every view, so lightly's backbone must see normalised
    inputs at evaluation too (lightly's own kNN evaluation does). With this wrapper both
    sides go through the same evaluation code, which feeds [0, 1] images.
    """

    mean: torch.Tensor
    std: torch.Tensor

    def __init__(self, backbone: nn.Module) -> None:
        super().__init__()
        self.backbone = backbone
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.backbone((x - self.mean) / self.std)
        return out


def lightly_ijepa_loader(
    batch_size: int, size: int, patch_size: int, num_workers: int = LIGHTLY_WORKERS
) -> torch.utils.data.DataLoader[Any]:
    """lightly's I-JEPA data path with the paper's masks, over the CIFAR-10 JPEG files.

    As in ``examples/pytorch/ijepa.py``: a dataset with ``IJEPATransform`` (bicubic
    random resized crop to ``size``, flip, ImageNet normalisation) and ``IJEPAMaskCollator``
    as the loader's ``collate_fn`` (so masks are drawn in the worker processes). Batches
    are ``((images, labels), [context (B, K)], [target (B, T)] * 4)``. On an 8x8 grid
    the collator never returns (docs/masks.md); 14x14 works.
    """
    from lightly.data.ijepa_collate import IJEPAMaskCollator
    from lightly.transforms.ijepa_transform import IJEPATransform

    m = IJEPA_MASKS
    collator = IJEPAMaskCollator(
        input_size=size,
        patch_size=patch_size,
        enc_mask_scale=m["context_scale"],
        pred_mask_scale=m["target_scale"],
        aspect_ratio=m["target_aspect"],
        nenc=1,
        npred=m["num_targets"],
        min_keep=m["min_context"],
    )
    transform = IJEPATransform(input_size=size, min_scale=IJEPA_CROP_MIN)
    return example_loader(transform, batch_size, num_workers, collate_fn=collator)


class LightlyExampleIJEPA(nn.Module):
    """lightly's example I-JEPA model (``examples/pytorch/ijepa.py``) at a chosen ViT size.

    The example builds both halves from torchvision ViT-B/32s; here the encoder is
    ``IJEPABackbone.from_vit`` of a torchvision ``VisionTransformer`` of the given width,
    depth and heads (MLP 4x width), and the predictor lightly's ``IJEPAPredictor`` built
    directly: its ``from_vit_encoder`` fixes the input width to 768. lightly's predictor
    uses ``mlp_dim`` both as the encoder width (its in/out projections) and as the MLP
    width of its blocks, so a width-P predictor on a width-D encoder has MLP width D (2P
    for D = 2P), not 4P as selfsup's; ``match_mlp`` gives it 4P blocks and D <-> P
    projections (the same architecture as selfsup's predictor).

    ``forward(images, masks_enc, masks_pred)`` -> (z, h), each (M·B, T, D): predictions
    and layer-normalised target tokens, exactly as the example.
    """

    def __init__(
        self,
        size: int,
        patch_size: int,
        width: int,
        depth: int,
        heads: int,
        predictor_width: int,
        predictor_depth: int,
        match_mlp: bool = False,
    ) -> None:
        import copy

        from lightly.models.modules import ijepa

        super().__init__()
        vit = torchvision.models.VisionTransformer(
            image_size=size,
            patch_size=patch_size,
            num_layers=depth,
            num_heads=heads,
            hidden_dim=width,
            mlp_dim=4 * width,
        )
        self.encoder = ijepa.IJEPABackbone.from_vit(vit)
        n = (size // patch_size) ** 2
        self.predictor = ijepa.IJEPAPredictor(
            seq_length=n,
            num_layers=predictor_depth,
            num_heads=heads,
            hidden_dim=predictor_width,
            predictor_embed_dim=predictor_width,
            num_patches=n,
            mlp_dim=4 * predictor_width if match_mlp else width,
            dropout=0.0,
            attention_dropout=0.0,
        )
        if match_mlp:
            self.predictor.predictor_embed = nn.Linear(width, predictor_width)
            self.predictor.predictor_proj = nn.Linear(predictor_width, width)
        self.target_encoder = copy.deepcopy(self.encoder)

    def forward_target(
        self, imgs: torch.Tensor, masks_enc: list[torch.Tensor], masks_pred: list[torch.Tensor]
    ) -> torch.Tensor:
        from lightly.models import utils

        with torch.no_grad():
            h = self.target_encoder(imgs)
            h = nn.functional.layer_norm(h, (h.size(-1),))
            b = len(h)
            h = utils.apply_masks(h, masks_pred)
            out: torch.Tensor = utils.repeat_interleave_batch(h, b, repeat=len(masks_enc))
            return out

    def forward_context(
        self, imgs: torch.Tensor, masks_enc: list[torch.Tensor], masks_pred: list[torch.Tensor]
    ) -> torch.Tensor:
        z = self.encoder(imgs, masks_enc)
        out: torch.Tensor = self.predictor(z, masks_enc, masks_pred)
        return out

    def forward(
        self, imgs: torch.Tensor, masks_enc: list[torch.Tensor], masks_pred: list[torch.Tensor]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        z = self.forward_context(imgs, masks_enc, masks_pred)
        h = self.forward_target(imgs, masks_enc, masks_pred)
        return z, h

    @torch.no_grad()
    def update_target_encoder(self, m: float) -> None:
        """The example's EMA: a Python loop over parameter pairs."""
        for param_q, param_k in zip(
            self.encoder.parameters(), self.target_encoder.parameters(), strict=True
        ):
            param_k.data.mul_(m).add_((1.0 - m) * param_q.detach().data)


def lightly_ijepa_trainer(
    model: LightlyExampleIJEPA, device: torch.device, total_steps: int, bf16: bool = False
) -> Callable[[Any], torch.Tensor]:
    """One step of lightly's example I-JEPA loop, in its order: forward, SmoothL1Loss,
    backward, AdamW step, zero_grad, EMA update (momentum linear over ``total_steps``).

    Returns ``step(batch) -> loss`` for a batch of ``lightly_ijepa_loader``.
    """
    criterion = nn.SmoothL1Loss()
    optimizer = torch.optim.AdamW(model.parameters(), lr=LIGHTLY_IJEPA_LR)
    autocast = partial(torch.autocast, device.type, dtype=torch.bfloat16, enabled=bf16)
    start, end = LIGHTLY_IJEPA_EMA
    done = 0

    def step(batch: Any) -> torch.Tensor:
        nonlocal done
        udata, masks_enc, masks_pred = batch
        imgs = udata[0].to(device, non_blocking=True)
        masks_1 = [u.to(device, non_blocking=True) for u in masks_enc]
        masks_2 = [u.to(device, non_blocking=True) for u in masks_pred]
        with autocast():
            z, h = model(imgs, masks_1, masks_2)
            loss: torch.Tensor = criterion(z, h)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        model.update_target_encoder(start + min(done, total_steps) * (end - start) / total_steps)
        done += 1
        return loss.detach()

    return step
