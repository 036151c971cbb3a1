"""Counting and depth probes on frozen features of the shapes dataset (I-JEPA, Table 4).

The I-JEPA paper argues that invariance-based methods (SimCLR) discard the spatial and
photometric detail that low-level tasks need, and tests it on Clevr object counting and
depth. selfsup's stand-in for Clevr is the shapes dataset (``selfsup data shapes``,
:mod:`selfsup.data.shapes`). Both probes train a linear head on frozen features of the
train split and report on the test split:

* **counting**: classification of the object count (3..10) by the linear probe of
  :func:`selfsup.eval.linear_probe`; top-1 accuracy, with the share of the most frequent
  training count as the chance line.
* **depth**: regression of the nearest object's distance to the camera (world units) by
  the ridge probe of :func:`selfsup.eval.regression.ridge_probe`; mean absolute error, with
  the constant predictor's MAE beside it.
"""

from __future__ import annotations

import time
from pathlib import Path

import torch
from torch import Tensor, nn

from selfsup.data import load_dataset
from selfsup.data.datasets import ImageData
from selfsup.data.shapes import MAX_OBJECTS, read_shapes_labels
from selfsup.eval import extract_features, linear_probe
from selfsup.eval.regression import ridge_probe

PROBE_TASKS = ("counting", "depth")


def _labels(data: ImageData, root: Path, split: str) -> tuple[Tensor, Tensor]:
    """Counts and depths of ``data``'s images, matched by file name to labels.csv."""
    files, counts, depths = read_shapes_labels(root, split)
    by_file = {f: i for i, f in enumerate(files)}
    try:
        index = torch.tensor([by_file[f"{split}/{f}"] for f in data.files])
    except KeyError as e:
        raise ValueError(
            f"{root}/{split} holds {e.args[0]!r}, which labels.csv does not list: the folder "
            "was changed after `selfsup data shapes` wrote it; write it again."
        ) from None
    if len(index) != len(files):
        raise ValueError(
            f"{root}/{split}: labels.csv lists {len(files)} images but {len(index)} were read; "
            "write the dataset again with `selfsup data shapes`."
        )
    return counts[index], depths[index]


def shapes_probes(
    encoder: nn.Module,
    data_dir: str | Path,
    *,
    tasks: tuple[str, ...] = PROBE_TASKS,
    image_size: int | None = None,
    linear_epochs: int = 100,
    batch_size: int = 512,
    device: str | torch.device = "cpu",
) -> dict[str, float]:
    """Run the ``tasks`` probes of a frozen ``encoder`` on the shapes dataset at ``data_dir``.

    Returns, as present: ``counting_top1`` and ``counting_chance`` (percent),
    ``depth_mae``, ``depth_baseline_mae`` (world units), ``depth_r2``; and
    ``feature_seconds``. ``image_size``: the encoder's input side (the images are resized
    to it); None keeps the dataset's.
    """
    unknown = [t for t in tasks if t not in PROBE_TASKS]
    if unknown or not tasks:
        raise ValueError(f"probe tasks must be among {', '.join(PROBE_TASKS)}; got {tasks}.")
    root = Path(data_dir)
    if not (root / "labels.csv").is_file():
        raise FileNotFoundError(
            f"{root} is not a shapes dataset (no labels.csv); write one with "
            f"`selfsup data shapes --out {root}`."
        )
    start = time.perf_counter()
    splits = {}
    for split in ("train", "test"):
        data = load_dataset(root, split, labelled=True)
        features = extract_features(
            encoder, data.images, batch_size=batch_size, device=device, image_size=image_size
        )
        splits[split] = (features, *_labels(data, root, split))
    out: dict[str, float] = {"feature_seconds": time.perf_counter() - start}
    (f_train, c_train, d_train), (f_test, c_test, d_test) = splits["train"], splits["test"]
    if "counting" in tasks:
        # The count itself is the class index: train and test agree even when a small
        # dataset lacks some count in one split.
        r = linear_probe(
            f_train, c_train, f_test, c_test, num_classes=MAX_OBJECTS + 1, epochs=linear_epochs
        )
        out["counting_top1"] = float(r.top1)
        out["counting_chance"] = 100.0 * float((c_test == c_train.mode().values).float().mean())
    if "depth" in tasks:
        d = ridge_probe(f_train, d_train, f_test, d_test)
        out["depth_mae"], out["depth_baseline_mae"] = d.mae, d.baseline_mae
        out["depth_r2"] = d.r2
    return out
