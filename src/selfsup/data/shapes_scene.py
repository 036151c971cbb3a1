"""The world of the synthetic "shapes" scenes (see :mod:`.shapes`): what there is to draw.

Holds the scene description, with no drawing: the object vocabulary (:data:`SHAPES`,
:data:`COLOURS`, :data:`SIZES`), :class:`SceneObject` and :class:`Scene`, the pinhole
:class:`Camera` and the one :data:`CAMERA` every image uses, and :func:`view_order`. The
renderer is :mod:`.shapes_render`.

World frame, in world units (arbitrary, as in CLEVR: a large sphere has radius 0.7):
``x`` to the right, ``y`` up, ``z`` away from the viewer. The ground is the plane
``y = 0`` and every object stands on it. The camera (:data:`CAMERA`) is a pinhole at
(0, 7.5, -5.5) looking at (0, 0, 1.2), i.e. above and in front of the scene and down at
48 degrees (like CLEVR's), with a square image and a 40-degree field of view along both
axes; there is no lens distortion and no horizon in the picture.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Literal

import numpy as np
from numpy.typing import ArrayLike

Shape = Literal["sphere", "cube", "cylinder"]
SHAPES: tuple[Shape, ...] = ("sphere", "cube", "cylinder")
#: The eight CLEVR colours (sRGB, 0..255).
COLOURS: dict[str, tuple[int, int, int]] = {
    "gray": (87, 87, 87),
    "red": (173, 35, 35),
    "blue": (42, 75, 215),
    "green": (29, 105, 20),
    "brown": (129, 74, 25),
    "purple": (129, 38, 192),
    "cyan": (41, 208, 208),
    "yellow": (255, 238, 51),
}
#: Object sizes (footprint radius, world units), as named in :file:`shapes.json`.
SIZES: dict[str, float] = {"small": 0.4, "medium": 0.55, "large": 0.7}

_Vec = tuple[float, float, float]


def _unit(v: _Vec) -> np.ndarray:
    a = np.asarray(v, dtype=np.float64)
    return a / np.linalg.norm(a)


@dataclass(frozen=True)
class Camera:
    """A pinhole camera with a square image.

    Attributes:
        position: camera centre (x, y, z), world units.
        look_at: the world point on the optical axis (projects to the image centre).
        fov_deg: full field of view in degrees, the same horizontally and vertically.
    """

    position: _Vec
    look_at: _Vec
    fov_deg: float

    @functools.cached_property
    def basis(self) -> np.ndarray:
        """(3, 3) float64 rows: right, up and forward unit vectors in world coordinates."""
        forward = _unit(tuple(np.subtract(self.look_at, self.position)))
        right = np.cross((0.0, 1.0, 0.0), forward)  # x-ish: world y up, z away
        right /= np.linalg.norm(right)
        return np.stack([right, np.cross(forward, right), forward])

    @property
    def focal(self) -> float:
        """Focal length in units of the image side (image coordinates run over [0, 1])."""
        return 0.5 / math.tan(math.radians(self.fov_deg) / 2)

    def to_camera(self, points: ArrayLike) -> np.ndarray:
        """World points (..., 3) -> camera coordinates (..., 3): right, up, depth along axis."""
        return (np.asarray(points, dtype=np.float64) - np.asarray(self.position)) @ self.basis.T

    def project(self, points: ArrayLike, side: float = 1.0) -> np.ndarray:
        """World points (..., 3) -> image coordinates (..., 2), (column, row) in [0, side].

        (0, 0) is the top-left corner of the image and (side, side) the bottom-right one;
        points behind the camera are not handled (the scenes never have any).
        """
        c = self.to_camera(points)
        scale = self.focal * side / c[..., 2]
        return np.stack([side / 2 + c[..., 0] * scale, side / 2 - c[..., 1] * scale], axis=-1)

    def rays(self, side: int) -> np.ndarray:
        """(side, side, 3) float64 unit ray directions (world) through each pixel's centre."""
        t = (np.arange(side) + 0.5) / side - 0.5  # image coordinate minus centre, in sides
        right, up, forward = self.basis
        d = (
            forward * self.focal
            + t[None, :, None] * right
            - t[:, None, None] * up  # rows grow downwards, up grows upwards
        )
        return d / np.linalg.norm(d, axis=-1, keepdims=True)


#: The camera of every shapes image: 7.5 units above the ground, 5.5 units in front of
#: the scene's origin, looking down at about 48 degrees.
CAMERA = Camera(position=(0.0, 7.5, -5.5), look_at=(0.0, 0.0, 1.2), fov_deg=40.0)


@dataclass(frozen=True)
class SceneObject:
    """One object standing on the ground plane.

    Attributes:
        shape: "sphere", "cube" or "cylinder".
        colour: a key of :data:`COLOURS`.
        size: radius of the object's footprint circle on the ground, world units: a
            sphere's radius, a cylinder's radius (its height is ``2 * size``), a cube's
            half-diagonal (half-extent ``size / sqrt(2)``, as in CLEVR). Two objects whose
            centres are at least the sum of their sizes apart never intersect.
        x: ground position of the centre, world units (right of the origin).
        z: ground position of the centre, world units (away from the camera).
        angle: rotation about the vertical axis, radians (cubes only; others ignore it).
    """

    shape: Shape
    colour: str
    size: float
    x: float
    z: float
    angle: float = 0.0

    def __post_init__(self) -> None:
        if self.shape not in SHAPES:
            raise ValueError(f"shape must be one of {', '.join(SHAPES)}, got {self.shape!r}")
        if self.colour not in COLOURS:
            raise ValueError(f"colour must be one of {', '.join(COLOURS)}, got {self.colour!r}")
        values = (self.size, self.x, self.z, self.angle)
        if not all(math.isfinite(v) for v in values) or self.size <= 0:
            raise ValueError(f"size must be > 0 and x, z, angle finite, got {values}")

    @property
    def half_height(self) -> float:
        """Half the object's height, world units (its centre's height above the ground)."""
        return self.size / math.sqrt(2) if self.shape == "cube" else self.size

    @property
    def centre(self) -> tuple[float, float, float]:
        """The object's 3-D centre (x, y, z), world units."""
        return (self.x, self.half_height, self.z)

    @property
    def depth(self) -> float:
        """Euclidean distance from the camera centre to the object's centre, world units."""
        return math.dist(self.centre, CAMERA.position)

    def box_corners(self) -> np.ndarray:
        """(8, 3) corners of an axis-aligned box that holds the object (world units)."""
        s, h = self.size, 2 * self.half_height
        return np.array(
            [(self.x + dx, y, self.z + dz) for dx in (-s, s) for y in (0.0, h) for dz in (-s, s)]
        )


@dataclass(frozen=True)
class Scene:
    """Objects on the ground plane, in drawing order of no importance (labels use none).

    Attributes:
        objects: the objects; an empty tuple renders the bare ground.
    """

    objects: tuple[SceneObject, ...]

    @property
    def count(self) -> int:
        """Number of objects (the counting label)."""
        return len(self.objects)

    @property
    def nearest_depth(self) -> float:
        """Distance from the camera centre to the nearest object's centre, world units.

        ``inf`` for an empty scene.
        """
        return min((o.depth for o in self.objects), default=math.inf)


def view_order(obj: SceneObject) -> float:
    """Sort key, nearer objects first: nothing drawn later can be hidden by one drawn earlier.

    Every object lies inside the upright cylinder over its footprint disc, and a camera
    ray seen from above is a ground ray from the camera's foot point, so the order is
    that of the disjoint footprint discs along ground rays: the power of the foot point
    (squared distance to the disc's centre minus squared radius) orders disjoint discs
    correctly, which the distance of 3-D centres does not (a tall object just behind a
    short one can have the nearer centre).
    """
    cx, _, cz = CAMERA.position
    return (obj.x - cx) ** 2 + (obj.z - cz) ** 2 - obj.size**2
