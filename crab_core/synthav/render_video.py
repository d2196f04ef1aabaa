"""Render a :class:`~crab_core.synthav.world.Scene` to frames and per-object masks (numpy only).

Objects are static inside the clip (they only appear / disappear at whole seconds), so one frame
per second is enough: :func:`render_video` returns the n frames at t = 0..n-1 s of an n-second clip
(n = 10, or 5 for S4 / MS3 / ARIG), which are exactly the frames the reference samples from the
8-fps video (indices ``arange(0, 8 n, 8)``). The mp4
repeats each of them ``FPS`` times. Every shape is an implicit function evaluated on a rotated
sprite grid, so drawing is vectorised and a 112-px clip takes well under a millisecond.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .world import SLOTS, Scene, SceneObject

#: Base RGB colour per class.
COLORS: dict[str, tuple[int, int, int]] = {
    "guitar": (255, 140, 0),
    "violin": (200, 30, 40),
    "flute": (0, 210, 230),
    "drum": (140, 85, 40),
    "piano": (240, 240, 240),
    "trumpet": (250, 225, 40),
    "bell": (212, 170, 50),
    "dog": (135, 135, 135),
    "car": (40, 80, 225),
    "bird": (40, 190, 70),
}
_DETAIL = {"drum": (225, 205, 160)}
_DARK = (25, 25, 25)
_SLOT_X = {"left": 1 / 6, "middle": 1 / 2, "right": 5 / 6}
assert set(_SLOT_X) == set(SLOTS)

#: Reference frame size of box coordinates (ARIG answers are in 224-pixel coordinates).
BOX_FRAME = 224


def _disc(u, v, cu, cv, r):
    return (u - cu) ** 2 + (v - cv) ** 2 <= r * r


def _shape(cls: str, u: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Body and detail masks of a class on a grid ``u`` (right), ``v`` (down) in [-1, 1]."""
    if cls == "guitar":
        body = (v >= -0.85) & (v <= 0.8) & (np.abs(u) <= (v + 0.85) / 1.65 * 0.85)
        return body, _disc(u, v, 0, 0.35, 0.18)
    if cls == "violin":
        body = (u / 0.55) ** 2 + (v / 0.9) ** 2 <= 1
        return body, (np.abs(u) < 0.05) & (np.abs(v) < 0.6)
    if cls == "flute":
        body = (np.abs(u) <= 0.95) & (np.abs(v) <= 0.14)
        holes = np.zeros_like(body)
        for cu in (-0.4, -0.1, 0.2, 0.5):
            holes |= _disc(u, v, cu, 0.0, 0.07)
        return body, holes
    if cls == "drum":
        r2 = u * u + v * v
        return r2 <= 0.85**2, r2 > 0.68**2
    if cls == "piano":
        body = (np.abs(u) <= 0.9) & (np.abs(v) <= 0.6)
        return body, (((u + 0.9) * 5) % 1.0 < 0.3) & (v < 0.15)
    if cls == "trumpet":
        body = (np.abs(u) <= 0.9) & (np.abs(v) <= 0.1 + 0.6 * ((u + 0.9) / 1.8) ** 2)
        return body, (u < -0.75) & body
    if cls == "bell":
        rho, theta = np.hypot(u, v), np.arctan2(v, u) + np.pi / 2
        return rho <= 0.42 + 0.5 * ((np.cos(5 * theta) + 1) / 2) ** 2, rho < 0.12
    if cls == "dog":
        body = (((u + 0.1) / 0.65) ** 2 + ((v - 0.15) / 0.45) ** 2 <= 1) | _disc(u, v, 0.55, -0.35, 0.3)
        return body, _disc(u, v, 0.62, -0.42, 0.07)
    if cls == "car":
        wheels = _disc(u, v, -0.5, 0.45, 0.25) | _disc(u, v, 0.5, 0.45, 0.25)
        body = ((np.abs(u) <= 0.9) & (np.abs(v) <= 0.35)) | ((np.abs(u) <= 0.45) & (v >= -0.7) & (v < -0.35))
        return body | wheels, wheels
    if cls == "bird":
        body = (np.abs(u) / 0.9 + np.abs(v) / 0.45 <= 1) | (
            (v <= 0) & (v >= -0.8) & (np.abs(u + 0.1) <= (v + 0.8) * 0.5)
        )
        return body, _disc(u, v, 0.5, -0.05, 0.09)
    raise ValueError(f"unknown class {cls!r}")


@dataclass(frozen=True)
class Sprite:
    """An object's drawing: top-left corner in the frame, boolean mask ``(h, w)``, RGB ``(h, w, 3)``."""

    y0: int
    x0: int
    mask: np.ndarray
    rgb: np.ndarray


def object_sprite(obj: SceneObject, size: int) -> Sprite:
    """Rasterise an on-screen object for a ``size`` x ``size`` frame (clipped to the frame)."""
    n = max(4, round(obj.size * size))
    g = (np.arange(n, dtype=np.float32) + 0.5) / n * 2 - 1
    x, y = np.meshgrid(g, g)
    a = np.deg2rad(obj.angle)
    u, v = np.cos(a) * x + np.sin(a) * y, -np.sin(a) * x + np.cos(a) * y
    body, detail = _shape(obj.cls, u, v)
    base = np.array(COLORS[obj.cls], np.float32) * obj.shade
    light = (1.0 - 0.12 * v)[..., None]
    rgb = np.where(
        detail[..., None] & body[..., None], np.array(_DETAIL.get(obj.cls, _DARK), np.float32), base * light
    )
    rgb = np.clip(rgb, 0, 255).astype(np.uint8)
    y0 = round(obj.y * size - n / 2)
    x0 = round(_SLOT_X[obj.slot] * size - n / 2)
    top, left = max(0, -y0), max(0, -x0)
    bottom, right = min(n, size - y0), min(n, size - x0)
    return Sprite(y0 + top, x0 + left, body[top:bottom, left:right], rgb[top:bottom, left:right])


def render_background(scene: Scene, size: int) -> np.ndarray:
    """Background image ``(size, size, 3)`` uint8: colour plus one of 5 textures."""
    bg = scene.background
    g = (np.arange(size, dtype=np.float32) + 0.5) / size
    x, y = g[None, :], g[:, None]
    fx, fy = bg.freq
    pattern = [
        np.zeros((1, 1), np.float32),
        (x - 0.5) + 0 * y,
        (y - 0.5) + 0 * x,
        np.sin(2 * np.pi * (fx * x + fy * y) + bg.phase),
        np.sin(2 * np.pi * fx * x + bg.phase) * np.sin(2 * np.pi * fy * y),
    ][bg.texture]
    img = (
        np.asarray(bg.color, np.float32)[None, None, :]
        + bg.amount * np.broadcast_to(pattern, (size, size))[..., None]
    )
    return (np.clip(img, 0, 1) * 255 + 0.5).astype(np.uint8)


@dataclass(frozen=True)
class VideoRender:
    """Rendered clip.

    Attributes:
        frames: ``(n, S, S, 3)`` uint8, the frame of each second of an n-second clip.
        masks: ``(num_objects, S, S)`` bool, each object's full-frame mask where it stands
            (all False for off-screen sources); the mask at second t is ``mask_at(i, t)``.
        visible: ``(num_objects, n)`` bool.
    """

    frames: np.ndarray
    masks: np.ndarray
    visible: np.ndarray

    def mask_at(self, i: int, t: int) -> np.ndarray:
        """Mask ``(S, S)`` bool of object ``i`` in the frame of second ``t`` (empty when not visible)."""
        return self.masks[i] & self.visible[i, t]


def render_video(scene: Scene, size: int = 224) -> VideoRender:
    """Draw the per-second frames (``scene.num_seconds`` of them) and the object masks of a scene."""
    frames = np.broadcast_to(render_background(scene, size), (scene.num_seconds, size, size, 3)).copy()
    masks = np.zeros((len(scene.objects), size, size), dtype=bool)
    visible = np.array([o.visible for o in scene.objects], dtype=bool).reshape(len(scene.objects), -1)
    for i, obj in enumerate(scene.objects):
        if not obj.onscreen:
            continue
        sp = object_sprite(obj, size)
        h, w = sp.mask.shape
        masks[i, sp.y0 : sp.y0 + h, sp.x0 : sp.x0 + w] = sp.mask
        region = frames[visible[i], sp.y0 : sp.y0 + h, sp.x0 : sp.x0 + w]
        frames[visible[i], sp.y0 : sp.y0 + h, sp.x0 : sp.x0 + w] = np.where(
            sp.mask[..., None], sp.rgb, region
        )
    return VideoRender(frames=frames, masks=masks, visible=visible)


def mask_box(mask: np.ndarray, frame: int = BOX_FRAME) -> list[int]:
    """Box ``[x1, y1, x2, y2]`` of a non-empty mask in ``frame``-pixel coordinates.

    ``(x1, y1)`` is the top-left pixel and ``(x2, y2)`` is one past the bottom-right pixel, so the box
    covers ``[x1, x2) x [y1, y2)``; coordinates are scaled from the mask's size to ``frame``.
    """
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    if rows.size == 0:
        raise ValueError("empty mask has no box")
    h, w = mask.shape
    return [
        int(cols[0] * frame // w),
        int(rows[0] * frame // h),
        int(-(-(cols[-1] + 1) * frame // w)),
        int(-(-(rows[-1] + 1) * frame // h)),
    ]


def object_box(obj: SceneObject, frame: int = BOX_FRAME) -> list[int]:
    """Box ``[x1, y1, x2, y2]`` of an on-screen object drawn in a ``frame``-pixel frame (see
    :func:`mask_box` for the convention); independent of the rendering size."""
    sp = object_sprite(obj, frame)
    rows, cols = np.flatnonzero(sp.mask.any(axis=1)), np.flatnonzero(sp.mask.any(axis=0))
    return [sp.x0 + int(cols[0]), sp.y0 + int(rows[0]), sp.x0 + int(cols[-1]) + 1, sp.y0 + int(rows[-1]) + 1]
