"""SimCLR's augmentation family T, batched on the images' device (SPEC, "The family T").

One call draws an independent operator t ~ T for every image of the batch (SimCLR calls
it twice per step: two views, every random parameter per image and per view) and applies
them with a few tensor ops on the whole batch, CPU or GPU, no loop over images::

    simclr_augmentation("cifar", size=32)      # crop + flip, colour (s = 0.5), no blur
    simclr_augmentation("imagenet", size=224)  # crop + flip, colour (s = 1.0), blur
    build_augmentation(["crop", "color"], size=32, strength=0.5)  # Figure 4/5 ablations

Operator names (the paper's Figure 4):

- ``crop``: random resized crop, area U(0.08, 1), log-uniform aspect in (3/4, 4/3), to
  size x size; it includes the horizontal flip (p = 0.5) unless ``flip`` is listed too.
- ``flip``: horizontal flip, p = 0.5 (folded into the crop when it directly follows it).
- ``color``: the paper's colour distortion = ``color_jitter`` then ``color_drop``.
- ``color_jitter``: brightness/contrast/saturation 0.8 s, hue 0.2 s, random order, p = 0.8.
- ``color_drop``: grayscale, p = 0.2 (independent of the jitter's p = 0.8).
- ``blur``: Gaussian, sigma ~ U(0.1, 2), odd kernel ~ 10 % of the side, p = 0.5.
- ``rotation``: one of 90, 180, 270 degrees (Figure 4(f); never 0), always.
- ``cutout``, ``noise``, ``sobel``: always (their settings: see augment_random).

``crop``, when present, must come first and sets the output size; without it the input
is resized to size x size (bilinear, antialiased) before the other operators, which run
in the listed order. ``probabilities`` overrides any default probability by name.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping, Sequence

import torch
from torch import Tensor, nn

from selfsup.data.augment_color import (
    adjust_brightness,
    adjust_contrast,
    adjust_hue,
    adjust_saturation,
    color_jitter,
    grayscale,
)
from selfsup.data.augment_ops import (
    Interpolation,
    gaussian_blur,
    hflip,
    resized_crop,
    rgb_to_grayscale,
    rotate90,
    to_float_images,
)
from selfsup.data.augment_random import (
    ColorJitter,
    Cutout,
    GaussianBlur,
    GaussianNoise,
    RandomFlip,
    RandomGrayscale,
    RandomOp,
    RandomResizedCrop,
    RandomRotation,
    RandomSobel,
    Resize,
    blur_kernel_size,
)

__all__ = [
    "AUGMENTATION_OPS", "AUGMENTATION_PRESETS", "DEFAULT_PROBABILITIES", "BatchAugmentation",
    "build_augmentation", "simclr_augmentation", "ColorJitter", "Cutout", "GaussianBlur",
    "GaussianNoise", "RandomFlip", "RandomGrayscale", "RandomOp", "RandomResizedCrop",
    "RandomRotation", "RandomSobel", "Resize", "adjust_brightness", "adjust_contrast",
    "adjust_hue", "adjust_saturation", "blur_kernel_size", "color_jitter", "gaussian_blur",
    "grayscale", "hflip", "resized_crop", "rgb_to_grayscale", "rotate90",
]  # fmt: skip

AUGMENTATION_OPS: tuple[str, ...] = (
    "crop", "flip", "color", "color_jitter", "color_drop",
    "rotation", "cutout", "noise", "blur", "sobel",
)  # fmt: skip
AUGMENTATION_PRESETS: tuple[str, ...] = ("cifar", "imagenet")
# Those of the family T; the other Figure 4 operators are always applied.
DEFAULT_PROBABILITIES: Mapping[str, float] = {
    "flip": 0.5, "color_jitter": 0.8, "color_drop": 0.2, "blur": 0.5,
    "rotation": 1.0, "cutout": 1.0, "noise": 1.0, "sobel": 1.0,
}  # fmt: skip
# preset -> (colour strength s, Gaussian blur); blur hurts on 32 px images (SPEC).
_PRESETS: Mapping[str, tuple[float, bool]] = {"cifar": (0.5, False), "imagenet": (1.0, True)}


def _unknown(kind: str, name: object, valid: Sequence[str]) -> ValueError:
    close = difflib.get_close_matches(str(name), valid, n=1)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    return ValueError(f"Unknown {kind} {name!r}.{hint} Valid: {', '.join(valid)}.")


class BatchAugmentation(nn.Module):
    """A composition of batched random operators: images -> (B, 3, size, size) float32.

    Args:
        ops: operators called in order as ``op(x, generator)``; if the first is not a
            RandomResizedCrop or Resize, a Resize to ``size`` is put in front.
        size: output side S.
        names: the operator names it was built from (for printing).
    """

    def __init__(self, ops: Sequence[nn.Module], size: int, names: Sequence[str] = ()) -> None:
        super().__init__()
        if not isinstance(size, int) or size < 1:
            raise ValueError(f"size must be a positive integer; got {size!r}.")
        ops = list(ops)
        if not ops or not isinstance(ops[0], (RandomResizedCrop, Resize)):
            ops.insert(0, Resize(size))
        crops = [op for op in ops if isinstance(op, RandomResizedCrop)]
        if any(op.size != size for op in crops):
            raise ValueError(f"the crop's output size must equal size={size}.")
        self.ops = nn.ModuleList(ops)
        self.size = size
        self.names = tuple(names)

    def forward(self, images: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """(B, 3, H, W) uint8 or float in [0, 1] -> (B, 3, size, size) float32 in [0, 1],
        on the images' device; one independent draw per image."""
        if generator is not None and not isinstance(generator, torch.Generator):
            raise TypeError(f"generator must be a torch.Generator or None; got {generator!r}.")
        x = to_float_images(images)
        for op in self.ops:
            x = op(x, generator)
        return x

    def extra_repr(self) -> str:
        return f"size={self.size}, names={list(self.names)}"


def build_augmentation(
    ops: Sequence[str],
    size: int,
    *,
    strength: float = 1.0,
    crop_scale: tuple[float, float] = (0.08, 1.0),
    crop_ratio: tuple[float, float] = (3 / 4, 4 / 3),
    interpolation: Interpolation = "bilinear",
    antialias: bool = False,
    blur_sigma: tuple[float, float] = (0.1, 2.0),
    probabilities: Mapping[str, float] | None = None,
) -> BatchAugmentation:
    """Compose the named operators (see the module docstring) into a BatchAugmentation.

    Args:
        ops: operator names from AUGMENTATION_OPS, applied in order ("crop" first).
        size: output side S (the crop's output, or the resize target without crop).
        strength: colour strength s (Appendix A: 1.0 ImageNet, 0.5 CIFAR), s >= 0.
        crop_scale, crop_ratio: the crop's area-fraction and aspect-ratio ranges.
        interpolation: the crop's resize, "bilinear" (default) or "bicubic" (official).
        antialias: filter a shrunk crop as Pillow / torchvision do (bilinear only); off:
            the official code's plain resize, which aliases below the box's size.
        blur_sigma: range of the Gaussian blur's sigma.
        probabilities: per-name overrides of DEFAULT_PROBABILITIES, e.g. {"color_jitter": 1}.
    """
    if isinstance(ops, str) or not all(isinstance(name, str) for name in ops):
        raise TypeError(
            f"ops must be a list of operator names such as ['crop', 'color']; got {ops!r}."
        )
    if strength < 0:
        raise ValueError(f"strength must be >= 0 (0 = no colour change); got {strength}.")
    names = list(ops)
    for name in names:
        if name not in AUGMENTATION_OPS:
            raise _unknown("augmentation op", name, AUGMENTATION_OPS)
    expanded = [part for name in names for part in
                (("color_jitter", "color_drop") if name == "color" else (name,))]  # fmt: skip
    repeated = sorted({name for name in expanded if expanded.count(name) > 1})
    if repeated:
        raise ValueError(
            f"ops lists {repeated} more than once ('color' = color_jitter + color_drop)."
        )
    if "crop" in names and names[0] != "crop":
        raise ValueError(f"'crop' must come first (it sets the output size); got {names}.")
    p = dict(DEFAULT_PROBABILITIES)
    for key, value in (probabilities or {}).items():
        if key not in p:
            raise _unknown("probability key", key, tuple(DEFAULT_PROBABILITIES))
        p[key] = value

    modules: list[nn.Module] = []
    # The crop includes the flip (Figure 4(c)); an explicit "flip" right after it is folded
    # into the sampling grid, anywhere else it is its own operator.
    fold_flip = names[:2] == ["crop", "flip"]
    for i, name in enumerate(expanded):
        if name == "crop":
            flip_p = p["flip"] if fold_flip or "flip" not in names else 0.0
            modules.append(
                RandomResizedCrop(
                    size, crop_scale, crop_ratio, flip_p, interpolation, antialias=antialias
                )
            )
        elif name == "flip":
            if not (fold_flip and i == 1):
                modules.append(RandomFlip(p["flip"]))
        elif name == "color_jitter":
            modules.append(ColorJitter(strength, p["color_jitter"]))
        elif name == "color_drop":
            modules.append(RandomGrayscale(p["color_drop"]))
        elif name == "blur":
            modules.append(GaussianBlur(blur_kernel_size(size), blur_sigma, p["blur"]))
        elif name == "rotation":
            modules.append(RandomRotation(p["rotation"]))
        elif name == "cutout":
            modules.append(Cutout(p=p["cutout"]))
        elif name == "noise":
            modules.append(GaussianNoise(p=p["noise"]))
        else:  # "sobel", the last valid name
            modules.append(RandomSobel(p["sobel"]))
    return BatchAugmentation(modules, size, names)


def simclr_augmentation(
    preset: str = "cifar",
    size: int = 32,
    *,
    strength: float | None = None,
    blur: bool | None = None,
    crop_scale: tuple[float, float] = (0.08, 1.0),
    crop_ratio: tuple[float, float] = (3 / 4, 4 / 3),
    interpolation: Interpolation = "bilinear",
    antialias: bool = False,
) -> BatchAugmentation:
    """The family T: crop + flip, colour distortion (jitter p = 0.8, drop p = 0.2), blur.

    Args:
        preset: "cifar" (s = 0.5, no blur) or "imagenet" (s = 1.0, blur p = 0.5).
        size: output side (32 for CIFAR, 224 for ImageNet).
        strength, blur: override the preset's colour strength s / use of blur.
        crop_scale, crop_ratio, interpolation, antialias: as in :func:`build_augmentation`.
    """
    if preset not in _PRESETS:
        raise _unknown("augmentation preset", preset, AUGMENTATION_PRESETS)
    preset_strength, preset_blur = _PRESETS[preset]
    use_blur = preset_blur if blur is None else blur
    return build_augmentation(
        ["crop", "color", *(["blur"] if use_blur else [])], size,
        strength=preset_strength if strength is None else strength,
        crop_scale=crop_scale, crop_ratio=crop_ratio, interpolation=interpolation,
        antialias=antialias,
    )  # fmt: skip
