"""Decode image files once into one uint8 array (N, 3, H, W), in parallel.

Every Pillow mode becomes 8-bit RGB by a stated rule (see :func:`to_rgb`); images of
different sizes are brought to one size by :func:`fit_to_size` (shorter side to ``S``,
bicubic, then a centre crop, the same as torchvision's ``Resize(S)`` + ``CenterCrop(S)``).
Files that cannot be decoded are returned as failures, not raised, so that the caller can
skip them with one warning (:func:`report_failures`) or stop (``strict=True``).
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

#: File extensions read as images (lower case; matching ignores case). Other files are ignored.
IMAGE_EXTENSIONS: tuple[str, ...] = tuple(
    [
        ".jpg",
        ".jpeg",
        ".jpe",
        ".png",
        ".bmp",
        ".gif",
        ".tif",
        ".tiff",
        ".webp",
        ".ppm",
        ".pgm",
        ".pbm",
        ".pnm",
    ]
)
_EXIF_ORIENTATION = 0x0112
_CHUNK = 256  # images per thread-pool task: few enough tasks that scheduling costs nothing


class UndecodableImageError(ValueError):
    """Raised with ``strict=True`` when some image files cannot be decoded."""


class UndecodableImageWarning(UserWarning):
    """Issued once per load when undecodable image files were skipped."""


def is_image_file(name: str | Path) -> bool:
    """Whether ``name`` has one of :data:`IMAGE_EXTENSIONS` (case-insensitive)."""
    return os.path.splitext(str(name))[1].lower() in IMAGE_EXTENSIONS


def _composite_on_white(rgba: np.ndarray) -> np.ndarray:
    """(H, W, 4) uint8 -> (H, W, 3) uint8: alpha-blend onto a white background, rounded."""
    rgb = rgba[..., :3].astype(np.uint32)
    alpha = rgba[..., 3:].astype(np.uint32)
    return ((rgb * alpha + 255 * (255 - alpha) + 127) // 255).astype(np.uint8)


def _grey_to_8bit(img: Image.Image) -> np.ndarray:
    """(H, W) uint8 from a 16-bit ("I;16*"), 32-bit integer ("I") or float ("F") image."""
    a = np.asarray(img)
    if img.mode == "F":
        a = np.nan_to_num(a.astype(np.float64), nan=0.0, posinf=0.0, neginf=0.0)
        lo, hi = float(a.min()), float(a.max())
        if lo >= 0.0 and hi <= 1.0:  # the usual float convention: intensities in [0, 1]
            scaled = a * 255.0
        elif lo >= 0.0 and hi <= 255.0:  # float copy of 8-bit data
            scaled = a
        else:  # arbitrary range (depth, HDR): stretch this image's range onto 0..255
            scaled = (a - lo) * (255.0 / (hi - lo)) if hi > lo else np.zeros_like(a)
        return np.rint(scaled).astype(np.uint8)
    # "I;16*" holds 0..65535; "I" is how Pillow opens 16-bit PNG/TIFF/PGM files, so it is
    # read on the same 16-bit scale (values outside 0..65535 are clipped). Scaling by
    # 255/65535 with rounding maps 65535 -> 255 and 257·k -> k; clipping would saturate.
    wide = np.clip(a.astype(np.int64), 0, 65535)
    return ((wide * 255 + 32767) // 65535).astype(np.uint8)


def to_rgb(img: Image.Image) -> np.ndarray:
    """Any Pillow image -> (H, W, 3) uint8 RGB array.

    Rules: "RGB" as is; transparency ("RGBA", "LA", "PA", "RGBa", "La", "P" with a
    transparent colour) is *composited onto white* (so transparent pixels read as white,
    not as whatever colour happens to be stored under alpha 0); 16-bit "I;16*" and "I"
    are scaled to 8 bits (65535 -> 255), "F" is scaled from [0, 1] (or 0..255, or its own
    min..max otherwise); grey modes are repeated over the three channels; every other mode
    ("1", "L", "P", "CMYK", "YCbCr", "LAB", "HSV", ...) uses Pillow's own conversion.
    """
    mode = img.mode
    if mode == "RGB":
        return np.asarray(img)
    if mode.startswith("I") or mode == "F":
        grey = _grey_to_8bit(img)
        return np.repeat(grey[:, :, None], 3, axis=2)
    if mode in ("RGBA", "LA", "PA", "RGBa", "La") or (mode == "P" and "transparency" in img.info):
        if mode == "La":  # premultiplied: Pillow only converts it to "LA" directly
            img = img.convert("LA")
        return _composite_on_white(np.asarray(img.convert("RGBA")))
    return np.asarray(img.convert("RGB"))


def fit_to_size(rgb: np.ndarray, size: int | None) -> np.ndarray:
    """(H, W, 3) uint8 -> (size, size, 3): shorter side to ``size`` (bicubic), centre crop.

    Matches torchvision ``Resize(size)`` then ``CenterCrop(size)`` on a PIL image: the long
    side becomes ``int(size * long / short)`` and the crop offset is
    ``round((side - size) / 2)``. Pillow's bicubic filter widens with the scale factor, so
    downscaling is antialiased. ``size=None`` returns the array unchanged.
    """
    if size is None:
        return rgb
    h, w = rgb.shape[:2]
    if (h, w) == (size, size):
        return rgb
    if w <= h:
        new_w, new_h = size, int(size * h / w)
    else:
        new_w, new_h = int(size * w / h), size
    img = Image.fromarray(rgb)
    if (new_w, new_h) != (w, h):
        img = img.resize((new_w, new_h), Image.Resampling.BICUBIC)
    top = int(round((new_h - size) / 2.0))
    left = int(round((new_w - size) / 2.0))
    return np.asarray(img.crop((left, top, left + size, top + size)))


def decode_image(path: str | Path, size: int | None = None) -> np.ndarray:
    """Decode one file to (3, H, W) uint8 RGB (EXIF orientation applied, first frame only).

    Raises whatever Pillow raises for a bad file (``OSError`` for truncated data, ...).
    """
    with Image.open(path) as img:
        img.load()  # decode now: a truncated file fails here, inside the caller's try
        if img.getexif().get(_EXIF_ORIENTATION, 1) != 1:
            img = ImageOps.exif_transpose(img)
        rgb = fit_to_size(to_rgb(img), size)
    return np.ascontiguousarray(rgb.transpose(2, 0, 1))


@dataclass(frozen=True)
class Decoded:
    """Result of :func:`decode_files`.

    ``images`` (M, 3, H, W) uint8 holds the decodable files in input order, ``kept`` (M,)
    int64 their indices into the input list; ``failures`` lists (path, reason) pairs.
    """

    images: np.ndarray
    kept: np.ndarray
    failures: tuple[tuple[str, str], ...]


def default_workers() -> int:
    """Threads for decoding: the CPUs this process may use (Pillow decodes without the GIL)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def _try_decode(path: str | Path, size: int | None) -> np.ndarray | str:
    try:
        return decode_image(path, size)
    except Exception as e:  # any failure makes the file "undecodable"; the reason is reported
        return f"{type(e).__name__}: {e}"


def decode_files(
    paths: Sequence[str | Path], size: int | None = None, *, workers: int | None = None
) -> Decoded:
    """Decode ``paths`` into one (M, 3, H, W) uint8 array, skipping undecodable files.

    With ``size=None`` every image must have the size of the first decodable one;
    otherwise a ``ValueError`` says which files differ and to pass ``image_size``.
    """
    n = len(paths)
    failures: dict[int, str] = {}
    first = 0
    ref: np.ndarray | None = None
    while ref is None and first < n:  # the first decodable image fixes (H, W)
        result = _try_decode(paths[first], size)
        if isinstance(result, str):
            failures[first] = result
        else:
            ref = result
        first += 1
    if ref is None:
        return Decoded(
            np.zeros((0, 3, size or 0, size or 0), np.uint8),
            np.zeros(0, np.int64),
            _failure_list(paths, failures),
        )
    out = np.empty((n, *ref.shape), dtype=np.uint8)
    out[first - 1] = ref
    mismatched: dict[int, tuple[int, ...]] = {}

    def work(start: int) -> None:
        for i in range(start, min(start + _CHUNK, n)):
            res = _try_decode(paths[i], size)
            if isinstance(res, str):
                failures[i] = res
            elif res.shape != ref.shape:
                mismatched[i] = res.shape
            else:
                out[i] = res

    starts = range(first, n, _CHUNK)
    with ThreadPoolExecutor(max_workers=workers or default_workers()) as pool:
        list(pool.map(work, starts))  # list() re-raises any unexpected worker error
    if mismatched:
        examples = ", ".join(
            f"{paths[i]} is {s[2]}x{s[1]}" for i, s in sorted(mismatched.items())[:3]
        )
        raise ValueError(
            f"Images differ in size: {paths[first - 1]} is {ref.shape[2]}x{ref.shape[1]} "
            f"(width x height) but {examples} ({len(mismatched)} differ in all). Pass "
            "image_size=S to resize every image's shorter side to S and centre-crop S x S."
        )
    kept = np.array([i for i in range(n) if i not in failures], dtype=np.int64)
    images = out if len(kept) == n else out[kept]
    return Decoded(np.ascontiguousarray(images), kept, _failure_list(paths, failures))


def _failure_list(
    paths: Sequence[str | Path], failures: dict[int, str]
) -> tuple[tuple[str, str], ...]:
    return tuple((str(paths[i]), failures[i]) for i in sorted(failures))


def report_failures(
    failures: Sequence[tuple[str, str]], total: int, where: str, *, strict: bool
) -> None:
    """One warning (or, with ``strict``, an :class:`UndecodableImageError`) for all failures.

    Names the first ten files with their reasons, then "and N more".
    """
    if not failures:
        return
    shown = "; ".join(f"{p} ({why})" for p, why in failures[:10])
    more = f"; and {len(failures) - 10} more" if len(failures) > 10 else ""
    head = f"{len(failures)} of {total} image files under {where} could not be decoded"
    if strict:
        raise UndecodableImageError(
            f"{head}: {shown}{more}. Fix or remove them, or pass strict=False to skip them."
        )
    warnings.warn(
        f"Skipped {head}: {shown}{more}. Pass strict=True to make this an error.",
        UndecodableImageWarning,
        stacklevel=3,
    )


def resize_images(images: np.ndarray, size: int, *, workers: int | None = None) -> np.ndarray:
    """(N, 3, H, W) uint8 -> (N, 3, size, size) uint8 by :func:`fit_to_size`, in threads."""
    n = images.shape[0]
    out = np.empty((n, 3, size, size), dtype=np.uint8)

    def work(start: int) -> None:
        for i in range(start, min(start + _CHUNK, n)):
            out[i] = fit_to_size(images[i].transpose(1, 2, 0), size).transpose(2, 0, 1)

    with ThreadPoolExecutor(max_workers=workers or default_workers()) as pool:
        list(pool.map(work, range(0, n, _CHUNK)))
    return out
