"""The synthetic counting-and-depth dataset: determinism, labels, rendering, folder layout."""

from __future__ import annotations

import csv
import itertools
import json
import math
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from selfsup.data.datasets import load_dataset
from selfsup.data.shapes import (
    Scene,
    SceneObject,
    read_shapes_labels,
    render_scene,
    sample_scene,
    scene_for,
    write_shapes_dataset,
)
from selfsup.data.shapes_scene import CAMERA, SHAPES, Shape

# The documented camera, restated here so that the depth label is checked independently.
CAMERA_CENTRE = (0.0, 7.5, -5.5)


def scenes(n: int, seed: int = 0) -> list[Scene]:
    rng = np.random.default_rng(seed)
    return [sample_scene(rng) for _ in range(n)]


def covered(scene: Scene, size: int = 64) -> int:
    """Pixels that differ visibly from the bare ground's render."""
    diff = np.abs(render_scene(scene, size).astype(int) - render_scene(Scene(()), size))
    return int((diff.max(-1) > 8).sum())


def png(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        return np.array(im.convert("RGB"))


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_shapes_dataset(tmp_path_factory.mktemp("shapes") / "d", 30, seed=3, size=32)


def test_scene_for_is_deterministic_in_any_order_and_depends_on_the_seed() -> None:
    later = scene_for(7, 0)
    first = [scene_for(i, 0) for i in range(8)]
    assert first[7] == later == scene_for(7, 0)
    assert np.array_equal(render_scene(first[7], 32), render_scene(later, 32))
    assert scene_for(7, 1) != later
    assert not np.array_equal(render_scene(scene_for(7, 1), 32), render_scene(later, 32))


def test_writing_twice_gives_identical_files(tmp_path: Path, dataset: Path) -> None:
    again = write_shapes_dataset(tmp_path / "again", 30, seed=3, size=32)
    for name in ("labels.csv", "shapes.json"):
        assert (again / name).read_bytes() == (dataset / name).read_bytes()
    files = sorted(p.relative_to(dataset) for p in dataset.rglob("*.png"))
    assert files == sorted(p.relative_to(again) for p in again.rglob("*.png"))
    assert len(files) == 30
    for f in files:
        assert np.array_equal(png(dataset / f), png(again / f))
    # A file is its scene's render: any image can be regenerated alone.
    assert np.array_equal(
        png(dataset / files[4]), render_scene(scene_for(int(files[4].stem), 3), 32)
    )


def test_counts_cover_3_to_10_and_respect_the_range() -> None:
    assert {s.count for s in scenes(300)} == set(range(3, 11))
    rng = np.random.default_rng(1)
    assert {sample_scene(rng, min_objects=1, max_objects=2).count for _ in range(40)} == {1, 2}


def test_nearest_depth_is_the_distance_from_the_camera_to_the_nearest_centre() -> None:
    assert CAMERA.position == CAMERA_CENTRE
    for scene in scenes(50):
        depths = []
        for o in scene.objects:
            # Objects stand on y = 0; a cube's half-extent is its footprint radius / sqrt 2.
            centre_y = o.size / math.sqrt(2) if o.shape == "cube" else o.size
            depths.append(math.dist((o.x, centre_y, o.z), CAMERA_CENTRE))
        assert scene.nearest_depth == pytest.approx(min(depths), abs=1e-12)
    assert Scene(()).nearest_depth == math.inf


def test_objects_never_intersect_and_stay_in_the_picture() -> None:
    for scene in scenes(200, seed=2):
        for a, b in itertools.combinations(scene.objects, 2):
            # Each object lies inside the vertical cylinder of radius `size` over its
            # centre, and all stand on the ground: disjoint footprints cannot intersect.
            assert math.hypot(a.x - b.x, a.z - b.z) >= a.size + b.size
        for o in scene.objects:
            uv = CAMERA.project(o.box_corners())
            assert uv.min() >= 0 and uv.max() <= 1


@pytest.mark.parametrize("size", [32, 64])
def test_render_shape_dtype_and_content(size: int) -> None:
    scene = scene_for(0, 0)
    img = render_scene(scene, size)
    assert img.shape == (size, size, 3) and img.dtype == np.uint8
    assert img.std() > 5  # not constant
    ground = render_scene(Scene(()), size)
    assert ground.std() > 0.5  # the ground has a soft gradient
    assert not np.array_equal(img, ground)


def test_more_objects_change_more_pixels() -> None:
    scene = scene_for(2, 0)
    assert scene.count >= 3
    fewer = Scene(scene.objects[:1])
    assert 0 < covered(fewer) < covered(scene)


@pytest.mark.parametrize("shape", SHAPES)
def test_a_nearer_object_covers_more_pixels(shape: Shape) -> None:
    near = SceneObject(shape, "red", 0.55, 0.5, -1.0, 0.3)
    far = SceneObject(shape, "red", 0.55, 0.5, 4.0, 0.3)
    for o in (near, far):
        uv = CAMERA.project(o.box_corners())
        assert uv.min() > 0 and uv.max() < 1
    assert Scene((near,)).nearest_depth < Scene((far,)).nearest_depth
    assert covered(Scene((near,))) > 1.5 * covered(Scene((far,)))


def test_folder_layout_labels_and_order(dataset: Path) -> None:
    train = load_dataset(dataset, "train", cache_dir=False)
    test = load_dataset(dataset, "test", cache_dir=False)
    assert len(train) == 25 and len(test) == 5  # the last round(30 / 6) indices are test
    # Seed 3 puts every count in train, so the labels there are count - 3 exactly.
    assert train.classes == tuple(f"{c:02d}" for c in range(3, 11))
    for split, data in (("train", train), ("test", test)):
        files, counts, depths = read_shapes_labels(dataset, split)
        assert counts.dtype == torch.int64 and depths.dtype == torch.float32
        assert data.labels is not None
        assert counts.tolist() == [int(data.classes[i]) for i in data.labels]
        # The same order as load_dataset: the listed files are its images, one by one.
        mine = torch.stack([torch.from_numpy(png(dataset / f)).permute(2, 0, 1) for f in files])
        assert torch.equal(mine, data.images)
        indices = [int(Path(f).stem) for f in files]
        assert all((i >= 25) == (split == "test") for i in indices)
        expected = [scene_for(i, 3) for i in indices]
        assert counts.tolist() == [s.count for s in expected]
        assert depths.tolist() == pytest.approx([s.nearest_depth for s in expected], abs=1e-4)
    assert torch.equal(train.labels, read_shapes_labels(dataset, "train")[1] - 3)
    with open(dataset / "labels.csv", newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["split", "file", "count", "nearest_depth"]
    assert [int(Path(r[1]).stem) for r in rows[1:]] == list(range(30))
    assert all(r[1] == f"{r[0]}/{int(r[2]):02d}/{Path(r[1]).name}" for r in rows[1:])


def bad_calls(tmp: Path) -> list[tuple[str, object, Callable[[], object]]]:
    (tmp / "full").mkdir()
    (tmp / "full" / "x.txt").write_text("x")
    rng = np.random.default_rng(0)
    return [
        ("size", 48, lambda: render_scene(scene_for(0, 0), 48)),
        ("size", 128, lambda: write_shapes_dataset(tmp / "a", 5, size=128)),
        ("n", 0, lambda: write_shapes_dataset(tmp / "b", 0)),
        ("min_objects", 0, lambda: sample_scene(rng, min_objects=0)),
        ("min_objects", 11, lambda: sample_scene(rng, min_objects=11, max_objects=11)),
        ("max_objects", 11, lambda: sample_scene(rng, max_objects=11)),
        ("max_objects", 2, lambda: sample_scene(rng, min_objects=3, max_objects=2)),
        ("test_fraction", 1.0, lambda: write_shapes_dataset(tmp / "c", 5, test_fraction=1.0)),
        ("test_fraction", -0.1, lambda: write_shapes_dataset(tmp / "d", 5, test_fraction=-0.1)),
        ("out", "full", lambda: write_shapes_dataset(tmp / "full", 5)),
        ("index", -1, lambda: scene_for(-1, 0)),
        ("seed", -2, lambda: scene_for(0, -2)),
        ("split", "val", lambda: read_shapes_labels(tmp / "ok", "val")),
        ("max_objects", 12, lambda: write_shapes_dataset(tmp / "e", 5, max_objects=12)),
        ("min_objects", 0, lambda: write_shapes_dataset(tmp / "f", 5, min_objects=0)),
    ]


def test_bad_inputs_raise_value_errors_that_name_them(tmp_path: Path) -> None:
    write_shapes_dataset(tmp_path / "ok", 2, test_fraction=0.0)
    for name, value, call in bad_calls(tmp_path):
        with pytest.raises(ValueError, match=name) as info:
            call()
        # Refused before any image is written.
        assert not any((tmp_path / x).exists() for x in "abcdef"), name
        assert str(value) in str(info.value), (name, str(info.value))
        assert name != "out" or "empty folder" in str(info.value)


def test_a_narrower_count_range_is_kept_and_recorded(tmp_path: Path) -> None:
    out = write_shapes_dataset(tmp_path / "d", 12, min_objects=1, max_objects=2)
    _, counts, _ = read_shapes_labels(out, "train")
    assert set(counts.tolist()) <= {1, 2}
    settings = json.loads((out / "shapes.json").read_text())
    assert (settings["min_objects"], settings["max_objects"]) == (1, 2)
    # The default range draws the same scenes as before the option existed.
    assert scene_for(5, 0) == scene_for(5, 0, min_objects=3, max_objects=10)
