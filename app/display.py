"""Frames for display at the input's own aspect ratio (not the model's square input).

The model sees every frame squashed to ``S x S``; its masks and boxes cover that whole square, so
stretching them back to the input's aspect ratio puts them where they belong on the real frame.
Display frames are at most :data:`MAX_SIDE` pixels on their longest side (small inputs are
enlarged to :data:`MIN_SIDE` so a 112-pixel clip stays readable).
"""

from __future__ import annotations

import functools
import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
from PIL import Image

MAX_SIDE = 640
MIN_SIDE = 320


@functools.lru_cache(maxsize=64)
def _probe_size(path: str, mtime_ns: int) -> tuple[int, int] | None:
    ffprobe = shutil.which("ffprobe")
    if ffprobe is None:
        return None
    try:
        out = subprocess.run(
            [
                ffprobe,
                "-v",
                "error",
                "-select_streams",
                "v:0",
                "-show_entries",
                "stream=width,height:stream_side_data=rotation",
                "-of",
                "json",
                path,
            ],
            capture_output=True,
            text=True,
            timeout=20,
            check=False,
        ).stdout
        stream = json.loads(out or "{}").get("streams", [{}])[0]
        w, h = int(stream["width"]), int(stream["height"])
    except (OSError, ValueError, KeyError, IndexError, subprocess.SubprocessError):
        return None
    rotation = next(
        (int(d.get("rotation", 0)) for d in stream.get("side_data_list", []) if "rotation" in d), 0
    )
    return (h, w) if abs(rotation) % 180 == 90 else (w, h)


def native_size(path: str | Path, kind: str) -> tuple[int, int] | None:
    """``(width, height)`` of a video's first stream (ffprobe) or of an image; None when unknown."""
    p = Path(path)
    if kind == "image":
        try:
            with Image.open(p) as img:
                return img.size
        except (OSError, ValueError, Image.DecompressionBombError):
            return None
    return _probe_size(str(p), p.stat().st_mtime_ns)


def display_size(native: tuple[int, int] | None, fallback: int) -> tuple[int, int]:
    """``(width, height)`` to draw at: the native aspect ratio, longest side in MIN_SIDE..MAX_SIDE."""
    w, h = native if native and min(native) > 0 else (fallback, fallback)
    longest = max(w, h)
    scale = min(MAX_SIDE, max(MIN_SIDE, longest)) / longest
    return max(1, int(round(w * scale))), max(1, int(round(h * scale)))


def resize_frames(frames: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """``(T, H, W, 3)`` uint8 -> ``(T, height, width, 3)`` (bicubic)."""
    w, h = size
    return np.stack(
        [np.asarray(Image.fromarray(np.asarray(f, np.uint8)).resize((w, h), Image.BICUBIC)) for f in frames]
    )


def fit_mask(mask: np.ndarray, size: tuple[int, int], nearest: bool = True) -> np.ndarray:
    """A ``(S, S)`` mask / class map resized to ``(height, width)`` (nearest keeps the labels)."""
    m = np.asarray(mask)
    w, h = size
    if m.shape == (h, w):
        return m
    img = Image.fromarray(m.astype(np.uint8) if m.dtype == bool else m.astype(np.int32))
    return np.asarray(img.resize((w, h), Image.NEAREST if nearest else Image.BILINEAR)).astype(m.dtype)
