"""CIFAR-10: find it on disk (or download it) and read its python batches.

Two on-disk layouts are accepted wherever CIFAR-10 is looked for:

* the JPEG tree ``<root>/train/<class>/*.jpg`` and ``<root>/test/<class>/*.jpg`` (read by
  the image-folder reader in :mod:`selfsup.data.datasets`);
* ``cifar-10-batches-py`` as torchvision downloads it (``data_batch_1`` .. ``data_batch_5``,
  ``test_batch``, ``batches.meta``), either as ``<root>`` itself or as
  ``<root>/cifar-10-batches-py``.
"""

from __future__ import annotations

import os
import pickle
import socket
from pathlib import Path
from typing import Any

import numpy as np

BATCHES_DIR = "cifar-10-batches-py"
TRAIN_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_BATCHES = ("test_batch",)
#: Label order of ``batches.meta`` (alphabetical, so it equals the JPEG tree's sorted folders).
CIFAR10_CLASSES: tuple[str, ...] = tuple(
    ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
)
# Repository root (src/selfsup/data/cifar.py -> parents[3]); the shared datasets folder
# lies beside it at ../shared/datasets.
_REPO_ROOT = Path(__file__).resolve().parents[3]
_DOWNLOAD_TIMEOUT_S = 30.0


def is_batches_dir(path: Path) -> bool:
    """Whether ``path`` is a ``cifar-10-batches-py`` folder (holds a batch file)."""
    return any((path / name).is_file() for name in (*TRAIN_BATCHES, *TEST_BATCHES))


def cifar10_layout(root: Path) -> Path | None:
    """The folder to read under ``root``: a JPEG tree or a batches folder; None if neither."""
    if not root.is_dir():
        return None
    if is_batches_dir(root):
        return root
    if is_batches_dir(root / BATCHES_DIR):
        return root / BATCHES_DIR
    if (root / "train").is_dir() or (root / "test").is_dir():
        return root
    return None


def default_cache_dir() -> Path:
    """selfsup's cache folder: ``$XDG_CACHE_HOME/selfsup``, else ``~/.cache/selfsup``."""
    base = os.environ.get("XDG_CACHE_HOME")
    return (Path(base) if base else Path.home() / ".cache") / "selfsup"


def _download_cifar10(root: Path) -> Path:
    """Download with torchvision into ``root``; returns ``root/cifar-10-batches-py``.

    A socket timeout is set for the duration so that a machine without internet access
    fails within seconds instead of hanging (torchvision passes no timeout of its own).
    """
    from torchvision.datasets import CIFAR10

    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(_DOWNLOAD_TIMEOUT_S)
    try:
        CIFAR10(str(root), train=True, download=True)
    finally:
        socket.setdefaulttimeout(previous)
    return root / BATCHES_DIR


def _candidates() -> list[tuple[str, Path]]:
    """(description, root) in resolution order, after a user-given path."""
    found: list[tuple[str, Path]] = []
    env = os.environ.get("SELFSUP_DATA")
    if env:
        found.append(("$SELFSUP_DATA/cifar10", Path(env).expanduser() / "cifar10"))
    shared = Path("..") / "shared" / "datasets" / "cifar10"
    found.append(("../shared/datasets/cifar10 beside the repository", _REPO_ROOT / shared))
    found.append(("../shared/datasets/cifar10 from the working directory", Path.cwd() / shared))
    found.append(("earlier download in the cache", default_cache_dir() / "cifar10"))
    return found


def resolve_cifar10(path: str | Path | None = None) -> Path:
    """Where CIFAR-10 lies: a JPEG tree root or a ``cifar-10-batches-py`` folder.

    Order: ``path`` when given (it must hold CIFAR-10: a given path is never silently
    replaced by another); ``$SELFSUP_DATA/cifar10``; ``../shared/datasets/cifar10``
    relative to the repository, then to the working directory; an earlier download under
    :func:`default_cache_dir`; finally a torchvision download into that cache folder.
    Raises ``FileNotFoundError`` listing every place tried and why it did not qualify.
    """
    if path is not None:
        given = Path(path).expanduser()
        layout = cifar10_layout(given)
        if layout is None:
            raise FileNotFoundError(
                f"{given} does not hold CIFAR-10: expected train/ and test/ class folders "
                f"or a {BATCHES_DIR} folder (data_batch_1..5, test_batch) in it."
            )
        return layout.resolve()
    tried: list[str] = []
    for label, root in _candidates():
        layout = cifar10_layout(root)
        if layout is not None:
            return layout.resolve()
        why = "no train/, test/ or batch files" if root.is_dir() else "does not exist"
        tried.append(f"{label}: {root} ({why})")
    target = default_cache_dir() / "cifar10"
    try:
        layout = cifar10_layout(_download_cifar10(target))
        if layout is not None:
            return layout.resolve()
        tried.append(f"torchvision download into {target} (finished without batch files)")
    except Exception as e:  # no internet, no torchvision, disk full...: report, do not crash
        tried.append(f"torchvision download into {target} (failed: {type(e).__name__}: {e})")
    raise FileNotFoundError(
        "CIFAR-10 not found. Tried, in order:\n  " + "\n  ".join(tried) + "\nPass the folder "
        "as the dataset path, or set SELFSUP_DATA to a folder containing cifar10/."
    )


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Unpickles the CIFAR batch files (dicts, lists, bytes, numpy arrays) and nothing else.

    Pickle can run arbitrary code; the batches need only numpy's array reconstruction.
    """

    _ALLOWED = frozenset(
        (module, name)
        for module in (
            "numpy",
            "numpy.core.multiarray",
            "numpy._core.multiarray",
            "numpy.core.numeric",
            "numpy._core.numeric",
        )
        for name in ("_reconstruct", "ndarray", "dtype", "scalar", "_frombuffer")
    ) | {("_codecs", "encode")}  # how Python 3's protocol 2 spells a bytes object

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(f"unexpected object {module}.{name} in a CIFAR batch")
        return super().find_class(module, name)


def _load_pickle(path: Path) -> dict[str, Any]:
    """A batch file as a dict with str keys (files pickled by Python 2 or 3 alike)."""
    with open(path, "rb") as f:
        # latin1 keeps Python 2 byte strings (and numpy's buffers) byte for byte.
        obj = _NumpyOnlyUnpickler(f, encoding="latin1").load()
    if not isinstance(obj, dict):
        raise ValueError(f"{path} is not a CIFAR batch: it holds a {type(obj).__name__}")
    return {k.decode("latin1") if isinstance(k, bytes) else str(k): v for k, v in obj.items()}


def read_cifar_batches(folder: Path, split: str) -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
    """Read one split of a ``cifar-10-batches-py`` folder.

    Returns images (N, 3, 32, 32) uint8, labels (N,) int64 and the class names. Each row
    of a batch's ``data`` (N, 3072) holds the 1024 red, then green, then blue values of a
    32 x 32 image in row-major order, so a reshape gives (N, 3, 32, 32) without copying.
    """
    names = {"train": TRAIN_BATCHES, "test": TEST_BATCHES}.get(split)
    if names is None:
        raise ValueError(f"CIFAR-10 has splits 'train' and 'test', not {split!r}.")
    missing = [n for n in names if not (folder / n).is_file()]
    if missing:
        raise FileNotFoundError(f"{folder} lacks {', '.join(missing)} for split {split!r}.")
    images, labels = [], []
    for name in names:
        batch = _load_pickle(folder / name)
        data = np.asarray(batch.get("data"))
        lab = np.asarray(batch.get("labels", []), dtype=np.int64)
        if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
            raise ValueError(
                f"{folder / name}: 'data' should be (N, 3072) uint8, got {data.shape} {data.dtype}"
            )
        if lab.shape != (data.shape[0],):
            raise ValueError(f"{folder / name}: {lab.size} labels for {data.shape[0]} images")
        images.append(data.reshape(-1, 3, 32, 32))
        labels.append(lab)
    classes = CIFAR10_CLASSES
    if (folder / "batches.meta").is_file():
        meta = _load_pickle(folder / "batches.meta").get("label_names")
        if meta:
            classes = tuple(n.decode() if isinstance(n, bytes) else str(n) for n in meta)
    all_labels = np.concatenate(labels)
    if all_labels.size and (all_labels.min() < 0 or all_labels.max() >= len(classes)):
        raise ValueError(f"{folder}: labels outside 0..{len(classes) - 1} for split {split!r}")
    return np.ascontiguousarray(np.concatenate(images)), all_labels, classes


__all__ = [
    "BATCHES_DIR",
    "CIFAR10_CLASSES",
    "cifar10_layout",
    "default_cache_dir",
    "read_cifar_batches",
    "resolve_cifar10",
]
