"""Audio loading, per-task segmentation and fbank features, with memory bounded for any input length.

Decoding equals the reference's ``librosa.load(path, sr=16000, mono=True)`` (see
:mod:`crab_core.media.audio_decode`). Segmentation reproduces the reference's per-task windows, where a
nominal "second" is ``nums_per_second = int(len / tot)`` samples, with every window cut to at most its
nominal length in real seconds (see :mod:`crab_core.media.windows`): the encoder's input is the same size
for a 10-s clip and an hour.

Durations are checked against the limit (default 60 s, ``--max-duration``) from the file's metadata before
anything is decoded, and the decoders read at most the limit. A track of up to :data:`FULL_DECODE_MAX_S`
is decoded whole (bit-identical to ``librosa.load``); a longer one (allowed by a raised limit) is decoded
only in the windows the task uses. A video without an audio track raises
:class:`~crab_core.errors.MediaError`; silence is never substituted.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from crab_core.errors import MediaError

from .audio_decode import count_seconds, read_full, read_span
from .limits import (
    DEFAULT_MAX_DURATION_S,
    DURATION_TOLERANCE_S,
    Durations,
    check_limit,
    probe_durations,
    too_long,
    validate_limit,
)
from .probe import DEFAULT_MAX_BYTES, VIDEO_EXTENSIONS, check_file
from .windows import (
    AUDIO_MODES,
    MIN_AUDIO_SECONDS,
    MIN_SEGMENT_SAMPLES,
    assemble,
    check_plan,
    cut,
    plan_windows,
)

logger = logging.getLogger(__name__)

__all__ = [
    "AUDIO_MODES",
    "FULL_DECODE_MAX_S",
    "MIN_AUDIO_SECONDS",
    "MIN_SEGMENT_SAMPLES",
    "SAMPLE_RATE",
    "audio_features",
    "audio_segments",
    "load_audio",
    "load_audio_segments",
]

SAMPLE_RATE = 16000
FULL_DECODE_MAX_S = 60.0
"""Tracks up to this long (plus the tolerance) are decoded whole; longer ones only in the task's windows."""


def audio_label(path: str | os.PathLike, separate: bool | None = None) -> str:
    """How messages name a file's audio: ``the audio track of x.mp4`` or ``the audio file y.mp3``.

    Args:
        path: The file. separate: True for a separate audio file, False for a video's own track, None to
            guess from the extension.
    """
    p = Path(path)
    if separate is None:
        separate = p.suffix.lower() not in VIDEO_EXTENSIONS
    return f"the audio file {p.name}" if separate else f"the audio track of {p.name}"


def _open_checked(path, max_bytes: int, max_duration_s: float, label: str | None, info: Durations | None):
    """check_file + the duration limit from metadata; returns ``(path, limit, label, info)``."""
    p = check_file(path, "audio", max_bytes=max_bytes)
    limit = validate_limit(max_duration_s)
    label = label or audio_label(p)
    info = info or probe_durations(p)
    if info.has_audio is False:
        raise MediaError(f"{p.name} has no audio track; provide a separate audio file")
    check_limit(label, info.audio, limit)
    return p, limit, label, info


def _validated(data: np.ndarray, p: Path) -> np.ndarray:
    if data.size == 0:
        raise MediaError(f"{p.name} contains no audio samples")
    if not np.isfinite(data).all():
        raise MediaError(f"{p.name} contains non-finite audio samples (NaN or inf)")
    return data


def load_audio(
    path: str | os.PathLike,
    sr: int = SAMPLE_RATE,
    *,
    max_bytes: int = DEFAULT_MAX_BYTES,
    max_duration_s: float = DEFAULT_MAX_DURATION_S,
    label: str | None = None,
    durations: Durations | None = None,
) -> Tensor:
    """Decode a whole audio file (or a video's audio track) to mono float32 at ``sr``.

    Memory grows with ``max_duration_s`` (the whole track is returned): use :func:`load_audio_segments`
    for a task's segments, which is bounded for any limit.

    Args:
        path: wav / mp3 / m4a / aac / flac / ogg / opus, or a video container (mp4, mkv, webm, ...).
        sr: Target sampling rate in Hz.
        max_bytes: Largest accepted file size.
        max_duration_s: Longest accepted duration in seconds (checked from metadata, then capped in decoding).
        label: How errors name the audio (default: :func:`audio_label`).
        durations: The file's :func:`~crab_core.media.limits.probe_durations` when already probed.

    Returns:
        ``(S,)`` float32 mono waveform (nominally in [-1, 1]).

    Raises:
        MediaError: For a missing/empty/oversized/wrong-type file, an undecodable file, a video without an
            audio track, a track longer than ``max_duration_s``, non-finite samples, or an empty stream.
    """
    p, limit, label, info = _open_checked(path, max_bytes, max_duration_s, label, durations)
    data, truncated = read_full(p, sr, limit + DURATION_TOLERANCE_S, info.audio_params)
    if truncated:
        raise too_long(label, None, limit)
    return torch.from_numpy(_validated(data, p))


def load_audio_segments(
    path: str | os.PathLike,
    num_segments: int,
    seconds_per_segment: float | None = None,
    mode: str = "uniform",
    *,
    index: int | None = None,
    total_seconds: float | None = None,
    max_window_s: float | None = None,
    max_bytes: int = DEFAULT_MAX_BYTES,
    max_duration_s: float = DEFAULT_MAX_DURATION_S,
    label: str | None = None,
    durations: Durations | None = None,
) -> tuple[Tensor, float]:
    """Decode only a task's audio segments of a file (16 kHz), with memory bounded for any length.

    Equals ``audio_segments(load_audio(path), ...)`` for tracks up to :data:`FULL_DECODE_MAX_S`; longer
    tracks are decoded window by window (seeking), so nothing but the windows is ever in memory.

    Args:
        path: Audio file or video container.
        num_segments, seconds_per_segment, mode, index, total_seconds, max_window_s: As
            :func:`crab_core.media.windows.plan_windows`.
        max_bytes: Largest accepted file size.
        max_duration_s: Longest accepted duration (checked from metadata and capped in decoding).
        label: How errors name the audio (default: :func:`audio_label`).
        durations: The file's :func:`~crab_core.media.limits.probe_durations` when already probed.

    Returns:
        ``((T, L) float32 segments, duration in seconds)``.

    Raises:
        MediaError: As :func:`load_audio`, or audio too short for the segments.
        TaskError: For bad segmentation arguments.
    """
    p, limit, label, info = _open_checked(path, max_bytes, max_duration_s, label, durations)
    declared, params = info.audio, info.audio_params
    plan_args = dict(
        seconds_per_segment=seconds_per_segment,
        mode=mode,
        index=index,
        total_seconds=total_seconds,
        max_window_s=max_window_s,
    )
    plan_windows(16000, SAMPLE_RATE, num_segments, **plan_args)  # argument errors before any decoding
    full_cap = min(limit, FULL_DECODE_MAX_S) + DURATION_TOLERANCE_S
    if declared is None or declared <= full_cap:
        data, truncated = read_full(p, SAMPLE_RATE, full_cap, params)
        if not truncated:
            wave = torch.from_numpy(_validated(data, p))
            return audio_segments(wave, SAMPLE_RATE, num_segments, **plan_args), wave.shape[0] / SAMPLE_RATE
        del data
        if limit <= FULL_DECODE_MAX_S:
            raise too_long(label, None, limit)
        declared = _measured(p, limit, label, params)  # no or a wrong length in the header: measure it
    return _windowed(p, declared, limit, label, num_segments, plan_args, params)


def _measured(p: Path, limit: float, label: str, params) -> float:
    seconds, truncated = count_seconds(p, limit + DURATION_TOLERANCE_S, params)
    if truncated:
        raise too_long(label, None, limit)
    return seconds


def _windowed(
    p: Path,
    seconds: float,
    limit: float,
    label: str,
    num_segments: int,
    plan_args: dict,
    params,
    retry: bool = True,
) -> tuple[Tensor, float]:
    """Decode the planned windows of a ``seconds``-long track one by one."""
    n = int(round(seconds * SAMPLE_RATE))
    plan = plan_windows(n, SAMPLE_RATE, num_segments, **plan_args)
    check_plan(plan, n, SAMPLE_RATE, num_segments)
    logger.info(
        "%s: %.0f s, decoding only %d windows of %.2f s",
        p.name,
        seconds,
        len(plan),
        plan[0].length / SAMPLE_RATE,
    )
    segments = []
    for w in plan:
        got = read_span(p, SAMPLE_RATE, w.start, w.taken, params)
        if got.shape[0] < w.taken - SAMPLE_RATE // 20 and retry:
            # the header promised more audio than the stream holds: measure it and plan again
            real = _measured(p, limit, label, params)
            if real <= FULL_DECODE_MAX_S + DURATION_TOLERANCE_S:
                wave = torch.from_numpy(_validated(read_full(p, SAMPLE_RATE, real + 1.0, params)[0], p))
                return audio_segments(wave, SAMPLE_RATE, num_segments, **plan_args), wave.shape[
                    0
                ] / SAMPLE_RATE
            return _windowed(p, real, limit, label, num_segments, plan_args, params, retry=False)
        if not np.isfinite(got).all():
            raise MediaError(f"{p.name} contains non-finite audio samples (NaN or inf)")
        segments.append(assemble(w, torch.from_numpy(np.ascontiguousarray(got))))
    return torch.stack(segments), n / SAMPLE_RATE


def audio_segments(
    wave: Tensor,
    sr: int,
    num_segments: int,
    seconds_per_segment: float | None = None,
    mode: str = "uniform",
    *,
    index: int | None = None,
    total_seconds: float | None = None,
    max_window_s: float | None = None,
) -> Tensor:
    """Cut a waveform into the reference's per-task segments, each at most ``max_window_s`` long.

    See :func:`crab_core.media.windows.plan_windows` for the windows (``"uniform"``, ``"avqa"``,
    ``"single"``). For a clip up to the task's nominal length they are exactly the reference's; a longer
    clip's windows keep the reference's start and are cut to their nominal length (1 s, AVQA 2 s).

    Args:
        wave: ``(S,)`` float waveform.
        sr: Its sampling rate.
        num_segments, seconds_per_segment, mode, index, total_seconds, max_window_s: As
            :func:`crab_core.media.windows.plan_windows`.

    Returns:
        ``(T, L)`` float32 segments: ``T = num_segments`` (1 for ``"single"``).

    Raises:
        MediaError: If the audio is empty, shorter than 0.5 s, or gives segments too short for the audio
            encoder (fewer than 16 fbank frames).
        TaskError: For an unknown mode, a bad segment count, or a missing / out-of-range ``index``.
    """
    wave = torch.as_tensor(wave).to(torch.float32).reshape(-1)
    n = wave.shape[0]
    plan = plan_windows(
        n,
        sr,
        num_segments,
        seconds_per_segment,
        mode,
        index=index,
        total_seconds=total_seconds,
        max_window_s=max_window_s,
    )
    check_plan(plan, n, sr, num_segments)
    return cut(wave, plan)


def audio_features(
    wave: Tensor,
    sr: int,
    num_segments: int,
    seconds_per_segment: float | None = None,
    mode: str = "uniform",
    *,
    index: int | None = None,
    total_seconds: float | None = None,
    max_window_s: float | None = None,
) -> Tensor:
    """Segment a 16 kHz waveform (see :func:`audio_segments`) and compute Crab's normalised fbank per segment.

    Args:
        wave: ``(S,)`` float waveform at 16 kHz.
        sr: Its sampling rate; must be 16000.
        num_segments: See :func:`audio_segments`.
        seconds_per_segment: See :func:`audio_segments`.
        mode: See :func:`audio_segments`.
        index: See :func:`audio_segments`.
        total_seconds: See :func:`audio_segments`.
        max_window_s: See :func:`audio_segments`.

    Returns:
        ``(T, frames, 128)`` float32, e.g. ``(10, 98, 128)`` for AVE, ``(10, 198, 128)`` for AVQA and
        ``(1, 98, 128)`` for ``"single"``.

    Raises:
        MediaError / TaskError: As :func:`audio_segments`; MediaError if ``sr != 16000``.
    """
    if sr != SAMPLE_RATE:
        raise MediaError(f"fbank features need {SAMPLE_RATE} Hz audio, got {sr} Hz; resample first")
    from .fbank import crab_fbank

    segments = audio_segments(
        wave,
        sr,
        num_segments,
        seconds_per_segment,
        mode,
        index=index,
        total_seconds=total_seconds,
        max_window_s=max_window_s,
    )
    return crab_fbank(segments)
