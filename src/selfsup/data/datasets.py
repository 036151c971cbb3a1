"""Datasets as decoded uint8 tensors in memory: image folders and CIFAR-10.

:func:`load_dataset` reads a dataset once into an :class:`ImageData` (images (N, 3, H, W)
uint8 on the CPU), so training never decodes a file per step. Decoded folders are cached
on disk under the user's cache folder (never inside the data folder, which may be
read-only), keyed on the folder's absolute path, its file list with sizes and
modification times, and ``image_size``; a changed file makes a new cache entry.
"""

from __future__ import annotations

import difflib
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import torch

from selfsup.data import decode as _decode
from selfsup.data.cache import cached_decode
from selfsup.data.cifar import (
    BATCHES_DIR,
    TEST_BATCHES,
    TRAIN_BATCHES,
    default_cache_dir,
    is_batches_dir,
    read_cifar_batches,
    resolve_cifar10,
)
from selfsup.data.decode import IMAGE_EXTENSIONS, Decoded, is_image_file, report_failures

#: Dataset names :func:`load_dataset` resolves by itself (anything else must be a path).
KNOWN_DATASETS: tuple[str, ...] = ("cifar10",)
_SPLIT_FOLDERS = ("train", "test", "val", "valid", "validation")


@dataclass(frozen=True)
class ImageData:
    """A decoded dataset.

    Attributes:
        images: (N, 3, H, W) uint8, CPU, contiguous.
        labels: (N,) int64 class indices into ``classes``; None when unlabelled.
        classes: class names (sorted folder names, or CIFAR's ``label_names``); () when
            unlabelled.
        source: where the data came from, for logs and reports.
        files: where each image came from, in order: its path relative to the split
            folder, or ``<split>#<row>`` for CIFAR python batches; () when unknown.
    """

    images: torch.Tensor = field(repr=False)
    labels: torch.Tensor | None = field(repr=False)
    classes: tuple[str, ...]
    source: str
    files: tuple[str, ...] = field(default=(), repr=False)

    def __post_init__(self) -> None:
        im = self.images
        if im.dtype != torch.uint8 or im.ndim != 4 or im.shape[1] != 3 or im.device.type != "cpu":
            raise ValueError(
                f"images must be a CPU uint8 tensor (N, 3, H, W), got {im.dtype} "
                f"{tuple(im.shape)} on {im.device}"
            )
        if not im.is_contiguous():
            raise ValueError("images must be contiguous (call .contiguous() first)")
        if self.files and len(self.files) != im.shape[0]:
            raise ValueError(
                f"files must name all {im.shape[0]} images or be (); got {len(self.files)}"
            )
        if self.labels is None:
            if self.classes:
                raise ValueError("classes given without labels; pass labels or classes=()")
            return
        lab = self.labels
        if lab.dtype != torch.int64 or lab.shape != (im.shape[0],):
            raise ValueError(
                f"labels must be int64 of shape ({im.shape[0]},), "
                f"got {lab.dtype} {tuple(lab.shape)}"
            )
        if lab.numel() and (int(lab.min()) < 0 or int(lab.max()) >= len(self.classes)):
            raise ValueError(f"labels must lie in 0..{len(self.classes) - 1} (one per class)")

    def __len__(self) -> int:
        return int(self.images.shape[0])

    @property
    def num_classes(self) -> int:
        """Number of classes (0 when unlabelled)."""
        return len(self.classes)


def load_dataset(
    name_or_path: str | os.PathLike[str],
    split: str = "train",
    *,
    image_size: int | None = None,
    labelled: bool = True,
    strict: bool = False,
    cache_dir: str | Path | None | Literal[False] = None,
) -> ImageData:
    """Load a dataset split, decoded once into memory.

    Args:
        name_or_path: a known name (``"cifar10"``, found by
            :func:`~selfsup.data.cifar.resolve_cifar10`; known names win over a folder of
            the same name, write ``./cifar10`` for the folder) or a folder: a tree with
            split folders (``train/``, ``test/``) which ``split`` picks; a class-folder tree
            ``<root>/<class>/<image>`` without split folders (split ``"train"`` only); a
            ``cifar-10-batches-py`` folder; or, with ``labelled=False``, any folder of
            images, searched recursively.
        split: which split (``"train"``, ``"test"``, or another split folder's name).
        image_size: ``S`` resizes every image's shorter side to S (bicubic, antialiased)
            and centre-crops S x S; ``None`` keeps the size, which all images must share.
        labelled: read class labels from the folder names; False returns labels None.
        strict: raise on undecodable image files instead of skipping them with a warning.
        cache_dir: root of the on-disk cache (decoded arrays go in ``<cache_dir>/decoded``);
            None means :func:`~selfsup.data.cifar.default_cache_dir`; False disables it.

    Non-image files are ignored by extension (:data:`~selfsup.data.decode.IMAGE_EXTENSIONS`);
    hidden files and folders (names starting with ".") are skipped.
    """
    if image_size is not None and (
        isinstance(image_size, bool) or not isinstance(image_size, int) or image_size < 1
    ):
        raise ValueError(f"image_size must be a positive int or None, got {image_size!r}")
    if not isinstance(split, str) or not split:
        raise ValueError(f"split must be a non-empty string such as 'train', got {split!r}")
    root = _resolve_name_or_path(os.fspath(name_or_path))
    cache_root = None if cache_dir is False else Path(cache_dir or default_cache_dir())
    batches = root if is_batches_dir(root) else root / BATCHES_DIR
    if is_batches_dir(batches):
        return _load_cifar_batches(batches, split, image_size, labelled, cache_root)
    folder = _split_folder(root, split)
    if labelled:
        files, labels, classes = _class_tree(folder)
    else:
        files, labels, classes = _scan_or_fail(folder), None, ()
    prefix = len(os.path.join(str(folder), ""))  # _scan's paths all start with folder + "/"
    key = [[f[prefix:], s, t] for f, s, t in files]
    paths = [f for f, _, _ in files]
    decoded = cached_decode(
        cache_root,
        folder,
        "folder",
        image_size,
        key,
        lambda: _decode.decode_files(paths, image_size),
    )
    report_failures(decoded.failures, len(files), str(folder), strict=strict)
    if decoded.kept.size == 0:
        raise ValueError(f"None of the {len(files)} image files under {folder} could be decoded.")
    kept_labels = None if labels is None else torch.from_numpy(labels[decoded.kept])
    skipped = f", {len(decoded.failures)} skipped" if decoded.failures else ""
    what = f"{len(classes)} classes" if labelled else "unlabelled"
    return ImageData(
        torch.from_numpy(decoded.images),
        kept_labels,
        classes,
        f"image folder {folder} ({len(decoded.kept)} images, {what}{skipped})",
        tuple(key[i][0] for i in decoded.kept.tolist()),
    )


def _resolve_name_or_path(name: str) -> Path:
    """A known dataset name's folder, or an existing path; else an error with suggestions."""
    if name.strip().lower() in ("cifar10", "cifar-10"):
        return resolve_cifar10()
    path = Path(name).expanduser()
    if path.is_dir():
        return path.resolve()
    if path.exists():
        raise NotADirectoryError(f"{path} is a file; pass the folder that holds the dataset.")
    if os.sep in name or (os.altsep and os.altsep in name) or name.startswith((".", "~")):
        raise FileNotFoundError(f"Dataset folder {path} does not exist.")
    close = difflib.get_close_matches(name.strip().lower(), KNOWN_DATASETS, n=3, cutoff=0.4)
    hint = f" Did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
    raise ValueError(
        f"Unknown dataset {name!r}: it is neither a known name ({', '.join(KNOWN_DATASETS)}) "
        f"nor an existing folder.{hint}"
    )


def _split_folder(root: Path, split: str) -> Path:
    """``root/split`` in a tree with split folders; ``root`` itself for split "train"."""
    if (root / split).is_dir():
        return root / split
    present = [s for s in _SPLIT_FOLDERS if (root / s).is_dir()]
    if present:
        raise FileNotFoundError(
            f"{root} has split folders {', '.join(present)} but no {split!r} folder; "
            f"pick one of those splits."
        )
    if split == "train":
        return root
    raise ValueError(
        f"{root} has no split folders (train/, test/): it is read as one dataset that "
        f"serves split 'train' only, so there is no {split!r} split. Put the splits in "
        f"{root}/train and {root}/test, or load the {split} images' own folder as 'train'."
    )


# path, size in bytes, modification time in ns; str, not Path: 10x cheaper for 50,000 files
_File = tuple[str, int, int]


def _scan(folder: Path) -> tuple[list[_File], list[str]]:
    """Image files under ``folder`` (recursive, sorted) and the paths of other files."""
    images: list[_File] = []
    others: list[str] = []
    seen: set[tuple[int, int]] = set()  # (device, inode) of visited folders: no symlink loops

    def walk(d: str) -> None:
        st = os.stat(d)
        if (st.st_dev, st.st_ino) in seen:
            return
        seen.add((st.st_dev, st.st_ino))
        with os.scandir(d) as it:
            entries = sorted(it, key=lambda e: e.name)
        for e in entries:
            if e.name.startswith("."):
                continue
            if e.is_dir():
                walk(e.path)
            elif is_image_file(e.name):
                s = e.stat()
                images.append((e.path, s.st_size, s.st_mtime_ns))
            else:
                others.append(e.path)

    walk(str(folder))
    return images, others


def _no_images(folder: Path, others: list[str]) -> FileNotFoundError:
    seen = f" (found {len(others)} other files, e.g. {others[0]})" if others else ""
    return FileNotFoundError(
        f"No image files under {folder}{seen}. Accepted extensions: "
        f"{' '.join(IMAGE_EXTENSIONS)} (any case)."
    )


def _scan_or_fail(folder: Path) -> list[_File]:
    images, others = _scan(folder)
    if not images:
        raise _no_images(folder, others)
    return images


def _class_tree(folder: Path) -> tuple[list[_File], np.ndarray, tuple[str, ...]]:
    """Files of ``folder/<class>/**`` with labels (N,) int64 and the sorted class names."""
    with os.scandir(folder) as it:
        entries = sorted(it, key=lambda e: e.name)
    dirs = [e for e in entries if e.is_dir() and not e.name.startswith(".")]
    loose = [e.name for e in entries if e.is_file() and is_image_file(e.name)]
    if not dirs:
        if loose:
            raise ValueError(
                f"{folder} holds images but no class folders; labelled data must be laid "
                f"out as {folder}/<class>/<image>. Pass labelled=False to read it unlabelled."
            )
        raise _no_images(folder, [e.path for e in entries if e.is_file()])
    files: list[_File] = []
    labels: list[int] = []
    empty: list[str] = []
    for index, d in enumerate(dirs):
        found, _ = _scan(Path(d.path))
        files += found
        labels += [index] * len(found)
        if not found:
            empty.append(d.name)
    if empty:
        raise FileNotFoundError(
            f"Class folders without images under {folder}: {', '.join(empty)}. Accepted "
            f"extensions: {' '.join(IMAGE_EXTENSIONS)}. Remove those folders or add images."
        )
    if loose:
        warnings.warn(
            f"{len(loose)} image files directly in {folder} (e.g. {loose[0]}) are in no class "
            "folder and were ignored.",
            stacklevel=3,
        )
    return files, np.array(labels, dtype=np.int64), tuple(d.name for d in dirs)


def _load_cifar_batches(
    folder: Path, split: str, image_size: int | None, labelled: bool, cache_root: Path | None
) -> ImageData:
    images, labels, classes = read_cifar_batches(folder, split)
    if image_size is not None and image_size != images.shape[-1]:
        # Unpickling is already fast; only the resized copy is worth caching.
        names = TRAIN_BATCHES if split == "train" else TEST_BATCHES
        key = [[n, (folder / n).stat().st_size, (folder / n).stat().st_mtime_ns] for n in names]
        n = len(images)
        images = cached_decode(
            cache_root,
            folder,
            f"cifar-{split}",
            image_size,
            key,
            lambda: Decoded(_decode.resize_images(images, image_size), np.arange(n), ()),
        ).images
    return ImageData(
        torch.from_numpy(images),
        torch.from_numpy(labels) if labelled else None,
        classes if labelled else (),
        f"CIFAR-10 python batches {folder} (split {split}, {len(images)} images)",
        tuple(f"{split}#{row}" for row in range(len(images))),
    )


__all__ = ["KNOWN_DATASETS", "ImageData", "default_cache_dir", "load_dataset", "resolve_cifar10"]
