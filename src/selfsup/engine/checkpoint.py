"""Atomic checkpoints and random-number-generator states.

A checkpoint is a dict saved with ``torch.save``; :func:`save_checkpoint` adds a format
marker and version so :func:`load_checkpoint` can tell a selfsup checkpoint from any
other file. Everything in it is a tensor or a plain container (RNG states included), so
it loads with ``torch.load(weights_only=True)``: loading never runs arbitrary pickled code.
"""

from __future__ import annotations

import os
import random
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from selfsup import dist

FORMAT = "selfsup-checkpoint"
VERSION = 1


def save_checkpoint(path: str | Path, payload: dict[str, Any]) -> Path:
    """Write ``payload`` (plus ``format`` and ``version`` keys) to ``path`` atomically.

    The bytes go to a temporary file in the same folder, are flushed and fsynced, and the
    file is then renamed over ``path`` (``os.replace`` is atomic on POSIX and Windows), so
    a crash leaves either the old checkpoint or the new one, never half a file. Returns
    the path.
    """
    path = Path(path)
    if not path.parent.is_dir():
        raise FileNotFoundError(
            f"Cannot save checkpoint '{path}': folder '{path.parent}' does not exist."
        )
    data = {**payload, "format": FORMAT, "version": VERSION}
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(data, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)  # make the rename itself durable
    return path


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # Windows cannot open folders; the rename is still atomic there
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def load_checkpoint(path: str | Path, *, map_location: Any = "cpu") -> dict[str, Any]:
    """Load a checkpoint written by :func:`save_checkpoint` (tensors onto ``map_location``).

    Raises ``FileNotFoundError`` for a missing file and ``ValueError`` for a file that is
    not a selfsup checkpoint or comes from a newer format version.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"No checkpoint at '{path}'. Check the path (pre-training writes <run_dir>/last.pt)."
        )
    try:
        data = torch.load(path, map_location=map_location, weights_only=True)
    except OSError:
        raise
    except Exception as e:  # any parse failure (the unpickler raises many types)
        raise ValueError(
            f"'{path}' is not a selfsup checkpoint: torch.load failed ({type(e).__name__}: "
            f"{str(e).splitlines()[0] if str(e) else ''})."
        ) from e
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise ValueError(
            f"'{path}' is not a selfsup checkpoint (no '{FORMAT}' format marker); it was "
            "not written by selfsup.engine.checkpoint.save_checkpoint."
        )
    version = data.get("version")
    if not isinstance(version, int) or version > VERSION:
        raise ValueError(
            f"'{path}' has checkpoint format version {version!r}; this selfsup reads "
            f"versions up to {VERSION}. Upgrade selfsup to load it."
        )
    return data


def capture_rng_state() -> dict[str, Any]:
    """The states of Python's, NumPy's and torch's (CPU, CUDA, MPS) global generators.

    NumPy's key array is stored as a tensor so the checkpoint stays weights-only loadable.
    """
    kind, key, pos, has_gauss, gauss = np.random.get_state(legacy=True)
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": {
            "kind": str(kind),
            "key": torch.from_numpy(np.asarray(key, dtype=np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "gauss": float(gauss),
        },
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    if torch.backends.mps.is_available():
        state["mps"] = torch.mps.get_rng_state()
    return state


def restore_rng_state(state: dict[str, Any]) -> None:
    """Restore generator states captured by :func:`capture_rng_state`.

    Raises ``ValueError`` when the CUDA states cannot apply (a different number of GPUs):
    the run would continue with other random numbers than the original.
    """
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    n = state["numpy"]
    np.random.set_state(
        (n["kind"], n["key"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"])
    )
    torch.set_rng_state(state["torch"].cpu())
    if "cuda" in state and torch.cuda.is_available():
        cuda_states = state["cuda"]
        if len(cuda_states) != torch.cuda.device_count():
            raise ValueError(
                f"The checkpoint holds CUDA RNG states for {len(cuda_states)} GPUs but "
                f"{torch.cuda.device_count()} are visible; resume with the same GPUs."
            )
        torch.cuda.set_rng_state_all([s.cpu() for s in cuda_states])
    if "mps" in state and torch.backends.mps.is_available():
        torch.mps.set_rng_state(state["mps"].cpu())


def gather_rng_states() -> list[dict[str, Any]]:
    """Every process's :func:`capture_rng_state`, indexed by rank (collective call).

    Each process draws its own augmentations, so exact resume needs all their states.
    """
    mine = capture_rng_state()
    return [
        dist.broadcast_object(mine if r == dist.rank() else None, src=r)
        for r in range(dist.world_size())
    ]


def check_plain_data(value: Any, where: str) -> None:
    """Raise ``TypeError`` unless ``value`` is plain data that ``weights_only`` loading accepts.

    Plain: None, bool, int, float, str, tensors, and lists, tuples and str-keyed dicts
    of those. Used on user-supplied checkpoint metadata before training starts, so a bad
    value fails at once rather than when resuming.
    """
    if value is None or isinstance(value, (bool, int, float, str, torch.Tensor)):
        return
    if isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            check_plain_data(v, f"{where}[{i}]")
        return
    if isinstance(value, dict):
        for k, v in value.items():
            if not isinstance(k, str):
                raise TypeError(f"{where} has a non-string key {k!r}; use plain data.")
            check_plain_data(v, f"{where}[{k!r}]")
        return
    raise TypeError(
        f"{where} is a {type(value).__name__}; checkpoint data must be plain (str, int, "
        "float, bool, None, lists, dicts, tensors). Convert it, e.g. str(path)."
    )
