"""Low-level audio decoders with hard caps: a whole track up to N seconds, a span, or a length count.

Decoding follows the reference's ``librosa.load(path, sr=16000, mono=True)``: files libsndfile can read
(wav, flac, ogg, mp3) are read as float32, averaged to mono and resampled with ``soxr_hq`` (librosa's
soundfile path); anything else (the audio track of an mp4/mkv/webm, m4a, aac, ...) is decoded by the
``ffmpeg`` binary as librosa's audioread fallback does (int16 at the native rate, mono, ``soxr_hq``).
Every function here reads at most a bounded number of samples, whatever the file's header says.
"""

from __future__ import annotations

import logging
import math
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np

from crab_core.errors import MediaError

from .limits import SOUNDFILE_EXTENSIONS, describe_decoder_error

logger = logging.getLogger(__name__)

SPAN_MARGIN_S = 0.1
"""Extra audio decoded on each side of a span so the resampler's edges fall outside it."""
_CHUNK_FRAMES = 262144


def resample(data: np.ndarray, native_sr: int, sr: int) -> np.ndarray:
    """``librosa.resample(res_type="soxr_hq")`` without importing librosa: soxr, then fix the length."""
    if native_sr == sr or not data.size:
        return np.ascontiguousarray(data, dtype=np.float32)
    import soxr

    out = soxr.resample(data, native_sr, sr, quality="soxr_hq")
    target = int(np.ceil(data.shape[0] * float(sr) / native_sr))
    out = out[:target] if out.shape[0] >= target else np.pad(out, (0, target - out.shape[0]))
    return np.ascontiguousarray(out, dtype=np.float32)


def _mono(data: np.ndarray) -> np.ndarray:
    """librosa.to_mono on soundfile's ``(frames, channels)`` layout."""
    return np.mean(data.T, axis=0) if data.ndim > 1 else data


def _use_soundfile(p: Path) -> bool:
    if p.suffix.lower() not in SOUNDFILE_EXTENSIONS:
        return False
    import soundfile as sf

    try:
        sf.info(str(p))
    except Exception as exc:  # libsndfile raises LibsndfileError / RuntimeError on unreadable input
        logger.debug("soundfile cannot read %s: %s", p.name, exc)
        return False
    return True


def _binaries(p: Path) -> tuple[str, str]:
    ffmpeg, ffprobe = shutil.which("ffmpeg"), shutil.which("ffprobe")
    if ffmpeg is None or ffprobe is None:
        raise MediaError(f"reading {p.suffix or 'this'} audio ({p.name}) needs ffmpeg and ffprobe on PATH")
    return ffmpeg, ffprobe


def _stream_params(p: Path, ffprobe: str) -> tuple[int, int]:
    """Sample rate and channel count of the first audio stream (MediaError when there is none)."""
    cmd = [
        ffprobe,
        "-v",
        "error",
        "-select_streams",
        "a:0",
        "-show_entries",
        "stream=sample_rate,channels",
        "-of",
        "csv=p=0",
        str(p),
    ]
    result = subprocess.run(cmd, capture_output=True, check=False, timeout=60)
    out = result.stdout.decode("utf-8", "replace").strip()
    if result.returncode != 0:
        lines = [line for line in result.stderr.decode("utf-8", "replace").splitlines() if line.strip()]
        detail = lines[-1] if lines else ""
        logger.info("ffprobe could not read %s: %s", p.name, detail)
        raise MediaError(f"could not read {p.name}: {describe_decoder_error(detail)}")
    if not out:
        raise MediaError(f"{p.name} has no audio track; provide a separate audio file")
    try:
        rate, channels = (int(v) for v in out.splitlines()[0].split(",")[:2])
    except ValueError as exc:
        raise MediaError(f"could not read the audio stream parameters of {p.name}") from exc
    if rate <= 0 or channels <= 0:
        raise MediaError(f"{p.name} has an audio track with {channels} channels at {rate} Hz")
    return rate, channels


def _run_ffmpeg(cmd: list[str], channels: int, p: Path, sink: Callable[[np.ndarray], bool]) -> None:
    """Stream ffmpeg's s16le output as mono float32 chunks into ``sink`` (it returns False to stop)."""
    frame_bytes = 2 * channels
    rest = b""
    with tempfile.TemporaryFile() as errors:
        with subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=errors) as proc:
            stopped = False
            while True:
                block = proc.stdout.read(frame_bytes * _CHUNK_FRAMES)
                if not block:
                    break
                block = rest + block
                usable = len(block) - len(block) % frame_bytes
                rest = block[usable:]
                samples = np.frombuffer(block[:usable], dtype="<i2").astype(np.float32) * (1.0 / 32768)
                if not sink(np.mean(samples.reshape(-1, channels).T, axis=0)):
                    stopped = True
                    proc.kill()
                    break
            code = proc.wait()
        if code != 0 and not stopped:
            errors.seek(0)
            lines = [ln for ln in errors.read().decode("utf-8", "replace").splitlines() if ln.strip()]
            logger.info("ffmpeg could not decode %s: %s", p.name, lines[-1] if lines else code)
            detail = describe_decoder_error(lines[-1] if lines else "")
            raise MediaError(f"could not decode audio from {p.name}: {detail}")


def _ffmpeg_cmd(ffmpeg: str, p: Path, start_s: float | None, duration_s: float) -> list[str]:
    seek = [] if not start_s else ["-ss", f"{start_s:.6f}"]
    return [
        ffmpeg,
        "-nostdin",
        "-v",
        "error",
        *seek,
        "-i",
        str(p),
        "-map",
        "0:a:0",
        "-vn",
        "-sn",
        "-dn",
        "-t",
        f"{duration_s:.6f}",
        "-f",
        "s16le",
        "-acodec",
        "pcm_s16le",
        "-",
    ]


def _collect(limit: int) -> tuple[list[np.ndarray], Callable[[np.ndarray], bool]]:
    chunks: list[np.ndarray] = []
    count = [0]

    def sink(chunk: np.ndarray) -> bool:
        chunks.append(chunk)
        count[0] += chunk.shape[0]
        return count[0] <= limit

    return chunks, sink


def read_full(
    p: Path, sr: int, cap_s: float, params: tuple[int, int] | None = None
) -> tuple[np.ndarray, bool]:
    """Decode a whole track, reading at most ``cap_s`` seconds (bit-identical to ``librosa.load`` below it).

    Args:
        p: A checked audio or video file.
        sr: Target rate in Hz.
        cap_s: Most seconds decoded.
        params: ``(native rate, channels)`` when already probed (skips an ffprobe call).

    Returns:
        ``((S,) float32 mono at sr, truncated)``: ``truncated`` is True when the track is longer than
        ``cap_s`` (the samples are then only its start).

    Raises:
        MediaError: Undecodable file, no audio track, ffmpeg missing.
    """
    if _use_soundfile(p):
        import soundfile as sf

        try:
            with sf.SoundFile(str(p)) as handle:
                native = handle.samplerate
                cap = int(cap_s * native)
                data = handle.read(frames=cap + 1, dtype="float32", always_2d=False)
        except Exception as exc:  # damaged data after a readable header: let ffmpeg try (and explain)
            logger.info("soundfile could not decode %s (%s); trying ffmpeg", p.name, exc)
        else:
            return resample(_mono(data[:cap]), native, sr), data.shape[0] > cap
    ffmpeg, ffprobe = _binaries(p)
    native, channels = params or _stream_params(p, ffprobe)
    cap = int(cap_s * native)
    chunks, sink = _collect(cap)
    _run_ffmpeg(_ffmpeg_cmd(ffmpeg, p, None, cap_s + 0.25), channels, p, sink)
    data = np.concatenate(chunks) if chunks else np.zeros(0, np.float32)
    return resample(data[:cap], native, sr), data.shape[0] > cap


def _count_sf(p: Path, cap_s: float) -> tuple[float, bool]:
    import soundfile as sf

    with sf.SoundFile(str(p)) as handle:
        native = handle.samplerate
        cap = int(cap_s * native)
        total = 0
        while total <= cap:
            got = handle.read(frames=_CHUNK_FRAMES, dtype="float32", always_2d=True).shape[0]
            if got == 0:
                break
            total += got
    return min(total, cap) / native, total > cap


def count_seconds(p: Path, cap_s: float, params: tuple[int, int] | None = None) -> tuple[float, bool]:
    """Measure a track's real length by decoding it and keeping nothing (memory: one chunk).

    Returns:
        ``(seconds, truncated)``; ``truncated`` when the track is longer than ``cap_s``.
    """
    if _use_soundfile(p):
        try:
            return _count_sf(p, cap_s)
        except Exception as exc:  # damaged data after a readable header: let ffmpeg try (and explain)
            logger.info("soundfile could not decode %s (%s); trying ffmpeg", p.name, exc)
    ffmpeg, ffprobe = _binaries(p)
    native, channels = params or _stream_params(p, ffprobe)
    cap = int(cap_s * native)
    total = [0]

    def sink(chunk: np.ndarray) -> bool:
        total[0] += chunk.shape[0]
        return total[0] <= cap

    _run_ffmpeg(_ffmpeg_cmd(ffmpeg, p, None, cap_s + 0.25), channels, p, sink)
    return min(total[0], cap) / native, total[0] > cap


def _span_bounds(sr: int, native: int, start: int, count: int) -> tuple[int, int, int]:
    """First ``sr`` position decoded (on a whole native sample), native start and native count."""
    step = sr // math.gcd(sr, native)  # sr positions that map to whole native samples
    margin = int(SPAN_MARGIN_S * sr)
    first = max(0, (start - margin) // step * step)
    return first, first * native // sr, math.ceil((start + count + margin - first) * native / sr)


def _span_sf(p: Path, sr: int, start: int, count: int) -> tuple[np.ndarray, int, int]:
    import soundfile as sf

    with sf.SoundFile(str(p)) as handle:
        native = handle.samplerate
        first, native_start, native_count = _span_bounds(sr, native, start, count)
        if native_start >= handle.frames > 0:
            return np.zeros(0, np.float32), native, first
        handle.seek(native_start)
        return _mono(handle.read(frames=native_count, dtype="float32", always_2d=False)), native, first


def _span_ffmpeg(p: Path, sr: int, start: int, count: int, params) -> tuple[np.ndarray, int, int]:
    ffmpeg, ffprobe = _binaries(p)
    native, channels = params or _stream_params(p, ffprobe)
    first, native_start, native_count = _span_bounds(sr, native, start, count)
    chunks, sink = _collect(native_count)
    _run_ffmpeg(_ffmpeg_cmd(ffmpeg, p, native_start / native, native_count / native), channels, p, sink)
    return (np.concatenate(chunks)[:native_count] if chunks else np.zeros(0, np.float32)), native, first


def read_span(p: Path, sr: int, start: int, count: int, params: tuple[int, int] | None = None) -> np.ndarray:
    """Decode only samples ``[start, start + count)`` (positions at ``sr``) of a track.

    The span is decoded at the native rate with :data:`SPAN_MARGIN_S` on each side, starting at a native
    sample that falls exactly on an ``sr`` sample, resampled, and cut; away from the file's edges it equals
    the whole track's resampled samples up to the resampler's numerical noise.

    Args:
        p: A checked audio or video file. sr: Rate of the positions. start, count: The span.
        params: ``(native rate, channels)`` when already probed (skips an ffprobe call).

    Returns:
        ``(<= count,)`` float32 (shorter when the track ends inside the span).

    Raises:
        MediaError: Undecodable file, no audio track, ffmpeg missing.
    """
    if count <= 0:
        return np.zeros(0, np.float32)
    data = None
    if _use_soundfile(p):
        try:
            data, native, first = _span_sf(p, sr, start, count)
        except Exception as exc:  # damaged data after a readable header: let ffmpeg try (and explain)
            logger.info("soundfile could not decode %s (%s); trying ffmpeg", p.name, exc)
    if data is None:
        data, native, first = _span_ffmpeg(p, sr, start, count, params)
    out = resample(data, native, sr)
    # the resampled length rounds up: samples past the decoded audio are padding, not signal
    valid = int(data.shape[0] * sr // native)
    return out[start - first : min(valid, start - first + count)]
