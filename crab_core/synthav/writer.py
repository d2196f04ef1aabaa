"""Write SynthAV samples to files: wav (16-bit PCM), PNG frames/masks, H.264/AAC mp4, JSONL rows.

Everything except the mp4 is byte-deterministic for a given array; the mp4 is encoded by an
``ffmpeg`` subprocess (raw RGB frames through a stdin pipe, audio from the wav file) with
``-threads 1`` and bitexact flags, so its bytes depend only on the installed ffmpeg/x264 version.

Every file carries :data:`MARKER` (mp4 ``comment`` tag, PNG ``Software`` text chunk, wav ``LIST/INFO``
``ISFT`` chunk after the samples) so :mod:`crab_core.domain` can tell SynthAV inputs from real ones.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import wave
from collections.abc import Iterable
from pathlib import Path

import numpy as np
from PIL import Image

from crab_core.errors import MediaError

from .render_audio import to_int16
from .world import FPS, SAMPLE_RATE

#: Written into every SynthAV file; :func:`crab_core.domain.is_synthav_file` looks for it.
MARKER = "crab-synthav: SynthAV procedural scene (python -m crab_core synth)"


def write_wav(path: str | Path, audio: np.ndarray, sample_rate: int = SAMPLE_RATE) -> Path:
    """Write mono float audio ``(N,)`` in [-1, 1] as 16-bit PCM wav."""
    path = Path(path)
    with wave.open(str(path), "wb") as f:
        f.setnchannels(1)
        f.setsampwidth(2)
        f.setframerate(sample_rate)
        f.writeframes(to_int16(audio).astype("<i2").tobytes())
    _append_wav_marker(path)
    return path


def _append_wav_marker(path: Path) -> None:
    """Append a ``LIST/INFO/ISFT`` chunk holding :data:`MARKER` and fix the RIFF size."""
    text = MARKER.encode("ascii") + b"\0"
    text += b"\0" * (len(text) % 2)
    info = b"INFO" + b"ISFT" + len(text).to_bytes(4, "little") + text
    data = bytearray(path.read_bytes())
    data += b"LIST" + len(info).to_bytes(4, "little") + info
    data[4:8] = (len(data) - 8).to_bytes(4, "little")
    path.write_bytes(bytes(data))


def write_png(path: str | Path, array: np.ndarray) -> Path:
    """Write ``(H, W, 3)`` RGB or ``(H, W)`` 8-bit gray uint8 as PNG."""
    from PIL.PngImagePlugin import PngInfo

    path = Path(path)
    info = PngInfo()
    info.add_text("Software", MARKER)
    Image.fromarray(np.ascontiguousarray(array, dtype=np.uint8)).save(path, format="PNG", pnginfo=info)
    return path


def write_mask_png(path: str | Path, mask: np.ndarray, binary: bool) -> Path:
    """Binary masks are written as 0/255; index masks keep their class indices (0 = background)."""
    mask = np.asarray(mask)
    return write_png(path, (mask > 0).astype(np.uint8) * 255 if binary else mask.astype(np.uint8))


def ffmpeg_exe() -> str:
    exe = shutil.which("ffmpeg")
    if exe is None:
        raise MediaError("ffmpeg was not found on PATH; install it to write SynthAV mp4 files")
    return exe


def write_mp4(
    path: str | Path,
    frames: np.ndarray,
    wav_path: str | Path,
    fps: int = FPS,
    repeat: int = FPS,
    crf: int = 18,
) -> Path:
    """Encode frames and a wav track as an H.264 (yuv420p) / AAC mp4.

    Args:
        path: output ``.mp4``.
        frames: ``(T, S, S, 3)`` uint8; each is shown ``repeat`` times (one frame per second at
            8 fps gives a T-second clip whose frame ``8 t`` is ``frames[t]``).
        wav_path: the audio track.
        fps: video frame rate.
        repeat: how many video frames each input frame lasts.
        crf: x264 quality (lower is closer to the arrays).
    """
    path = Path(path)
    t, h, w, _ = frames.shape
    if h % 2 or w % 2:
        raise MediaError(f"H.264 needs an even frame size, got {w}x{h}")
    raw = np.repeat(np.ascontiguousarray(frames, dtype=np.uint8), repeat, axis=0).tobytes()
    cmd = [
        ffmpeg_exe(),
        "-hide_banner",
        "-loglevel",
        "error",
        "-y",
        "-f",
        "rawvideo",
        "-pix_fmt",
        "rgb24",
        "-s",
        f"{w}x{h}",
        "-framerate",
        str(fps),
        "-i",
        "pipe:0",
        "-i",
        str(wav_path),
        "-map",
        "0:v:0",
        "-map",
        "1:a:0",
        "-c:v",
        "libx264",
        "-preset",
        "veryfast",
        "-crf",
        str(crf),
        "-pix_fmt",
        "yuv420p",
        "-threads",
        "1",
        "-c:a",
        "aac",
        "-aac_coder",
        "fast",
        "-b:a",
        "48k",
        "-map_metadata",
        "-1",
        "-metadata",
        f"comment={MARKER}",
        "-fflags",
        "+bitexact",
        "-flags:v",
        "+bitexact",
        "-flags:a",
        "+bitexact",
        "-movflags",
        "+faststart",
        str(path),
    ]
    proc = subprocess.run(cmd, input=raw, capture_output=True, check=False)
    if proc.returncode != 0:
        raise MediaError(f"ffmpeg failed writing {path}: {proc.stderr.decode(errors='replace')[-2000:]}")
    return path


def write_manifest(path: str | Path, rows: Iterable[dict]) -> Path:
    """Write rows as JSON Lines (UTF-8, one object per line, keys in insertion order)."""
    path = Path(path)
    with path.open("w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    return path
