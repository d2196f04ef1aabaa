"""Ground-truth masks: binary (S4 / MS3 / Ref-AVS), AVSBench-v2 RGB palette (AVSS) and 8-bit index PNGs.

Binary masks follow the reference's OpenCV path exactly, without needing OpenCV:
``cv2.imread`` (BGR) -> ``cvtColor(BGR2GRAY)`` (fixed-point weights 4899/9617/1868 >> 14, rounded) -> ``> 0``
-> ``cv2.resize(..., INTER_NEAREST)`` (source index ``floor(x * src / dst)``, top-left aligned). Palette masks
follow ``Image.open(p).convert('RGB').resize((S, S), NEAREST)`` then colour -> class index with the AVSBench
palette (Pillow's NEAREST is centre-aligned, so the two resizers differ; each task uses its own).
"""

from __future__ import annotations

import logging
import os
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch import Tensor

from crab_core.errors import MediaError

from .probe import DEFAULT_MAX_BYTES, check_file

logger = logging.getLogger(__name__)

AVSS_NUM_CLASSES = 71
MASK_KINDS = ("binary", "palette", "index", "auto")


@lru_cache(maxsize=4)
def avsbench_palette(num_classes: int = AVSS_NUM_CLASSES) -> np.ndarray:
    """The AVSBench (v1 and v2) colour palette: the VOC-style bit-interleaving generator.

    Class ``j``'s colour takes bits 0/1/2 of ``j`` for R/G/B at bit position 7, bits 3/4/5 at position 6,
    and so on (so class 0 is black, 1 is (128, 0, 0), 2 is (0, 128, 0), ...).

    Args:
        num_classes: Number of classes (71 for AVSBench-semantic).

    Returns:
        ``(num_classes, 3)`` int64 RGB colours (read-only, cached).
    """
    palette = np.zeros((num_classes, 3), dtype=np.int64)
    for cls in range(num_classes):
        label, bit = cls, 7
        while label > 0:
            for channel in range(3):
                palette[cls, channel] |= ((label >> channel) & 1) << bit
            label >>= 3
            bit -= 1
    palette.setflags(write=False)
    return palette


def _open(path: str | os.PathLike, max_bytes: int) -> tuple[Path, Image.Image]:
    p = check_file(path, "mask", max_bytes=max_bytes)
    try:
        img = Image.open(p)
        img.load()
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as exc:
        raise MediaError(f"could not read mask {p.name}: {exc} (corrupt or not an image?)") from exc
    return p, img


def _cv2_gray(img: Image.Image) -> np.ndarray:
    """What ``cv2.cvtColor(cv2.imread(p), cv2.COLOR_BGR2GRAY)`` gives, as uint8 ``(H, W)``."""
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):
        arr = np.asarray(img).astype(np.int64)
        return np.clip(arr >> 8, 0, 255).astype(np.uint8)  # imread scales 16-bit to 8-bit
    if img.mode == "F":
        return (np.asarray(img) > 0).astype(np.uint8)
    rgb = np.asarray(img.convert("RGB")).astype(np.int64)
    gray = (rgb[..., 0] * 4899 + rgb[..., 1] * 9617 + rgb[..., 2] * 1868 + (1 << 13)) >> 14
    return gray.astype(np.uint8)


def _cv2_nearest_indices(src: int, dst: int) -> np.ndarray:
    scale = 1.0 / (dst / src)
    return np.minimum(np.floor(np.arange(dst) * scale).astype(np.int64), src - 1)


def load_binary_mask(
    path: str | os.PathLike, size: int, *, resample: str = "cv2", max_bytes: int = DEFAULT_MAX_BYTES
) -> Tensor:
    """Binary ground-truth mask (S4 / MS3 / Ref-AVS): gray ``> 0``, nearest resize to ``size x size``.

    Args:
        path: PNG (or other image) mask; any non-black pixel is foreground.
        size: Output side.
        resample: ``"cv2"`` (default; the reference's ``cv2.resize(INTER_NEAREST)`` index rule) or ``"pil"``
            (Pillow NEAREST, centre-aligned).
        max_bytes: Largest accepted file size.

    Returns:
        ``(1, size, size)`` float32 of 0/1.

    Raises:
        MediaError: If the file fails the probe checks or is not a readable image.
    """
    p, img = _open(path, max_bytes)
    with img:
        binary = _cv2_gray(img) > 0
    if resample == "cv2":
        rows = _cv2_nearest_indices(binary.shape[0], size)
        cols = _cv2_nearest_indices(binary.shape[1], size)
        resized = binary[rows[:, None], cols[None, :]]
    elif resample == "pil":
        as_img = Image.fromarray(binary.astype(np.uint8) * 255, mode="L")
        resized = np.asarray(as_img.resize((size, size), Image.Resampling.NEAREST)) > 0
    else:
        raise ValueError(f"resample must be 'cv2' or 'pil', got {resample!r}")
    return torch.from_numpy(resized.astype(np.float32)).unsqueeze(0)


def colours_to_classes(rgb: np.ndarray, num_classes: int = AVSS_NUM_CLASSES) -> tuple[np.ndarray, int]:
    """Map an RGB palette image to class indices (the reference's ``color_mask_to_label``).

    Args:
        rgb: ``(H, W, 3)`` uint8.
        num_classes: Palette size.

    Returns:
        ``(H, W)`` int64 class indices, and the number of pixels whose colour is not in the palette (mapped to
        class 0, background, as the reference's argmax over all-False does).
    """
    codes = (rgb[..., 0].astype(np.int64) << 16) | (rgb[..., 1].astype(np.int64) << 8) | rgb[..., 2]
    palette = avsbench_palette(num_classes)
    palette_codes = (palette[:, 0] << 16) | (palette[:, 1] << 8) | palette[:, 2]
    order = np.argsort(palette_codes, kind="stable")
    sorted_codes = palette_codes[order]
    pos = np.clip(np.searchsorted(sorted_codes, codes), 0, num_classes - 1)
    known = sorted_codes[pos] == codes
    labels = np.where(known, order[pos], 0)
    return labels.astype(np.int64), int((~known).sum())


def load_palette_mask(
    path: str | os.PathLike,
    size: int,
    *,
    num_classes: int = AVSS_NUM_CLASSES,
    strict: bool = False,
    max_bytes: int = DEFAULT_MAX_BYTES,
) -> Tensor:
    """AVSBench-semantic RGB palette mask -> class indices (``convert('RGB')``, NEAREST resize, palette
    lookup).

    Args:
        path: RGB palette PNG (``labels_rgb``).
        size: Output side.
        num_classes: Palette size (71 for AVSS).
        strict: Raise on colours not in the palette instead of mapping them to background (0).
        max_bytes: Largest accepted file size.

    Returns:
        ``(1, size, size)`` int64 class indices in ``[0, num_classes)``.

    Raises:
        MediaError: If the file cannot be read, or (``strict``) it holds colours outside the palette.
    """
    p, img = _open(path, max_bytes)
    with img:
        rgb = np.asarray(img.convert("RGB").resize((size, size), Image.Resampling.NEAREST))
    labels, unknown = colours_to_classes(rgb, num_classes)
    if unknown:
        message = f"{p.name}: {unknown} pixels have colours outside the {num_classes}-class AVSBench palette"
        if strict:
            raise MediaError(message)
        logger.warning("%s; they are treated as background", message)
    return torch.from_numpy(labels).unsqueeze(0)


def load_index_mask(
    path: str | os.PathLike,
    size: int,
    *,
    num_classes: int | None = None,
    ignore_index: int | None = 255,
    max_bytes: int = DEFAULT_MAX_BYTES,
) -> Tensor:
    """Class-index mask stored as an 8-bit (L or P mode) PNG whose pixel values are class ids.

    Args:
        path: Index PNG (0 = background).
        size: Output side (Pillow NEAREST resize).
        num_classes: If given, values must be ``< num_classes`` (or equal ``ignore_index``).
        ignore_index: A value allowed beyond ``num_classes`` (e.g. 255 for "void").
        max_bytes: Largest accepted file size.

    Returns:
        ``(1, size, size)`` int64.

    Raises:
        MediaError: If the file cannot be read, is an RGB image, or holds out-of-range class ids.
    """
    p, img = _open(path, max_bytes)
    with img:
        if img.mode not in ("L", "P", "1", "I", "I;16", "I;16B", "I;16L"):
            raise MediaError(
                f"index mask {p.name} has mode {img.mode}; expected a single-channel 8-bit PNG "
                "(use kind='palette' for AVSBench RGB masks)"
            )
        labels = np.asarray(img.resize((size, size), Image.Resampling.NEAREST)).astype(np.int64)
    if num_classes is not None:
        bad = (labels >= num_classes) & (labels != (-1 if ignore_index is None else ignore_index))
        if bad.any():
            raise MediaError(f"index mask {p.name} has class ids up to {labels.max()}, >= {num_classes}")
    return torch.from_numpy(labels).unsqueeze(0)


def guess_mask_kind(path: str | os.PathLike, *, max_bytes: int = DEFAULT_MAX_BYTES) -> str:
    """Guess a mask's kind: P-mode -> ``"index"``, RGB(A) with non-gray colours -> ``"palette"``, else
    ``"binary"``.

    Single-channel masks are taken as binary (AVSBench binary masks hold arbitrary gray levels such as 45, or
    9 and 41); pass ``kind="index"`` explicitly for gray-level index PNGs.
    """
    _, img = _open(path, max_bytes)
    with img:
        if img.mode == "P":
            return "index"
        if img.mode in ("RGB", "RGBA"):
            rgb = np.asarray(img.convert("RGB"))
            if not ((rgb[..., 0] == rgb[..., 1]) & (rgb[..., 1] == rgb[..., 2])).all():
                return "palette"
    return "binary"


def mask_from_any(path: str | os.PathLike, size: int, kind: str = "auto", **kwargs) -> Tensor:
    """Load a mask of the given kind (``"binary"``, ``"palette"``, ``"index"`` or ``"auto"``).

    Args:
        path: Mask file.
        size: Output side.
        kind: Mask kind; ``"auto"`` uses :func:`guess_mask_kind`.
        **kwargs: Passed to the specific loader.

    Returns:
        ``(1, size, size)``: float32 for binary, int64 for palette / index masks.

    Raises:
        MediaError: If the file cannot be read as that kind.
        ValueError: For an unknown ``kind``.
    """
    if kind not in MASK_KINDS:
        raise ValueError(f"unknown mask kind {kind!r}; expected one of {MASK_KINDS}")
    if kind == "auto":
        kind = guess_mask_kind(path, max_bytes=kwargs.get("max_bytes", DEFAULT_MAX_BYTES))
    loader = {"binary": load_binary_mask, "palette": load_palette_mask, "index": load_index_mask}[kind]
    return loader(path, size, **kwargs)


# ----------------------------------------------------------------------------- writing predicted masks
def mask_to_image(mask: np.ndarray, size: tuple[int, int], logits: np.ndarray | None = None) -> Image.Image:
    """A predicted mask at an output resolution, as a PIL image ready to save as PNG.

    Args:
        mask: ``(S, S)`` bool (binary tasks) or integer class map (AVSS).
        size: Output ``(width, height)``: the input frame's resolution (frames are squashed to ``S x S``,
            so this is a plain resize).
        logits: ``(1, S, S)`` binary-mask logits; when given, they are resized bilinearly and thresholded
            at 0 (smoother edges than resizing the ``S x S`` mask). Ignored for class maps.

    Returns:
        Binary: mode ``"L"`` with 0 / 255. Class map: mode ``"P"`` with the AVSBench palette (index =
        class id, so :func:`load_index_mask` and :func:`load_palette_mask` both read it back).
    """
    w, h = int(size[0]), int(size[1])
    if w < 1 or h < 1:
        raise ValueError(f"output size must be positive, got {size}")
    mask = np.asarray(mask)
    if mask.dtype == bool or mask.dtype == np.bool_:
        if logits is not None:
            lg = torch.as_tensor(np.asarray(logits, dtype=np.float32)).reshape(1, 1, *mask.shape)
            up = torch.nn.functional.interpolate(lg, size=(h, w), mode="bilinear", align_corners=False)
            return Image.fromarray(((up[0, 0] > 0).numpy().astype(np.uint8) * 255), mode="L")
        small = Image.fromarray(mask.astype(np.uint8) * 255, mode="L")
        return small.resize((w, h), Image.Resampling.NEAREST)
    if mask.min() < 0 or mask.max() >= 256:
        raise ValueError(f"class ids must be in 0..255 for a palette PNG, got {mask.min()}..{mask.max()}")
    img = Image.fromarray(mask.astype(np.uint8), mode="P")
    palette = np.zeros((256, 3), np.uint8)
    colours = avsbench_palette(AVSS_NUM_CLASSES)
    palette[: len(colours)] = colours
    img.putpalette(palette.reshape(-1).tolist())
    return img.resize((w, h), Image.Resampling.NEAREST)


def overlay_mask(frame: np.ndarray, mask_image: Image.Image, alpha: float = 0.5) -> np.ndarray:
    """Blend a full-resolution mask onto its ``(H, W, 3)`` uint8 frame (red for binary, palette colours
    for classes; background pixels unchanged). Returns ``(H, W, 3)`` uint8."""
    frame = np.asarray(frame, dtype=np.uint8)
    if mask_image.size != (frame.shape[1], frame.shape[0]):
        raise ValueError(f"mask size {mask_image.size} differs from the frame's {frame.shape[1::-1]}")
    if mask_image.mode == "P":
        ids = np.asarray(mask_image)
        colour = np.asarray(mask_image.convert("RGB"), dtype=np.float32)
        on = ids > 0
    else:
        on = np.asarray(mask_image) > 0
        colour = np.broadcast_to(np.array([255.0, 0.0, 0.0], np.float32), frame.shape)
    out = frame.astype(np.float32)
    out[on] = (1 - alpha) * out[on] + alpha * colour[on]
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)
