"""The renderer of the synthetic "shapes" scenes (see :mod:`.shapes`): drawing only.

Holds :func:`render_scene`, its private helpers and the lighting constants; the scene it
draws (objects, world frame, :data:`~selfsup.data.shapes_scene.CAMERA`) is described in
:mod:`.shapes_scene`.

Rendering is a painter's algorithm, far objects first, on a canvas
:data:`SUPERSAMPLE` times the output size, box-filtered down for anti-aliasing. Shading
is Lambertian from one directional light (:data:`LIGHT_DIR`) plus an ambient term:
cubes are their visible faces as projected polygons of their real 3-D corners,
cylinders their visible side facets and top disc, spheres are ray-cast per pixel
(exact silhouette and normals, with a small specular highlight). Each object casts a
soft dark shadow on the ground, drawn before any object.
"""

from __future__ import annotations

import functools
import math

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from selfsup.data.shapes_scene import CAMERA, COLOURS, Scene, SceneObject, _unit, view_order

#: Bump when a change alters the pixels of an already-published (seed, index).
RENDERER_VERSION = 1
#: Output sizes (square, in pixels) that :func:`render_scene` supports.
IMAGE_SIZES: tuple[int, ...] = (32, 64)
#: Canvas side / output side: each output pixel averages SUPERSAMPLE x SUPERSAMPLE samples.
SUPERSAMPLE = 4

#: Unit vector towards the (directional) light: above, left and in front of the scene.
LIGHT_DIR: np.ndarray = _unit((-0.55, 1.0, -0.5))
AMBIENT = 0.38  # share of the base colour lit by ambient light alone
DIFFUSE = 0.72  # Lambertian weight: a face turned to the light gets AMBIENT + DIFFUSE
_SPECULAR = 0.22  # spheres only: highlight weight and sharpness (Blinn-Phong)
_SHININESS = 40.0
_GROUND_RGB = np.array([152.0, 150.0, 146.0])
_SHADOW_DARKNESS = 0.55  # ground colour under a full shadow, relative to the lit ground
_CYLINDER_SEGMENTS = 36


def check_image_size(size: int) -> None:
    """Raise ValueError unless ``size`` is one of :data:`IMAGE_SIZES`."""
    if isinstance(size, bool) or size not in IMAGE_SIZES:
        raise ValueError(f"size must be one of {IMAGE_SIZES} (pixels), got {size!r}")


def render_scene(scene: Scene, size: int) -> np.ndarray:
    """Render ``scene`` as seen by :data:`CAMERA`.

    Args:
        scene: what to draw.
        size: output side in pixels, one of :data:`IMAGE_SIZES`.

    Returns:
        (size, size, 3) uint8 RGB, rows top to bottom. Deterministic: the same scene and
        size give the same pixels.
    """
    check_image_size(size)
    side = size * SUPERSAMPLE
    ground, dark = _ground(side)
    mask = Image.new("L", (side, side), 0)
    draw = ImageDraw.Draw(mask)
    for obj in scene.objects:
        draw.polygon(_shadow_polygon(obj, side), fill=255)
    # Blur width ~ one output pixel: soft edges that do not depend on the output size.
    canvas = Image.composite(dark, ground, mask.filter(ImageFilter.BoxBlur(SUPERSAMPLE * 0.75)))
    draw = ImageDraw.Draw(canvas)
    for obj in sorted(scene.objects, key=view_order, reverse=True):  # painter's: far first
        if obj.shape == "sphere":
            _draw_sphere(canvas, obj, side)
        elif obj.shape == "cube":
            _draw_cube(draw, obj, side)
        else:
            _draw_cylinder(draw, obj, side)
    return np.array(canvas.resize((size, size), Image.Resampling.BOX), dtype=np.uint8)


@functools.lru_cache(maxsize=4)
def _ground(side: int) -> tuple[Image.Image, Image.Image]:
    """The lit ground plane and the same ground in full shadow, (side, side) RGB images.

    Brightness falls off gently with distance from a bright spot left of the scene centre
    (a large soft light), so the plane reads as a plane in perspective.
    """
    d = _rays(side)
    cam = np.asarray(CAMERA.position)
    t = -cam[1] / d[..., 1]  # every ray hits y = 0: the image has no horizon
    hit = cam + t[..., None] * d
    r2 = (hit[..., 0] + 1.5) ** 2 + (hit[..., 2] - 0.5) ** 2
    light = 0.72 + 0.38 * np.exp(-r2 / 40.0)
    lit = _GROUND_RGB * light[..., None]
    images = (lit, lit * _SHADOW_DARKNESS)
    a, b = (Image.fromarray(np.clip(np.rint(x), 0, 255).astype(np.uint8)) for x in images)
    return a, b


_ANGLES = np.linspace(0, 2 * math.pi, _CYLINDER_SEGMENTS + 1)
_RING = np.stack([np.cos(_ANGLES), 0 * _ANGLES, np.sin(_ANGLES)], 1)  # closed unit circle
_MID = (_ANGLES[:-1] + _ANGLES[1:]) / 2
_UP = np.array([0.0, 1.0, 0.0])
_RING_MID = np.stack([np.cos(_MID), 0 * _MID, np.sin(_MID)], 1)  # side facets' normals


def _rgb(c: np.ndarray) -> tuple[int, int, int]:
    r, g, b = (min(255, round(float(v))) for v in c)
    return r, g, b


def _shade(colour: str, normal: np.ndarray) -> tuple[int, int, int]:
    """Flat Lambertian colour of a facet with unit ``normal`` (3,)."""
    k = AMBIENT + DIFFUSE * max(0.0, float(normal @ LIGHT_DIR))
    return _rgb(np.asarray(COLOURS[colour], dtype=np.float64) * k)


def _shadow_polygon(obj: SceneObject, side: int) -> list[tuple[float, float]]:
    """Ground ellipse under ``obj``, shifted away from the light (a cheap cast shadow)."""
    a = np.linspace(0, 2 * math.pi, 24, endpoint=False)
    away = -LIGHT_DIR[[0, 2]] / LIGHT_DIR[1] * obj.half_height * 0.6
    r = obj.size * 1.05
    pts = np.stack([obj.x + away[0] + r * np.cos(a), 0 * a, obj.z + away[1] + r * np.sin(a)], 1)
    return [(u, v) for u, v in CAMERA.project(pts, side).tolist()]


# Cube corners as signs along its own axes (index 4 sx + 2 sy + sz for signs > 0), and its
# faces as (outward normal in cube axes, corners in cyclic order); the bottom never shows.
_CUBE_SIGNS = np.array([(x, y, z) for x in (-1, 1) for y in (-1, 1) for z in (-1, 1)], float)
_CUBE_FACES = (
    (np.array([1.0, 0, 0]), (4, 5, 7, 6)),
    (np.array([-1.0, 0, 0]), (0, 1, 3, 2)),
    (np.array([0, 1.0, 0]), (2, 3, 7, 6)),
    (np.array([0, 0, 1.0]), (1, 3, 7, 5)),
    (np.array([0, 0, -1.0]), (0, 2, 6, 4)),
)


def _draw_cube(draw: ImageDraw.ImageDraw, obj: SceneObject, side: int) -> None:
    h = obj.half_height
    c, s = math.cos(obj.angle), math.sin(obj.angle)
    axes = np.array([[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]])  # rows: the cube's x, y, z
    centre = np.asarray(obj.centre)
    uv = CAMERA.project(centre + h * _CUBE_SIGNS @ axes, side).tolist()
    for local, quad in _CUBE_FACES:
        n = local @ axes
        if n @ (np.asarray(CAMERA.position) - centre - h * n) > 0:  # faces the camera
            draw.polygon([tuple(uv[j]) for j in quad], fill=_shade(obj.colour, n))


def _draw_cylinder(draw: ImageDraw.ImageDraw, obj: SceneObject, side: int) -> None:
    base = np.array([obj.x, 0.0, obj.z])
    height = np.array([0.0, 2 * obj.half_height, 0.0])
    rims = np.concatenate([base + obj.size * _RING, base + height + obj.size * _RING])
    uv = CAMERA.project(rims, side).tolist()  # (2 (k + 1), 2): bottom rim, then top rim
    k = _CYLINDER_SEGMENTS
    to_camera = np.asarray(CAMERA.position) - (base + height / 2 + obj.size * _RING_MID)
    facing = (to_camera * _RING_MID).sum(1) > 0  # facet i's normal is _RING_MID[i]
    lit = AMBIENT + DIFFUSE * np.maximum(0.0, _RING_MID @ LIGHT_DIR)
    rgb = np.asarray(COLOURS[obj.colour], dtype=np.float64)
    # The side facets that face the camera do not overlap each other: any order works.
    for i in np.flatnonzero(facing).tolist():
        quad = [uv[i], uv[i + 1], uv[k + 2 + i], uv[k + 1 + i]]
        draw.polygon([tuple(p) for p in quad], fill=_rgb(rgb * lit[i]))
    draw.polygon([tuple(p) for p in uv[k + 1 : -1]], fill=_shade(obj.colour, _UP))


def _draw_sphere(canvas: Image.Image, obj: SceneObject, side: int) -> None:
    """Ray-cast the sphere inside its projected bounding box and paste it onto ``canvas``."""
    uv = CAMERA.project(obj.box_corners(), side)
    x0, y0 = (max(0, math.floor(v)) for v in uv.min(0))
    x1, y1 = (min(side, math.ceil(v)) for v in uv.max(0))
    if x0 >= x1 or y0 >= y1:
        return
    d = _rays(side)[y0:y1, x0:x1]
    oc = np.asarray(CAMERA.position) - np.asarray(obj.centre)
    b = d @ oc
    disc = b * b - (oc @ oc - obj.size**2)  # ray |cam + t d - centre| = size, d unit
    hit = disc > 0
    t = -b - np.sqrt(np.maximum(disc, 0.0))
    n = (oc + t[..., None] * d) / obj.size
    half = d * -1 + LIGHT_DIR  # Blinn-Phong half vector (towards viewer + towards light)
    half /= np.linalg.norm(half, axis=-1, keepdims=True)
    diffuse = AMBIENT + DIFFUSE * np.maximum(0.0, n @ LIGHT_DIR)
    spec = _SPECULAR * 255 * np.maximum(0.0, np.sum(n * half, -1)) ** _SHININESS
    rgb = np.asarray(COLOURS[obj.colour], dtype=np.float64) * diffuse[..., None] + spec[..., None]
    patch = Image.fromarray(np.clip(np.rint(rgb), 0, 255).astype(np.uint8))
    canvas.paste(patch, (x0, y0), Image.fromarray((hit * 255).astype(np.uint8)))


@functools.lru_cache(maxsize=4)
def _rays(side: int) -> np.ndarray:
    """:meth:`Camera.rays` of :data:`CAMERA`, cached per canvas side (read-only)."""
    r = CAMERA.rays(side)
    r.flags.writeable = False
    return r
