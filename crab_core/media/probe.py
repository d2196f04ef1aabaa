"""Cheap checks on user files before any decoder sees them.

Every loader in ``crab_core.media`` calls :func:`check_file` first, so a bad path fails with a
:class:`~crab_core.errors.MediaError` that names the file and the problem (missing, a directory, empty,
too large, wrong extension, an image given as a video, ...) instead of a decoder traceback.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from crab_core.errors import MediaError

from .limits import DEFAULT_MAX_DURATION_S, check_limit  # noqa: F401 - re-exported (older imports)

logger = logging.getLogger(__name__)

DEFAULT_MAX_BYTES = 2 * 1024**3
"""Largest accepted file: 2 GiB."""

VIDEO_EXTENSIONS = frozenset(
    {".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi", ".mpg", ".mpeg", ".flv", ".wmv", ".3gp", ".ts"}
)
AUDIO_ONLY_EXTENSIONS = frozenset({".wav", ".mp3", ".m4a", ".aac", ".flac", ".ogg", ".oga", ".opus"})
AUDIO_EXTENSIONS = AUDIO_ONLY_EXTENSIONS | VIDEO_EXTENSIONS
IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".gif"})
MASK_EXTENSIONS = frozenset({".png", ".bmp", ".tif", ".tiff", ".gif", ".jpg", ".jpeg"})

_EXTENSIONS = {
    "video": VIDEO_EXTENSIONS,
    "audio": AUDIO_EXTENSIONS,
    "image": IMAGE_EXTENSIONS,
    "mask": MASK_EXTENSIONS,
}

_IMAGE_MAGIC = (
    (b"\xff\xd8\xff", "JPEG"),
    (b"\x89PNG\r\n\x1a\n", "PNG"),
    (b"GIF87a", "GIF"),
    (b"GIF89a", "GIF"),
    (b"BM", "BMP"),
    (b"II*\x00", "TIFF"),
    (b"MM\x00*", "TIFF"),
)


def sniff(path: str | os.PathLike) -> str | None:
    """Guess what a file really holds from its first bytes (only to make error messages useful).

    Args:
        path: An existing, readable file.

    Returns:
        ``"image:<FORMAT>"`` for common still-image formats, ``"text"`` for a file whose head is
        printable UTF-8 text, or ``None`` when it looks like neither.
    """
    try:
        with open(path, "rb") as handle:
            head = handle.read(512)
    except OSError:
        return None
    for magic, name in _IMAGE_MAGIC:
        if head.startswith(magic):
            return f"image:{name}"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "image:WEBP"
    if head and b"\x00" not in head:
        try:
            text = head.decode("utf-8")
        except UnicodeDecodeError:
            return None
        if all(ch.isprintable() or ch in "\r\n\t" for ch in text):
            return "text"
    return None


def check_file(
    path: str | os.PathLike,
    kind: str,
    *,
    max_bytes: int = DEFAULT_MAX_BYTES,
    extensions: frozenset[str] | set[str] | None = None,
) -> Path:
    """Validate a user-supplied media path before decoding it.

    Args:
        path: The file to check.
        kind: ``"video"``, ``"audio"``, ``"image"`` or ``"mask"``; picks the default extension allow-list
            and the wording of errors.
        max_bytes: Largest accepted size in bytes.
        extensions: Allowed lower-case suffixes with the dot; ``None`` uses the list for ``kind``.

    Returns:
        The path as a :class:`pathlib.Path`.

    Raises:
        MediaError: If the file is missing, not a regular file, empty, too large, has an extension not in
            the allow-list, or (for video/audio) is really a still image or a text file.
    """
    if kind not in _EXTENSIONS:
        raise ValueError(f"unknown media kind {kind!r}; expected one of {sorted(_EXTENSIONS)}")
    p = Path(path)
    name = p.name or str(p)
    if not p.exists():
        raise MediaError(f"{kind} file not found: {name} ({p})")
    if p.is_dir():
        raise MediaError(f"{kind} path {name} is a directory, not a file")
    if not p.is_file():
        raise MediaError(f"{kind} path {name} is not a regular file")
    size = p.stat().st_size
    if size == 0:
        raise MediaError(f"{kind} file {name} is empty (0 bytes)")
    if size > max_bytes:
        raise MediaError(
            f"{kind} file {name} is {size / 1024**2:.1f} MiB, larger than the limit of "
            f"{max_bytes / 1024**2:.1f} MiB"
        )
    allowed = _EXTENSIONS[kind] if extensions is None else frozenset(e.lower() for e in extensions)
    suffix = p.suffix.lower()
    if suffix not in allowed:
        hint = (
            " (that is an image; pass it as an image, not a video)"
            if (kind in ("video", "audio") and suffix in IMAGE_EXTENSIONS)
            else ""
        )
        raise MediaError(
            f"{kind} file {name} has unsupported extension {suffix or '(none)'!r}{hint}; "
            f"supported: {', '.join(sorted(allowed))}"
        )
    if kind in ("video", "audio"):
        content = sniff(p)
        if content is not None and content.startswith("image:"):
            raise MediaError(
                f"{kind} file {name} is really a still image ({content[6:]}), not a valid {kind} file; "
                "pass it as an image instead"
            )
        if content == "text":
            raise MediaError(f"{kind} file {name} is a text file, not a valid {kind} file")
    return p


def check_duration(
    path: str | os.PathLike, duration_s: float, max_duration_s: float, label: str | None = None
) -> None:
    """Reject media longer than ``max_duration_s`` (or with an unknown / non-positive duration).

    Args:
        path: The file (for the message).
        duration_s: Its measured duration in seconds.
        max_duration_s: The limit in seconds (exceeded by more than
            :data:`~crab_core.media.limits.DURATION_TOLERANCE_S`).
        label: How the message names it (default: ``the video <name>``).

    Raises:
        MediaError: If the duration is not a positive finite number or exceeds the limit.
    """
    name = Path(path).name
    if not duration_s == duration_s or duration_s <= 0 or duration_s == float("inf"):
        raise MediaError(f"could not determine a valid duration for {name} (got {duration_s})")
    check_limit(label or f"the video {name}", duration_s, max_duration_s)
