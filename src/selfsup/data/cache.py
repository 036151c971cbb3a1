"""On-disk cache of decoded images, so that a dataset is decoded once across runs.

Entries live in ``<cache_root>/decoded/<name>-<hash>.npz`` (uncompressed NumPy archives:
``images`` (N, 3, H, W) uint8, ``kept`` (N,) int64 indices of the decoded files, and the
skipped files with their reasons). The key hashes the source's absolute path, what is read,
``image_size`` and a fingerprint of the files (names, sizes, modification times), so any
change to the files makes a new entry. Entries are written to a temporary file in the same
folder and renamed into place (``os.replace``), so concurrent readers -- several training
processes, say -- never see half a file. Nothing is ever written inside the data folder.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
import warnings
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np

from selfsup.data.decode import Decoded

logger = logging.getLogger(__name__)
_CACHE_VERSION = 1  # bump when the stored layout or decoding rules change


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def cached_decode(
    cache_root: Path | None,
    source: Path,
    kind: str,
    image_size: int | None,
    fingerprint: list[list[object]],
    build: Callable[[], Decoded],
) -> Decoded:
    """``build()``, or its earlier result from ``<cache_root>/decoded`` when the key matches.

    Args:
        cache_root: selfsup's cache folder; None disables caching (``build()`` is returned).
        source: the folder the data comes from (its absolute path is part of the key).
        kind: what is read from it (e.g. "folder", "cifar-test"), also part of the key.
        image_size: the size images are fitted to (None: native), part of the key.
        fingerprint: JSON-able description of the files, e.g. [name, size, mtime_ns] each.
        build: decodes the data when no valid cache entry exists.

    After writing a new entry, entries of the same (source, kind, image_size) with another
    fingerprint are deleted: they describe files that have since changed.
    """
    if cache_root is None:
        return build()
    ident = json.dumps([kind, str(source.resolve()), image_size])
    slug = "-".join(p for p in source.resolve().parts[-2:] if p.isidentifier() or p.isalnum())
    stem = f"{slug or 'data'}-{_sha(ident)[:10]}"
    digest = _sha(json.dumps([_CACHE_VERSION, ident, fingerprint]))[:16]
    path = cache_root / "decoded" / f"{stem}-{digest}.npz"
    if path.is_file():
        try:
            with np.load(path, allow_pickle=False) as z:
                images, kept = z["images"], z["kept"]
                failures = tuple(zip(z["failed"].tolist(), z["reasons"].tolist(), strict=True))
            if images.dtype == np.uint8 and images.ndim == 4 and len(kept) == len(images):
                logger.info("Loaded decoded images of %s from cache %s", source, path)
                return Decoded(images, kept.astype(np.int64), failures)
        except (OSError, ValueError, KeyError, zipfile.BadZipFile) as e:
            logger.warning("Ignoring unreadable cache file %s (%s)", path, e)
    logger.info("Decoding %d files of %s (cached afterwards at %s)", len(fingerprint), source, path)
    result = build()
    try:
        _write_atomically(path, result)
    except OSError as e:
        warnings.warn(
            f"Could not write the decode cache {path} ({e}); continuing without it. Pass "
            "cache_dir=<writable folder> or cache_dir=False.",
            stacklevel=3,
        )
        return result
    for stale in path.parent.glob(f"{stem}-*.npz"):  # older versions of the same source
        if stale != path:
            stale.unlink(missing_ok=True)
    return result


def _write_atomically(path: Path, d: Decoded) -> None:
    """Write to a temporary file in the same folder, then rename: readers never see half."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".npz")
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(
                f,
                images=d.images,
                kept=d.kept,
                failed=np.array([p for p, _ in d.failures], dtype=str),
                reasons=np.array([r for _, r in d.failures], dtype=str),
            )
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
