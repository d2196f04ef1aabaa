"""Still images and CLIP pixel normalisation.

Reproduces the reference's ``Image.open(p).convert('RGB').resize((S, S))`` (Pillow's default BICUBIC for RGB)
followed by ``CLIPImageProcessor.preprocess`` for openai/clip-vit-large-patch14: on an ``S x S`` input the
shortest-edge resize and centre crop are no-ops, so what remains is ``x = float32(uint8 * (1/255))`` (the
product taken in float64) and ``(x - mean) / std`` in float32, HWC -> CHW. This is bit-exact against the
reference golden ``e_image_preprocess``.
"""

from __future__ import annotations

import logging
import os

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch import Tensor

from crab_core.errors import MediaError

from .probe import DEFAULT_MAX_BYTES, check_file

logger = logging.getLogger(__name__)

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


def resize_rgb(image: np.ndarray, size: int) -> np.ndarray:
    """Resize one RGB uint8 image to ``size x size`` with Pillow's BICUBIC, as the reference does.

    Args:
        image: ``(H, W, 3)`` uint8.
        size: Output side in pixels.

    Returns:
        ``(size, size, 3)`` uint8 (the input itself when it already has that shape).
    """
    if image.shape[:2] == (size, size):
        return image
    return np.asarray(Image.fromarray(image, mode="RGB").resize((size, size), Image.Resampling.BICUBIC))


def clip_preprocess(frames: np.ndarray, image_size: int) -> Tensor:
    """CLIP pixel normalisation of uint8 RGB frames.

    Frames not already ``image_size x image_size`` are first resized with Pillow BICUBIC (video frames from
    :func:`~crab_core.media.video.load_video_frames` are already at that size, as with decord in the
    reference).

    Args:
        frames: ``(T, H, W, 3)`` (or ``(H, W, 3)``) uint8 RGB.
        image_size: Output side ``S``.

    Returns:
        ``(T, 3, S, S)`` float32, normalised with the OpenAI CLIP mean/std.

    Raises:
        MediaError: If ``frames`` is not uint8 with 3 channels.
    """
    frames = np.asarray(frames)
    if frames.ndim == 3:
        frames = frames[None]
    if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3:
        raise MediaError(f"expected (T, H, W, 3) uint8 frames, got {frames.shape} {frames.dtype}")
    if frames.shape[0] == 0:
        raise MediaError("no frames to preprocess")
    resized = np.stack([resize_rgb(frame, image_size) for frame in frames])
    scaled = (resized * (1 / 255)).astype(np.float32)  # uint8 * python float -> float64, then float32
    mean = np.asarray(CLIP_MEAN, dtype=np.float32)
    std = np.asarray(CLIP_STD, dtype=np.float32)
    normalised = (scaled - mean) / std
    return torch.from_numpy(np.ascontiguousarray(normalised.transpose(0, 3, 1, 2)))


def load_image_uint8(
    path: str | os.PathLike, image_size: int | None = None, *, max_bytes: int = DEFAULT_MAX_BYTES
) -> np.ndarray:
    """Open an image as RGB uint8, optionally resized to ``image_size`` (Pillow default BICUBIC).

    Args:
        path: jpg/png/bmp/webp/tif/gif file (the first frame of an animation is used).
        image_size: Output side, or ``None`` to keep the original size.
        max_bytes: Largest accepted file size.

    Returns:
        ``(H, W, 3)`` uint8.

    Raises:
        MediaError: If the file fails the probe checks or is not a readable image.
    """
    p = check_file(path, "image", max_bytes=max_bytes)
    try:
        with Image.open(p) as img:
            rgb = img.convert("RGB")
            if image_size is not None:
                rgb = rgb.resize((image_size, image_size))
            return np.asarray(rgb)
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as exc:
        raise MediaError(f"could not read image {p.name}: {exc} (corrupt or not an image?)") from exc


def load_image(path: str | os.PathLike, image_size: int, *, max_bytes: int = DEFAULT_MAX_BYTES) -> Tensor:
    """Load an image as the reference does: ``convert('RGB').resize((S, S))`` then CLIP normalisation.

    Args:
        path: Image file.
        image_size: Output side ``S``.
        max_bytes: Largest accepted file size.

    Returns:
        ``(1, 3, S, S)`` float32.

    Raises:
        MediaError: If the file fails the probe checks or is not a readable image.
    """
    return clip_preprocess(load_image_uint8(path, image_size, max_bytes=max_bytes), image_size)
