"""The random operators of SimCLR's augmentation family T (SPEC, "The family T") and of
the paper's Figure 4, each drawing its parameters per image on the batch's device.

Every operator has ``sample(x, generator) -> params`` (all random draws, one per image)
and ``transform(x, params)`` (deterministic, via :mod:`selfsup.data.augment_ops`); forward is
``transform(x, sample(x, generator))``. With ``generator=None`` the draws use the global RNG
of the images' device, so restoring the RNG state reproduces the same views. Inputs are
float (B, 3, H, W) in [0, 1]; :mod:`selfsup.data.augment` composes them.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from selfsup.data import augment_color as color
from selfsup.data import augment_ops as ops
from selfsup.data.augment_ops import Interpolation

Params = dict[str, Tensor]


def _uniform(
    shape: tuple[int, ...], low: float, high: float, x: Tensor, generator: torch.Generator | None
) -> Tensor:
    """U[low, high) draws on the generator's device (else x's), returned on x's device."""
    device = generator.device if generator is not None else x.device
    u = torch.rand(shape, generator=generator, device=device)
    return (low + (high - low) * u).to(x.device)


def _coin(p: float, x: Tensor, generator: torch.Generator | None) -> Tensor:
    """(B,) bool, true with probability p for each image of x."""
    return _uniform((x.shape[0],), 0.0, 1.0, x, generator) < p


def _check_probability(p: float, name: str) -> float:
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"probability of {name} must be in [0, 1]; got {p}.")
    return float(p)


class RandomOp(nn.Module):
    """An operator with per-image random parameters: forward = transform(sample)."""

    def sample(self, x: Tensor, generator: torch.Generator | None) -> Params:
        raise NotImplementedError(f"{type(self).__name__} must define sample().")

    def transform(self, x: Tensor, params: Params) -> Tensor:
        raise NotImplementedError(f"{type(self).__name__} must define transform().")

    def forward(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        return self.transform(x, self.sample(x, generator))


class RandomResizedCrop(RandomOp):
    """Random resized crop (then optional horizontal flip): (B, 3, H, W) -> (B, 3, S, S).

    Per image, like torchvision's RandomResizedCrop: area fraction ~ U(scale), aspect
    ratio log-uniform in ``ratio``, w = round(sqrt(A r)), h = round(sqrt(A / r)); the
    first of 10 attempts that fits is kept (all drawn at once), else the centre crop
    with the aspect ratio clamped into ``ratio``. Position uniform over the places where
    the box fits. The official SimCLR code resizes bicubically; the default here is
    bilinear, torchvision's default and that of common PyTorch reproductions, about 3x
    cheaper on CPU; pass ``interpolation="bicubic"`` for the official choice. No
    antialiasing when a box is shrunk (the official code's ``tf.image.resize``);
    ``antialias=True`` filters as Pillow and torchvision do (bilinear only).
    """

    def __init__(
        self,
        size: int,
        scale: tuple[float, float] = (0.08, 1.0),
        ratio: tuple[float, float] = (3 / 4, 4 / 3),
        flip_p: float = 0.5,
        interpolation: Interpolation = "bilinear",
        attempts: int = 10,
        antialias: bool = False,
    ) -> None:
        super().__init__()
        if not 0.0 < scale[0] <= scale[1] <= 1.0:
            raise ValueError(f"crop scale must satisfy 0 < min <= max <= 1; got {scale}.")
        if not 0.0 < ratio[0] <= ratio[1]:
            raise ValueError(f"crop ratio must satisfy 0 < min <= max; got {ratio}.")
        if interpolation not in ("bilinear", "bicubic"):
            raise ValueError(
                f"interpolation must be 'bilinear' or 'bicubic'; got {interpolation!r}."
            )
        self.size, self.scale, self.ratio = size, scale, ratio
        self.flip_p = _check_probability(flip_p, "flip")
        if antialias and interpolation != "bilinear":
            raise ValueError(
                f"antialias=True needs interpolation='bilinear'; got {interpolation!r}."
            )
        self.interpolation: Interpolation = interpolation
        self.attempts = attempts
        self.antialias = antialias

    def sample(self, x: Tensor, generator: torch.Generator | None) -> Params:
        """boxes (B, 4) long as (top, left, height, width); flip (B,) bool."""
        b, _, height, width = x.shape
        shape = (b, self.attempts)
        area = height * width * _uniform(shape, self.scale[0], self.scale[1], x, generator)
        log_r = _uniform(shape, math.log(self.ratio[0]), math.log(self.ratio[1]), x, generator)
        aspect = torch.exp(log_r)
        w = torch.round(torch.sqrt(area * aspect))
        h = torch.round(torch.sqrt(area / aspect))
        fits = (w > 0) & (w <= width) & (h > 0) & (h <= height)
        first = fits.float().argmax(dim=1, keepdim=True)  # first attempt that fits
        found = fits.any(dim=1)
        # Fallback (torchvision's): the whole image, its aspect clamped into `ratio`.
        in_ratio = width / height
        fw, fh = width, height
        if in_ratio < self.ratio[0]:
            fh = int(round(width / self.ratio[0]))
        elif in_ratio > self.ratio[1]:
            fw = int(round(height * self.ratio[1]))
        w = torch.where(
            found, w.gather(1, first).squeeze(1), torch.full_like(found, fw, dtype=w.dtype)
        )
        h = torch.where(
            found, h.gather(1, first).squeeze(1), torch.full_like(found, fh, dtype=h.dtype)
        )
        u = _uniform((2, b), 0.0, 1.0, x, generator)
        top = torch.minimum(torch.floor(u[0] * (height - h + 1)), height - h)
        left = torch.minimum(torch.floor(u[1] * (width - w + 1)), width - w)
        top = torch.where(found, top, torch.div(height - h, 2, rounding_mode="floor"))
        left = torch.where(found, left, torch.div(width - w, 2, rounding_mode="floor"))
        boxes = torch.stack((top, left, h, w), dim=1).long()
        return {"boxes": boxes, "flip": _coin(self.flip_p, x, generator)}

    def transform(self, x: Tensor, params: Params) -> Tensor:
        return ops.resized_crop(
            x,
            params["boxes"],
            self.size,
            flip=params["flip"],
            interpolation=self.interpolation,
            antialias=self.antialias,
        )


class Resize(nn.Module):
    """Resize to (S, S) when the input is another size (bilinear, antialiased)."""

    def __init__(self, size: int) -> None:
        super().__init__()
        self.size = size

    def forward(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        if x.shape[-2:] == (self.size, self.size):
            return x
        out = F.interpolate(
            x, size=(self.size, self.size), mode="bilinear", align_corners=False, antialias=True
        )
        return out.clamp_(0.0, 1.0)


class RandomFlip(RandomOp):
    """Horizontal flip with probability p."""

    def __init__(self, p: float = 0.5) -> None:
        super().__init__()
        self.p = _check_probability(p, "flip")

    def sample(self, x: Tensor, generator: torch.Generator | None) -> Params:
        return {"flip": _coin(self.p, x, generator)}

    def transform(self, x: Tensor, params: Params) -> Tensor:
        return ops.hflip(x, params["flip"])


class ColorJitter(RandomOp):
    """Colour jitter of strength s with probability p (SimCLR's Appendix A pseudocode).

    brightness, contrast, saturation factors ~ U[max(0, 1 - 0.8 s), 1 + 0.8 s], hue shift
    ~ U[-0.2 s, 0.2 s], applied in a random order drawn per image (torchvision's
    ColorJitter semantics, clamping to [0, 1] after each). Images not selected (1 - p)
    get the identity factors.
    """

    def __init__(self, strength: float = 1.0, p: float = 0.8) -> None:
        super().__init__()
        if not 0.0 <= strength <= 2.5:
            raise ValueError(
                f"colour strength s must be in [0, 2.5] (hue range 0.2 s <= 0.5, as "
                f"torchvision requires); got {strength}."
            )
        self.strength, self.p = float(strength), _check_probability(p, "color_jitter")

    def sample(self, x: Tensor, generator: torch.Generator | None) -> Params:
        """factors (B, 4): brightness, contrast, saturation, hue; order (B, 4); applied (B,)."""
        b, s = x.shape[0], self.strength
        factors = torch.cat(
            [
                _uniform((b, 3), max(0.0, 1.0 - 0.8 * s), 1.0 + 0.8 * s, x, generator),
                _uniform((b, 1), -0.2 * s, 0.2 * s, x, generator),
            ],
            dim=1,
        )
        order = torch.argsort(_uniform((b, 4), 0.0, 1.0, x, generator), dim=1)
        applied = _coin(self.p, x, generator)
        # (1, 1, 1, 0) made on the device: a tensor from Python numbers would be a
        # host-to-device copy, which waits for the device.
        identity = (torch.arange(4, device=x.device) < color.HUE).to(factors.dtype)
        factors = torch.where(applied[:, None], factors, identity)
        return {"factors": factors, "order": order, "applied": applied}

    def transform(self, x: Tensor, params: Params) -> Tensor:
        if self.strength == 0.0:
            return x  # every factor is the identity
        return color.color_jitter(x, params["factors"], params["order"])


class RandomGrayscale(RandomOp):
    """Colour drop: grayscale (ITU-R 601 luma on 3 channels) with probability p."""

    def __init__(self, p: float = 0.2) -> None:
        super().__init__()
        self.p = _check_probability(p, "color_drop")

    def sample(self, x: Tensor, generator: torch.Generator | None) -> Params:
        return {"applied": _coin(self.p, x, generator)}

    def transform(self, x: Tensor, params: Params) -> Tensor:
        return ops.apply_where(x, params["applied"], lambda imgs, _: color.grayscale(imgs))


def blur_kernel_size(size: int) -> int:
    """Odd kernel of about 10 % of the side: 2 * ((size // 10) // 2) + 1, as the official
    code (23 for 224 px, 3 for 32 px, 1 = no blur below 20 px)."""
    return 2 * ((size // 10) // 2) + 1


class GaussianBlur(RandomOp):
    """Gaussian blur with probability p, sigma ~ U(sigma) per image, reflect padding."""

    def __init__(
        self, kernel_size: int, sigma: tuple[float, float] = (0.1, 2.0), p: float = 0.5
    ) -> None:
        super().__init__()
        if kernel_size < 1 or kernel_size % 2 == 0:
            raise ValueError(f"blur kernel_size must be a positive odd integer; got {kernel_size}.")
        if not 0.0 < sigma[0] <= sigma[1]:
            raise ValueError(f"blur sigma range must satisfy 0 < min <= max; got {sigma}.")
        self.kernel_size, self.sigma = kernel_size, sigma
        self.p = _check_probability(p, "blur")

    def sample(self, x: Tensor, generator: torch.Generator | None) -> Params:
        sigmas = _uniform((x.shape[0],), self.sigma[0], self.sigma[1], x, generator)
        return {"sigmas": sigmas, "applied": _coin(self.p, x, generator)}

    def transform(self, x: Tensor, params: Params) -> Tensor:
        if self.kernel_size == 1:
            return x
        sigmas = params["sigmas"]
        return ops.apply_where(
            x,
            params["applied"],
            lambda imgs, idx: ops.gaussian_blur(
                imgs, self.kernel_size, sigmas if idx is None else sigmas[idx]
            ),
        )


class RandomRotation(RandomOp):
    """Rotation by one of 90, 180, 270 degrees (Figure 4(f)), uniformly, with probability p."""

    def __init__(self, p: float = 1.0) -> None:
        super().__init__()
        self.p = _check_probability(p, "rotation")

    def sample(self, x: Tensor, generator: torch.Generator | None) -> Params:
        turns = torch.floor(_uniform((x.shape[0],), 1.0, 4.0, x, generator)).clamp_(1, 3).long()
        return {"quarter_turns": torch.where(_coin(self.p, x, generator), turns, 0)}

    def transform(self, x: Tensor, params: Params) -> Tensor:
        return ops.rotate90(x, params["quarter_turns"])


class Cutout(RandomOp):
    """One square of side ``fraction * S`` at a uniform centre, filled with grey.

    The paper does not give its cutout size; half the side is DeVries & Taylor's CIFAR
    setting (16 of 32 px). Grey 0.5 plays the role of their zero fill of normalised
    images (the mean), since selfsup's images are not normalised.
    """

    def __init__(self, fraction: float = 0.5, fill: float = 0.5, p: float = 1.0) -> None:
        super().__init__()
        if not 0.0 < fraction <= 1.0:
            raise ValueError(f"cutout fraction must be in (0, 1]; got {fraction}.")
        self.fraction, self.fill = fraction, fill
        self.p = _check_probability(p, "cutout")

    def sample(self, x: Tensor, generator: torch.Generator | None) -> Params:
        b, _, height, width = x.shape
        u = _uniform((b, 2), 0.0, 1.0, x, generator)
        rows = torch.floor(u[:, 0] * height).clamp_(max=height - 1)
        cols = torch.floor(u[:, 1] * width).clamp_(max=width - 1)
        centres = torch.stack((rows, cols), dim=1).long()
        return {"centres": centres, "applied": _coin(self.p, x, generator)}

    def transform(self, x: Tensor, params: Params) -> Tensor:
        side = max(1, round(self.fraction * x.shape[-1]))
        out = ops.cutout(x, params["centres"], side, self.fill)
        return torch.where(params["applied"].view(-1, 1, 1, 1), out, x)


class GaussianNoise(RandomOp):
    """Additive Gaussian noise, std ~ U(std) per image (the paper gives no level), clamped."""

    def __init__(self, std: tuple[float, float] = (0.0, 0.1), p: float = 1.0) -> None:
        super().__init__()
        if not 0.0 <= std[0] <= std[1]:
            raise ValueError(f"noise std range must satisfy 0 <= min <= max; got {std}.")
        self.std, self.p = std, _check_probability(p, "noise")

    def sample(self, x: Tensor, generator: torch.Generator | None) -> Params:
        stds = _uniform((x.shape[0],), self.std[0], self.std[1], x, generator)
        stds = torch.where(_coin(self.p, x, generator), stds, 0.0)
        device = generator.device if generator is not None else x.device
        noise = torch.randn(x.shape, generator=generator, device=device).to(x.device)
        return {"stds": stds, "noise": noise}

    def transform(self, x: Tensor, params: Params) -> Tensor:
        return ops.add_gaussian_noise(x, params["stds"], params["noise"])


class RandomSobel(RandomOp):
    """Sobel filtering (edge magnitude on 3 channels) with probability p."""

    def __init__(self, p: float = 1.0) -> None:
        super().__init__()
        self.p = _check_probability(p, "sobel")

    def sample(self, x: Tensor, generator: torch.Generator | None) -> Params:
        return {"applied": _coin(self.p, x, generator)}

    def transform(self, x: Tensor, params: Params) -> Tensor:
        return torch.where(params["applied"].view(-1, 1, 1, 1), ops.sobel(x), x)
