"""Cheap duration checks on uploads before anything is decoded: the video stream, the audio track
of a video, and a separate audio file must each fit the app's ``--max-duration``.

Durations come from the container's metadata (``ffprobe``, no decoding). A file ffprobe cannot
read at all is refused here with a plain message, since no decoder would read it either.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from pathlib import Path

from crab_core.errors import MediaError

PROBE_TIMEOUT_S = 30
#: Probes remembered per (path, mtime, size): follow-ups on the same upload copy skip ffprobe.
CACHE_SIZE = 128
_cache: OrderedDict[tuple, dict[str, float]] = OrderedDict()
_cache_lock = threading.Lock()


def stream_durations(path: str | Path, label: str) -> dict[str, float]:
    """``{"video": s, "audio": s}`` for the first stream of each kind ffprobe finds in ``path``.

    A stream without its own duration gets the container's (an upper bound). ``label`` names the
    file in messages (the user's file name, never a server path).

    Raises:
        MediaError: ffprobe is missing, or cannot read the file.
    """
    try:
        st = os.stat(path)
        key = (str(path), st.st_mtime_ns, st.st_size)
    except OSError:
        key = None
    with _cache_lock:
        if key in _cache:
            _cache.move_to_end(key)
            return dict(_cache[key])
    found = _probe(path, label)
    if key is not None:
        with _cache_lock:
            _cache[key] = dict(found)
            while len(_cache) > CACHE_SIZE:
                _cache.popitem(last=False)
    return found


def _probe(path: str | Path, label: str) -> dict[str, float]:
    """The library's metadata probe (:func:`crab_core.media.limits.probe_durations`), as a dict."""
    from crab_core.media.limits import probe_durations

    d = probe_durations(path)
    if not (d.has_video or d.has_audio):
        raise MediaError(
            f"{label} is not a readable video or audio file (damaged, truncated or another kind of file)"
        )
    return {k: v for k, v in (("video", d.video), ("audio", d.audio)) if v is not None}


def check_upload_durations(
    video: str | None, audio: str | None, names: dict[str, str], max_duration_s: float
) -> None:
    """Refuse a video stream, a video's audio track (used when no separate audio is given) or a
    separate audio file longer than ``max_duration_s``.

    Args:
        video / audio: server paths or None. names: ``{server path: the user's file name}``.
        max_duration_s: the app's ``--max-duration``.

    Raises:
        MediaError: naming the file, its length and the limit.
    """
    limit = f"this app accepts at most {max_duration_s:.0f} s (--max-duration)"
    if video is not None:
        name = names.get(video, Path(video).name)
        d = stream_durations(video, name)
        if d.get("video", 0.0) > max_duration_s:
            raise MediaError(f"the video {name} is {d['video']:.0f} s long; {limit}")
        if audio is None and d.get("audio", 0.0) > max_duration_s:
            raise MediaError(f"the audio track of {name} is {d['audio']:.0f} s long; {limit}")
    if audio is not None:
        name = names.get(audio, Path(audio).name)
        d = stream_durations(audio, name)
        if "audio" not in d:
            raise MediaError(f"the audio file {name} has no audio stream")
        if d["audio"] > max_duration_s:
            raise MediaError(f"the audio file {name} is {d['audio']:.0f} s long; {limit}")
