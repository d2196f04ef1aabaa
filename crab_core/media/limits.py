"""Duration limits, checked from container metadata before any decoder runs.

Every path (app, ``infer``, ``eval``, ``inspect``) rejects media longer than the limit (default 60 s,
``--max-duration``): the video stream, the audio track of a video and a separate audio file are each
probed with ``ffprobe`` (or libsndfile for plain audio files) and compared with the limit before decoding.
The decoders cap what they decode as well, so a header that lies about the length cannot blow memory.
Decoder failures are turned into plain words about the user's file (:func:`describe_decoder_error`).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from crab_core.errors import MediaError

logger = logging.getLogger(__name__)

DEFAULT_MAX_DURATION_S = 60.0
"""Longest accepted clip (video stream, audio track, separate audio file) in seconds."""
DURATION_TOLERANCE_S = 0.5
"""Containers report a few hundredths over the nominal length (codec priming): a clip may exceed the
limit by this much and still be accepted (a 60.004-s MUSIC-AVQA track passes a 60-s limit)."""
LIMIT_FLAG = "--max-duration"
"""The command-line flag (CLI and app) that sets the limit; named in every rejection."""

SOUNDFILE_EXTENSIONS = frozenset({".wav", ".flac", ".ogg", ".oga", ".mp3"})


@dataclass(frozen=True)
class Durations:
    """What a file's metadata says, in seconds (``None`` when it does not say).

    Attributes:
        video: Duration of the first video stream. audio: Duration of the first audio stream.
        container: The container's overall duration. has_video / has_audio: Whether such a stream exists
        (``None`` when the probe could not tell). audio_params: ``(sample rate, channels)`` of the first
        audio stream as ffprobe reports them (``None`` when not probed with ffprobe).
    """

    video: float | None = None
    audio: float | None = None
    container: float | None = None
    has_video: bool | None = None
    has_audio: bool | None = None
    audio_params: tuple[int, int] | None = None


def _seconds(value) -> float | None:
    """A positive finite number of seconds from ffprobe's ``"12.3"`` or a ``"HH:MM:SS.frac"`` tag."""
    if value is None:
        return None
    text = str(value).strip()
    try:
        if ":" in text:
            h, m, s = text.split(":")
            out = int(h) * 3600 + int(m) * 60 + float(s)
        else:
            out = float(text)
    except ValueError:
        return None
    return out if out > 0 and out != float("inf") else None


def _stream_seconds(stream: dict) -> float | None:
    tags = {k.upper(): v for k, v in (stream.get("tags") or {}).items()}
    return _seconds(stream.get("duration")) or _seconds(tags.get("DURATION"))


def probe_durations(path: str | os.PathLike) -> Durations:
    """Read the durations a file declares, without decoding it (one ``ffprobe`` call, ~0.1 s).

    Plain audio files libsndfile can open (wav, flac, ogg, mp3) are measured by libsndfile (exact for
    PCM). A file the probe cannot read gives an empty :class:`Durations`: the decoder then reports the
    problem.

    Args:
        path: An existing media file (already checked by :func:`crab_core.media.probe.check_file`).

    Returns:
        The declared :class:`Durations`.
    """
    p = Path(path)
    if p.suffix.lower() in SOUNDFILE_EXTENSIONS:
        try:
            import soundfile as sf

            info = sf.info(str(p))
            if info.samplerate > 0 and info.frames > 0:
                seconds = info.frames / info.samplerate
                return Durations(audio=seconds, container=seconds, has_video=False, has_audio=True)
        except Exception as exc:  # not readable by libsndfile: ask ffprobe
            logger.debug("libsndfile cannot probe %s: %s", p.name, exc)
    ffprobe = shutil.which("ffprobe")
    if ffprobe is None:
        return Durations()
    cmd = [
        ffprobe,
        "-v",
        "error",
        "-show_entries",
        "format=duration:stream=codec_type,duration,sample_rate,channels:stream_tags",
        "-of",
        "json",
        str(p),
    ]
    try:
        result = subprocess.run(cmd, capture_output=True, check=False, timeout=60)
        data = json.loads(result.stdout.decode("utf-8", "replace") or "{}") if result.returncode == 0 else {}
    except (OSError, subprocess.TimeoutExpired, ValueError) as exc:
        logger.debug("ffprobe failed on %s: %s", p.name, exc)
        return Durations()
    if not data:
        return Durations()
    streams = data.get("streams") or []
    video = next((s for s in streams if s.get("codec_type") == "video"), None)
    audio = next((s for s in streams if s.get("codec_type") == "audio"), None)
    container = _seconds((data.get("format") or {}).get("duration"))
    params = None
    if audio is not None:
        try:
            params = (int(audio.get("sample_rate")), int(audio.get("channels")))
        except (TypeError, ValueError):
            params = None
    return Durations(
        video=(_stream_seconds(video) or container) if video is not None else None,
        audio=(_stream_seconds(audio) or container) if audio is not None else None,
        container=container,
        has_video=video is not None,
        has_audio=audio is not None,
        audio_params=params if params and min(params) > 0 else None,
    )


def format_seconds(seconds: float) -> str:
    """``"1800"``, ``"60"``, ``"2.5"``: whole seconds above 100 s or when integral, else one decimal."""
    if seconds >= 100 or float(seconds).is_integer():
        return f"{seconds:.0f}"
    return f"{seconds:.1f}"


def too_long(label: str, seconds: float | None, max_duration_s: float) -> MediaError:
    """The one wording of every duration rejection, e.g.
    ``the audio track of clip.mp4 is 1800 s long; the limit is 60 s (--max-duration)``.

    Args:
        label: What is too long ("the video x.mp4", "the audio file y.mp3", ...).
        seconds: Its duration, or ``None`` when only "longer than the limit" is known (decode cap hit).
        max_duration_s: The limit.
    """
    limit = format_seconds(max_duration_s)
    if seconds is None:
        return MediaError(f"{label} is longer than {limit} s; the limit is {limit} s ({LIMIT_FLAG})")
    return MediaError(f"{label} is {format_seconds(seconds)} s long; the limit is {limit} s ({LIMIT_FLAG})")


def check_limit(label: str, seconds: float | None, max_duration_s: float) -> None:
    """Raise :func:`too_long` when ``seconds`` exceeds ``max_duration_s`` (plus the tolerance).

    Raises:
        MediaError: Too long. A ``None`` duration (not declared) passes: the decode caps apply.
    """
    if seconds is not None and seconds > max_duration_s + DURATION_TOLERANCE_S:
        raise too_long(label, seconds, max_duration_s)


def validate_limit(max_duration_s: float) -> float:
    """Return the limit as a float.

    Raises:
        MediaError: If it is not a positive finite number.
    """
    try:
        value = float(max_duration_s)
    except (TypeError, ValueError):
        raise MediaError(f"the duration limit must be a number of seconds, got {max_duration_s!r}") from None
    if not value > 0 or value == float("inf"):
        raise MediaError(f"the duration limit must be a positive number of seconds, got {max_duration_s!r}")
    return value


_PLAIN = (
    ("moov atom not found", "the file is incomplete or corrupt (its index is missing)"),
    ("invalid data found", "the data is not valid audio or video (corrupt, or not a media file)"),
    ("av_read_frame failed", "the file is truncated or corrupt (its data ends before its index says)"),
    ("end of file", "the file is truncated or corrupt (it ends early)"),
    ("does not contain any stream", "the file holds no audio or video stream"),
    ("no video stream", "the file holds no video stream"),
    ("permission denied", "the file cannot be read (permission denied)"),
)


def describe_decoder_error(detail: str) -> str:
    """Plain words for a decoder's message: known problems are named, anything else is described
    generically, so a decoder's internals (source lines, return codes, addresses) never reach the user.

    Args:
        detail: The decoder's message (decord, PyAV, ffmpeg, libsndfile); log it separately.

    Returns:
        A short description of what is wrong with the file.
    """
    low = detail.lower()
    for needle, plain in _PLAIN:
        if needle in low:
            return plain
    return "the file is corrupt, truncated or in an unsupported format"
