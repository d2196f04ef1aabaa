"""Where each audio segment of a task lies in a clip: the reference's windows, bounded in length.

The reference cuts a clip of ``n`` samples into ``tot`` nominal "seconds" of ``nps = int(n / tot)`` samples
each, so a clip longer than the task's nominal length stretches every window (an AVE window of a 30-minute
track would be 180 s, and BEATs' attention grows with the square of that). Here every window keeps the
reference's start and is cut to at most ``max_window_s`` real seconds (default: the window's nominal length,
1 s for AVE/AVVP, 2 s for AVQA). For clips up to the nominal length nothing changes; the audio fed to the
encoder is bounded for any input length.

A :class:`Window` is a plan, not data: :func:`cut` applies it to a waveform in memory, and
:func:`crab_core.media.audio.load_audio_segments` decodes only the planned samples from a file.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from crab_core.errors import MediaError, TaskError

AUDIO_MODES = ("uniform", "avqa", "single")
MIN_AUDIO_SECONDS = 0.5
"""Shortest accepted clip: anything shorter (or empty) is rejected."""
MIN_SEGMENT_SAMPLES = 400 + 15 * 160
"""Shortest accepted segment at 16 kHz: 16 fbank frames, i.e. one row of BEATs' 16x16 patches."""


@dataclass(frozen=True)
class Window:
    """One segment: ``left_pad`` zeros, then ``wave[start:stop]``, then zeros up to ``length`` samples."""

    start: int
    stop: int
    left_pad: int
    length: int

    @property
    def taken(self) -> int:
        """Number of waveform samples the segment holds (``stop - start``)."""
        return self.stop - self.start


def _window(start: int, avail: int, window: int, cap: int, left_pad: bool) -> Window:
    """The reference's ``_fit(wave[start:start+avail], window, left_pad)`` cut to its first ``cap``
    samples."""
    avail = max(0, avail)
    pad = max(0, window - avail) if left_pad else 0
    length = min(window, cap)
    pad = min(pad, length)
    take = min(avail, length - pad)
    return Window(start, start + take, pad, length)


def plan_windows(
    n: int,
    sr: int,
    num_segments: int,
    seconds_per_segment: float | None = None,
    mode: str = "uniform",
    *,
    index: int | None = None,
    total_seconds: float | None = None,
    max_window_s: float | None = None,
) -> list[Window]:
    """The reference's per-task segments of a clip of ``n`` samples, each at most ``max_window_s`` long.

    * ``"uniform"`` (AVE, AVVP, Ref-AVS, AVSS train: ``tot = num_segments = 10``; S4/MS3/ARIG: 5):
      segment ``i`` starts at ``i * nps`` (``nps = int(n / tot)``) and spans ``seconds_per_segment * nps``
      samples (default 1 nominal second), right-padded with zeros.
    * ``"avqa"`` (MUSIC-AVQA): ``num_segments`` windows of ``seconds_per_segment`` (default 2) nominal seconds
      spanning ``[t - w/4, t + 3w/4]``, ``t = i * tot / num_segments``; ``tot`` is ``total_seconds`` or the
      clip length rounded to whole seconds; left-padded at ``t = 0``, right-padded past the end.
    * ``"single"``: only segment ``index`` of the ``"uniform"`` split.

    Args:
        n: Clip length in samples.
        sr: Sampling rate (for ``tot`` in ``"avqa"`` and the window cap).
        num_segments: ``tot`` for ``"uniform"``/``"single"``, the window count for ``"avqa"``.
        seconds_per_segment: Window length in nominal seconds (default 1, or 2 for ``"avqa"``).
        mode: ``"uniform"``, ``"avqa"`` or ``"single"``.
        index: Segment index for ``"single"``.
        total_seconds: Nominal clip length for ``"avqa"``.
        max_window_s: Longest window in real seconds (default: ``seconds_per_segment``); a longer
            reference window keeps its start and is cut to this length.

    Returns:
        ``num_segments`` windows (1 for ``"single"``), all of the same ``length``.

    Raises:
        TaskError: For an unknown mode, a bad segment count, a bad ``max_window_s`` or a missing /
            out-of-range ``index``.
    """
    if mode not in AUDIO_MODES:
        raise TaskError(f"unknown audio mode {mode!r}; expected one of {AUDIO_MODES}")
    if num_segments < 1:
        raise TaskError(f"num_segments must be >= 1, got {num_segments}")
    seconds = (
        float(seconds_per_segment) if seconds_per_segment is not None else (2.0 if mode == "avqa" else 1.0)
    )
    cap_s = seconds if max_window_s is None else float(max_window_s)
    if not cap_s > 0 or cap_s == float("inf"):
        raise TaskError(f"max_window_s must be a positive number of seconds, got {max_window_s}")
    cap = int(round(cap_s * sr))
    if mode == "avqa":
        tot = float(total_seconds) if total_seconds is not None else float(max(1, round(n / sr)))
        nps = int(n / tot)
        window = int(seconds * nps)
        lead = seconds / 4  # 0.5 s of a 2-s window lies before the anchor second
        out = []
        for i in range(num_segments):
            t = i * tot / num_segments
            start, end = max(0.0, t - lead), min(tot, t - lead + seconds)
            a, b = int(start * nps), min(n, int(nps * end))
            out.append(_window(a, b - a, window, cap, left_pad=t - lead < 0))
        return out
    nps = int(n / num_segments)
    window = int(seconds * nps)
    plan = [_window(i * nps, min(window, n - i * nps), window, cap, False) for i in range(num_segments)]
    if mode == "single":
        if index is None or not 0 <= index < num_segments:
            raise TaskError(f"'single' audio mode needs 0 <= index < {num_segments}, got {index}")
        plan = [plan[index]]
    return plan


def check_plan(plan: list[Window], n: int, sr: int, num_segments: int) -> None:
    """Reject clips too short for the encoder.

    Raises:
        MediaError: If the clip is shorter than 0.5 s or its segments hold fewer than 16 fbank frames.
    """
    if n < MIN_AUDIO_SECONDS * sr:
        raise MediaError(f"audio is too short: {n / sr:.3f} s, at least {MIN_AUDIO_SECONDS} s is needed")
    min_samples = MIN_SEGMENT_SAMPLES * sr // 16000
    length = plan[0].length
    if length < min_samples:
        raise MediaError(
            f"audio is too short for {num_segments} segments: {n / sr:.2f} s gives {length / sr:.3f} s per "
            f"segment, at least {min_samples / sr:.3f} s is needed"
        )


def assemble(window: Window, samples: Tensor) -> Tensor:
    """Pad ``samples`` (what was read for ``window``, possibly fewer) into the ``(length,)`` segment."""
    samples = samples[: window.taken]
    right = window.length - window.left_pad - samples.shape[0]
    return torch.nn.functional.pad(samples, (window.left_pad, right))


def cut(wave: Tensor, plan: list[Window]) -> Tensor:
    """Apply a plan to an in-memory ``(S,)`` waveform; returns ``(T, length)`` float32."""
    return torch.stack([assemble(w, wave[w.start : w.stop]) for w in plan])
