"""A deterministic synthetic dataset for counting and depth probes ("shapes").

CLEVR-like scenes (I-JEPA, Table 4: low-level tasks): 3 to 10 shaded spheres, cubes and
cylinders in the eight CLEVR colours and three sizes, standing on a ground plane seen in
perspective from above and in front (world, units and camera: :mod:`.shapes_scene`;
renderer: :mod:`.shapes_render`).

Labels of a scene:
    count: the number of objects, 3..10.
    nearest_depth: the Euclidean distance from the camera centre
        (:data:`~selfsup.data.shapes_scene.CAMERA` ``.position``) to the centre of the
        nearest object, in world units (a large sphere has radius 0.7); an object's centre
        is the middle of its bounding box, ``half_height`` above the ground. Over 2,000
        scenes it spans 7.8..11.8 (median 8.35, std 0.55), and it falls as the count
        grows (more objects, more likely one near the bottom edge).

Scene ``i`` of dataset ``seed`` is drawn from ``numpy.random.default_rng([seed, i])`` alone
(:func:`scene_for`), so any image can be regenerated on its own, in any order or process.
Objects never intersect (their ground footprints are disjoint), lie wholly inside the
picture, and each keeps at least half of its outline unhidden by nearer objects (judged on
projected discs), so every counted object can be seen.
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from selfsup.data.shapes_render import (
    IMAGE_SIZES,
    LIGHT_DIR,
    RENDERER_VERSION,
    SUPERSAMPLE,
    check_image_size,
    render_scene,
)
from selfsup.data.shapes_scene import CAMERA, COLOURS, SHAPES, SIZES, Scene, SceneObject, view_order

#: The most objects a scene may hold (the counting labels run 3..10 by default).
MAX_OBJECTS = 10
#: Farthest object centre from the camera, world units: farther ones would be specks at 32 px.
MAX_DEPTH = 12.5
_GAP = 0.1  # world units of free ground between two footprints
_FRAME_MARGIN = 0.02  # objects' boxes stay this far (image sides) inside the picture
_MIN_UNHIDDEN = 0.5  # share of an object's projected disc not covered by nearer discs
_TRIES_PER_OBJECT = 60
_RESTARTS = 100
_LABELS = "labels.csv"
_DISC = np.stack(np.meshgrid(np.linspace(-1, 1, 9), np.linspace(-1, 1, 9)), -1).reshape(-1, 2)
_DISC = _DISC[(_DISC**2).sum(1) <= 1.0]  # 69 sample points of the unit disc, for occlusion


def _ground_window() -> tuple[float, float, float, float]:
    """(x_min, x_max, z_min, z_max) of the ground seen through the image's corners."""
    right, up, forward = CAMERA.basis
    cam = np.asarray(CAMERA.position)
    hits = []
    for u in (-0.5, 0.5):
        for v in (-0.5, 0.5):
            d = forward * CAMERA.focal + u * right - v * up
            hits.append(cam - cam[1] / d[1] * d)  # where the corner ray meets y = 0
    c = np.array(hits)
    # No centre lies farther than MAX_DEPTH from the camera: skip ground beyond that.
    far = cam[2] + math.sqrt(MAX_DEPTH**2 - (cam[1] - max(SIZES.values())) ** 2)
    return (
        float(c[:, 0].min()),
        float(c[:, 0].max()),
        float(c[:, 2].min()),
        float(min(far, c[:, 2].max())),
    )


_WINDOW = _ground_window()


def _check_count_range(min_objects: int, max_objects: int) -> None:
    for name, v in (("min_objects", min_objects), ("max_objects", max_objects)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
            raise ValueError(f"{name} must be an int, got {v!r}")
    if not 1 <= min_objects <= MAX_OBJECTS:
        raise ValueError(f"min_objects must be in 1..{MAX_OBJECTS}, got {min_objects}")
    if not min_objects <= max_objects <= MAX_OBJECTS:
        raise ValueError(
            f"max_objects must be in min_objects..{MAX_OBJECTS} = {min_objects}..{MAX_OBJECTS}, "
            f"got {max_objects}"
        )


def _fits(new: SceneObject, placed: list[SceneObject]) -> bool:
    """Whether ``new`` is in the picture, clear of ``placed``, and leaves all visible."""
    if new.depth > MAX_DEPTH:
        return False
    for o in placed:  # cheapest test first: most rejected draws end here
        if math.hypot(new.x - o.x, new.z - o.z) < new.size + o.size + _GAP:
            return False
    uv = CAMERA.project(new.box_corners())
    if uv.min() < _FRAME_MARGIN or uv.max() > 1 - _FRAME_MARGIN:
        return False
    objs = [*placed, new]
    cam = CAMERA.to_camera(np.array([o.centre for o in objs]))  # (k, 3)
    centres = CAMERA.project(np.array([o.centre for o in objs]))  # (k, 2), image sides
    radii = CAMERA.focal * np.array([o.size for o in objs]) / cam[:, 2]
    order = np.array([view_order(o) for o in objs])
    for i in range(len(objs)):
        nearer = order < order[i]
        if not nearer.any():
            continue
        pts = centres[i] + radii[i] * _DISC  # (p, 2)
        gap = pts[:, None, :] - centres[nearer][None]  # (p, m, 2)
        hidden = ((gap**2).sum(-1) < radii[nearer] ** 2).any(1)
        if hidden.mean() > 1 - _MIN_UNHIDDEN:
            return False
    return True


def sample_scene(
    rng: np.random.Generator, *, min_objects: int = 3, max_objects: int = MAX_OBJECTS
) -> Scene:
    """Draw a random scene: a uniform count, then each object's look and free position.

    Args:
        rng: the only source of randomness (the same state gives the same scene).
        min_objects: fewest objects, 1..10.
        max_objects: most objects, ``min_objects``..10.

    Returns:
        A scene of ``count`` objects, uniform in ``min_objects..max_objects``; shape,
        colour and size uniform over :data:`SHAPES`, :data:`COLOURS`, :data:`SIZES`;
        position uniform over the free, visible ground (rejection sampling).
    """
    _check_count_range(min_objects, max_objects)
    count = int(rng.integers(min_objects, max_objects + 1))
    colours, sizes = list(COLOURS), list(SIZES.values())
    x0, x1, z0, z1 = _WINDOW
    for _ in range(_RESTARTS):  # a crowded draw that cannot place an object starts again
        placed: list[SceneObject] = []
        for _ in range(count):
            shape = SHAPES[int(rng.integers(len(SHAPES)))]
            colour = colours[int(rng.integers(len(colours)))]
            size = sizes[int(rng.integers(len(sizes)))]
            angle = float(rng.uniform(0.0, math.pi / 2)) if shape == "cube" else 0.0
            for _ in range(_TRIES_PER_OBJECT):
                x, z = float(rng.uniform(x0, x1)), float(rng.uniform(z0, z1))
                obj = SceneObject(shape, colour, size, x, z, angle)
                if _fits(obj, placed):
                    placed.append(obj)
                    break
            else:
                break
        if len(placed) == count:
            return Scene(tuple(placed))
    # Not reached in practice: 10 objects take at most ~260 position draws (of 600).
    raise RuntimeError(f"could not place {count} objects in {_RESTARTS} attempts")


def scene_for(
    index: int, seed: int, *, min_objects: int = 3, max_objects: int = MAX_OBJECTS
) -> Scene:
    """Scene ``index`` of dataset ``seed`` (``min_objects..max_objects`` objects, 3..10 by
    default), from ``default_rng([seed, index])``."""
    for name, v in (("index", index), ("seed", seed)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 0:
            raise ValueError(f"{name} must be an int >= 0, got {v!r}")
    return sample_scene(
        np.random.default_rng([int(seed), int(index)]),
        min_objects=min_objects,
        max_objects=max_objects,
    )


def n_test_images(n: int, test_fraction: float) -> int:
    """How many of ``n`` images go to the test split: ``n * test_fraction``, half rounded up."""
    return math.floor(n * test_fraction + 0.5)


def write_shapes_dataset(
    out: Path,
    n: int,
    *,
    seed: int = 0,
    size: int = 32,
    test_fraction: float = 1 / 6,
    progress: bool = False,
    min_objects: int = 3,
    max_objects: int = MAX_OBJECTS,
) -> Path:
    """Render ``n`` scenes into an image-folder dataset that ``load_dataset`` reads.

    Layout: ``out/{train,test}/<count:02d>/<index:06d>.png`` (lossless PNG; two-digit class
    folders sort in numeric order, so ``load_dataset(out, split)`` labels are indices into
    the counts present in that split: ``count - 3`` once all eight occur),
    ``out/labels.csv`` (header ``split,file,count,nearest_depth``; ``file`` relative to
    ``out``; depth in world units with 4 decimals; rows in index order) and
    ``out/shapes.json`` (the settings), written last. Indices ``0..n - t - 1`` are train
    and the last ``t = n_test_images(n, test_fraction)`` are test (the scenes are i.i.d.,
    so a block split is unbiased).

    Args:
        out: a folder that does not exist yet or is empty.
        n: number of images, >= 1.
        seed: dataset seed, >= 0: image ``i`` is ``render_scene(scene_for(i, seed), size)``.
        size: image side in pixels, 32 or 64.
        test_fraction: share of images in the test split, in [0, 1).
        progress: show a tqdm progress bar.
        min_objects, max_objects: the range of object counts, within 1..10 (the renderer
            places at most 10 objects clear of each other and at least half visible).

    Returns:
        ``out``.
    """
    out = Path(out)
    check_image_size(size)
    _check_count_range(min_objects, max_objects)
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be an int >= 1 (number of images), got {n!r}")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be an int >= 0, got {seed!r}")
    if not 0 <= test_fraction < 1:
        raise ValueError(f"test_fraction must be in [0, 1), got {test_fraction!r}")
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ValueError(
            f"out {str(out)!r} already exists and is not an empty folder; pick a new or "
            "empty folder so that no old images mix with the new ones"
        )
    n_train = n - n_test_images(n, test_fraction)
    width = max(6, len(str(n - 1)))  # equal widths: file names sort in index order
    rows: list[tuple[str, str, int, str]] = []
    for i in tqdm(range(n), desc="shapes", unit="img", disable=not progress):
        scene = scene_for(i, seed, min_objects=min_objects, max_objects=max_objects)
        split = "train" if i < n_train else "test"
        file = f"{split}/{scene.count:02d}/{i:0{width}d}.png"
        path = out / file
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(render_scene(scene, size)).save(path, format="PNG")
        rows.append((split, file, scene.count, f"{scene.nearest_depth:.4f}"))
    with open(out / _LABELS, "w", newline="") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(("split", "file", "count", "nearest_depth"))
        writer.writerows(rows)
    settings = _settings(n, seed, size, n_train, (min_objects, max_objects))
    (out / "shapes.json").write_text(json.dumps(settings, indent=2))
    return out


def _settings(
    n: int, seed: int, size: int, n_train: int, counts: tuple[int, int]
) -> dict[str, object]:
    return {
        "generator": "selfsup.data.shapes",
        "renderer_version": RENDERER_VERSION,
        "seed": seed,
        "n": n,
        "n_train": n_train,
        "n_test": n - n_train,
        "split_rule": "indices 0..n_train-1 are train, the rest test",
        "scene_rng": "numpy.random.default_rng([seed, index])",
        "min_objects": counts[0],
        "max_objects": counts[1],
        "image_size": size,
        "supersample": SUPERSAMPLE,
        "supported_sizes": list(IMAGE_SIZES),
        "world": "x right, y up, z away from the camera; ground plane y = 0; world units",
        "camera": {
            "position": list(CAMERA.position),
            "look_at": list(CAMERA.look_at),
            "fov_deg": CAMERA.fov_deg,
            "model": "pinhole, square image, same field of view on both axes",
        },
        "light_dir": [round(float(v), 6) for v in LIGHT_DIR],
        "shapes": list(SHAPES),
        "colours": {k: list(v) for k, v in COLOURS.items()},
        "sizes": SIZES,
        "size_meaning": "footprint radius: sphere/cylinder radius, cube half-diagonal",
        "labels": {
            "count": f"number of objects, {counts[0]}..{counts[1]}; class folder <count:02d>",
            "nearest_depth": "Euclidean distance from the camera centre to the nearest "
            "object's centre (middle of its bounding box), world units",
        },
    }


def read_shapes_labels(out: Path, split: str) -> tuple[list[str], torch.Tensor, torch.Tensor]:
    """The labels of one split, in the order ``load_dataset(out, split)`` returns images.

    Args:
        out: a folder written by :func:`write_shapes_dataset`.
        split: "train" or "test".

    Returns:
        files (relative to ``out``), counts (N,) int64 and nearest depths (N,) float32
        (world units), sorted like ``load_dataset``: class folder, then file name.
    """
    path = Path(out) / _LABELS
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: is {out} a shapes dataset?")
    with open(path, newline="") as f:
        every = list(csv.DictReader(f))
    rows = [r for r in every if r["split"] == split]
    if not rows:
        present = sorted({r["split"] for r in every})
        raise ValueError(f"split {split!r} has no images in {path}; it has {', '.join(present)}")
    rows.sort(key=lambda r: r["file"].split("/")[1:])  # (class folder, file name)
    counts = torch.tensor([int(r["count"]) for r in rows], dtype=torch.int64)
    depths = torch.tensor([float(r["nearest_depth"]) for r in rows], dtype=torch.float32)
    return [r["file"] for r in rows], counts, depths


__all__ = [
    "COLOURS",
    "MAX_OBJECTS",
    "SHAPES",
    "SIZES",
    "Scene",
    "SceneObject",
    "n_test_images",
    "read_shapes_labels",
    "render_scene",
    "sample_scene",
    "scene_for",
    "write_shapes_dataset",
]
