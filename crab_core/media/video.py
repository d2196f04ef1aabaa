"""Video frame sampling and decoding (decord, with an optional PyAV fallback).

The reference opens every video with ``decord.VideoReader(path, height=S, width=S)`` (decord's own resizer,
aspect ratio ignored), samples ``n = min(10, vlen)`` frame indices with
``np.arange(0, vlen, vlen / n).astype(int)`` and decodes only those with ``get_batch``. This module does the
same, never decodes the whole file (memory stays bounded for an hour of 1080p), checks the duration limit
from the container's metadata before opening the decoder (and again from the decoder's frame count), and
turns every decoder failure into a :class:`~crab_core.errors.MediaError` that names the file and says what
is wrong with it in plain words (never the decoder's internals).
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path

import numpy as np

from crab_core.errors import MediaError

from .limits import (
    DEFAULT_MAX_DURATION_S,
    Durations,
    check_limit,
    describe_decoder_error,
    probe_durations,
    validate_limit,
)
from .probe import DEFAULT_MAX_BYTES, check_duration, check_file

logger = logging.getLogger(__name__)

_DECORD_PREFIX = re.compile(r"^\[[\d:]+\] \S+:\d+: (Error: )?")


def sample_frame_indices(num_frames_total: int, n: int) -> list[int]:
    """Uniform frame indices as the reference computes them, first frame included.

    ``n = min(n, vlen)``; indices are ``np.arange(0, vlen, vlen / n).astype(int)``. Floating-point
    rounding in ``arange`` can very rarely yield ``n + 1`` values; the extra last one is dropped.

    Args:
        num_frames_total: Number of frames in the video (``vlen``).
        n: Number of frames wanted.

    Returns:
        ``min(n, vlen)`` sorted frame indices in ``[0, vlen)``.

    Raises:
        MediaError: If the video has no frames.
        ValueError: If ``n < 1``.
    """
    if n < 1:
        raise ValueError(f"need at least one frame, got n={n}")
    vlen = int(num_frames_total)
    if vlen < 1:
        raise MediaError("the video has no frames")
    n = min(n, vlen)
    indices = np.arange(0, vlen, vlen / n).astype(int)[:n]
    return [int(i) for i in indices]


def _open_decord(path: Path, size: int | None):
    import decord  # heavy native library: imported on use

    kwargs = {} if size is None else {"width": size, "height": size}
    return decord.VideoReader(str(path), ctx=decord.cpu(0), **kwargs)


def _decord_info(path: Path, size: int | None) -> tuple[object, int, float]:
    reader = _open_decord(path, size)
    vlen = len(reader)
    fps = float(reader.get_avg_fps())
    return reader, vlen, fps


def _av_available() -> bool:
    try:
        import av  # noqa: F401
    except ImportError:
        return False
    return True


def _av_info(path: Path) -> tuple[int, float]:
    import av

    with av.open(str(path)) as container:
        if not container.streams.video:
            raise MediaError(f"{path.name} has no video stream")
        stream = container.streams.video[0]
        fps = float(stream.average_rate or stream.guessed_rate or 0)
        if stream.duration is not None and stream.time_base is not None:
            duration = float(stream.duration * stream.time_base)
        elif container.duration is not None:
            duration = container.duration / 1_000_000
        else:
            duration = 0.0
        vlen = int(stream.frames) or int(round(duration * fps))
    return vlen, fps


def _av_frames(path: Path, indices: list[int], fps: float, size: int) -> np.ndarray:
    """Decode the frames at ``indices`` with PyAV by seeking to each one (no full decode)."""
    import av

    out = []
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        base = float(stream.time_base)
        start = float(stream.start_time or 0) * base
        for index in indices:
            target = start + index / fps
            container.seek(int(target / base), stream=stream, backward=True, any_frame=False)
            chosen = None
            for frame in container.decode(stream):
                chosen = frame
                if frame.pts is not None and frame.pts * base >= target - 0.5 / fps:
                    break
            if chosen is None:
                raise MediaError(f"could not decode frame {index} of {path.name}")
            out.append(chosen.to_ndarray(width=size, height=size, format="rgb24"))
    return np.stack(out)


def _decode_error(path: Path, exc: Exception) -> MediaError:
    message = [line for line in str(exc).strip().splitlines() if line.strip()]
    detail = _DECORD_PREFIX.sub("", message[-1]) if message else ""
    logger.info("decoder failed on %s: %s", path.name, str(exc)[-500:])
    return MediaError(f"could not decode video {path.name}: {describe_decoder_error(detail)}")


def video_duration(path: str | os.PathLike, *, max_bytes: int = DEFAULT_MAX_BYTES) -> float:
    """Duration of a video in seconds (``frame count / average fps``).

    Args:
        path: Video file.
        max_bytes: Largest accepted file size.

    Returns:
        Duration in seconds.

    Raises:
        MediaError: If the file fails the probe checks or cannot be opened as a video.
    """
    p = check_file(path, "video", max_bytes=max_bytes)
    try:
        _, vlen, fps = _decord_info(p, None)
    except Exception as exc:  # decord raises RuntimeError/DECORDError for unreadable input
        if not _av_available():
            raise _decode_error(p, exc) from exc
        try:
            vlen, fps = _av_info(p)
        except MediaError:
            raise
        except Exception as exc2:
            raise _decode_error(p, exc2) from exc2
    if fps <= 0:
        raise MediaError(f"video {p.name} reports no frame rate")
    return vlen / fps


def load_video_frames(
    path: str | os.PathLike,
    num_frames: int,
    size: int,
    *,
    max_bytes: int = DEFAULT_MAX_BYTES,
    max_duration_s: float = DEFAULT_MAX_DURATION_S,
) -> np.ndarray:
    """Decode ``num_frames`` uniformly sampled frames resized to ``size x size`` (aspect ratio ignored).

    Only the sampled frames are decoded (``get_batch``), so memory stays bounded for long files.

    Args:
        path: Video file (mp4, mkv, webm, mov, avi, ...).
        num_frames: Frames wanted (the clip may give fewer if it has fewer frames).
        size: Output height and width in pixels.
        max_bytes: Largest accepted file size.
        max_duration_s: Longest accepted duration in seconds.

    Returns:
        ``(T, size, size, 3)`` uint8 RGB frames, ``T = min(num_frames, frame count)``.

    Raises:
        MediaError: For a missing/empty/oversized file, an unsupported extension, an image given as a
            video, a corrupt or truncated file, or a video longer than ``max_duration_s``.
    """
    return read_video(path, num_frames, size, max_bytes=max_bytes, max_duration_s=max_duration_s)[0]


def read_video(
    path: str | os.PathLike,
    num_frames: int,
    size: int,
    *,
    max_bytes: int = DEFAULT_MAX_BYTES,
    max_duration_s: float = DEFAULT_MAX_DURATION_S,
    durations: Durations | None = None,
) -> tuple[np.ndarray, float]:
    """As :func:`load_video_frames`, also returning the video's duration in seconds.

    ``durations`` is the file's :func:`~crab_core.media.limits.probe_durations` when already probed: the
    video stream's declared length is checked against the limit before the decoder opens the file.
    """
    p = check_file(path, "video", max_bytes=max_bytes)
    max_duration_s = validate_limit(max_duration_s)
    info = durations or probe_durations(p)
    if info.has_video is False:
        raise MediaError(f"{p.name} has no video stream; give it as the audio, with an image or a video")
    check_limit(f"the video {p.name}", info.video, max_duration_s)
    try:
        reader, vlen, fps = _decord_info(p, size)
    except Exception as exc:
        if _av_available():
            logger.info("decord could not open %s (%s); trying PyAV", p.name, exc)
            return _load_with_av(p, num_frames, size, max_duration_s, exc)
        raise _decode_error(p, exc) from exc
    if fps <= 0:
        raise MediaError(f"video {p.name} reports no frame rate")
    duration = vlen / fps
    check_duration(p, duration, max_duration_s)
    indices = sample_frame_indices(vlen, num_frames)
    try:
        frames = reader.get_batch(indices).asnumpy()
    except Exception as exc:
        if "must exactly match" not in str(exc):
            raise _decode_error(p, exc) from exc
        frames = _native_then_resize(p, indices, size, exc)
    finally:
        del reader
    return _validated(frames, p, len(indices), size), duration


def _native_then_resize(p: Path, indices: list[int], size: int, first: Exception) -> np.ndarray:
    """Work around decord's resizer failing for some output sizes (e.g. 16, 24, 48, 72): decode at the native
    size and resize with Pillow BICUBIC instead (close to, not bit-identical with, decord's own resizer)."""
    from PIL import Image

    logger.info("decord cannot resize %s to %dx%d; resizing with Pillow instead", p.name, size, size)
    try:
        native = _open_decord(p, None).get_batch(indices).asnumpy()
    except Exception as exc:
        raise _decode_error(p, first) from exc
    return np.stack(
        [np.asarray(Image.fromarray(f).resize((size, size), Image.Resampling.BICUBIC)) for f in native]
    )


def _load_with_av(
    p: Path, num_frames: int, size: int, max_duration_s: float, first: Exception
) -> tuple[np.ndarray, float]:
    try:
        vlen, fps = _av_info(p)
        if fps <= 0:
            raise MediaError(f"video {p.name} reports no frame rate")
        check_duration(p, vlen / fps, max_duration_s)
        indices = sample_frame_indices(vlen, num_frames)
        frames = _av_frames(p, indices, fps, size)
    except MediaError:
        raise
    except Exception as exc:
        raise _decode_error(p, first) from exc
    return _validated(frames, p, len(indices), size), vlen / fps


def _validated(frames: np.ndarray, p: Path, count: int, size: int) -> np.ndarray:
    if frames.dtype != np.uint8 or frames.shape != (count, size, size, 3):
        raise MediaError(
            f"decoder returned frames of shape {frames.shape} / {frames.dtype} for {p.name}; "
            f"expected ({count}, {size}, {size}, 3) uint8"
        )
    return np.ascontiguousarray(frames)
