"""Render the sound of a :class:`~crab_core.synthav.world.Scene`: n s (10, or 5 for S4 / MS3 / ARIG), mono,
16 kHz (numpy only).

Each source has a one-second template (its class signature, shifted in pitch and tempo, with
8-ms fades) played in every sounding second at the source's gain; the reference level (0 dB) is
an RMS of 0.1. White noise is added at the clip's SNR (relative to the mixture's RMS), the clip is
scaled down if it would clip, and samples are quantised to the 16-bit grid so that the wav file and
the in-memory array are identical.

Signatures (base pitch, shifted by +-3 semitones): guitar plucked decaying harmonics at 196 Hz;
violin vibrato sawtooth at 440 Hz; flute pure tone at 880 Hz with breath noise; drum low noisy
thumps 2-4 per second; piano slightly inharmonic decaying harmonics at 262 Hz; trumpet square wave
at 349 Hz; bell inharmonic partials at 660 Hz with a long decay; dog formant-like bark bursts
around 450 Hz; car 55-Hz rumble with amplitude modulation; bird fast 2.5-4.5 kHz chirps.
"""

from __future__ import annotations

import numpy as np

from .world import SAMPLE_RATE, Scene, SceneObject

REF_RMS = 0.1
_FADE = int(0.008 * SAMPLE_RATE)
_T = np.arange(SAMPLE_RATE, dtype=np.float32) / SAMPLE_RATE
_TWO_PI = np.float32(2 * np.pi)


def _partials(phase: np.ndarray, ratios, amps) -> np.ndarray:
    """Sum of ``amps[k] * sin(ratios[k] * phase)``; ``phase`` ``(N,)`` -> ``(N,)``.

    Integer ratios use the recurrence ``sin((h+1)x) = 2 cos(x) sin(hx) - sin((h-1)x)`` (one sine and
    one cosine for all harmonics); other ratios evaluate each sine.
    """
    ratios, amps = list(ratios), [np.float32(a) for a in amps]
    if not all(float(r).is_integer() for r in ratios):
        r = np.asarray(ratios, np.float32)[:, None]
        return np.asarray(amps, np.float32) @ np.sin(r * phase[None, :])
    weight = dict(zip((int(r) for r in ratios), amps))
    two_cos = 2 * np.cos(phase)
    prev, cur = np.zeros_like(phase), np.sin(phase)
    out = weight.get(1, np.float32(0)) * cur
    for h in range(2, max(weight) + 1):
        prev, cur = cur, two_cos * cur - prev
        if h in weight:
            out += weight[h] * cur
    return out


def _period_time(n: int) -> np.ndarray:
    """Time since the last of ``n`` evenly spaced onsets in the second."""
    x = _T * np.float32(n)
    return (x - np.floor(x)) / np.float32(n)


def _sustain(attack: float = 0.05) -> np.ndarray:
    return np.minimum(1.0, _T / attack).astype(np.float32)


def _white(seed: int, n: int) -> np.ndarray:
    """Unit-variance white noise ``(n,)`` float32: uniform random bytes (much cheaper than Gaussians)."""
    raw = np.random.default_rng(seed).bit_generator.random_raw(-(-n // 8)).astype("<u8")
    u = raw.view(np.uint8)[:n].astype(np.float32)
    return (u - np.float32(127.5)) * np.float32(1.0 / np.sqrt((256**2 - 1) / 12.0))


def _template_raw(obj: SceneObject, noise: np.ndarray) -> np.ndarray:
    shift = np.float32(2.0 ** (obj.semitones / 12.0))
    fast = obj.tempo > 1.0
    cls = obj.cls
    if cls == "guitar":
        tau = _period_time(2 if fast else 1)
        return np.exp(-5 * tau) * _partials(
            _TWO_PI * 196 * shift * _T, range(1, 7), [1 / h for h in range(1, 7)]
        )
    if cls == "violin":
        vib = 1 + 0.006 * np.sin(_TWO_PI * 5.5 * obj.tempo * _T)
        phase = _TWO_PI * 440 * shift * np.cumsum(vib, dtype=np.float32) / SAMPLE_RATE
        return _sustain() * _partials(phase, range(1, 9), [(-1) ** (h + 1) / h for h in range(1, 9)])
    if cls == "flute":
        tone = _partials(_TWO_PI * 880 * shift * _T, (1, 2), (1.0, 0.15))
        return _sustain(0.08) * (tone + 0.12 * np.diff(noise, prepend=0))
    if cls == "drum":
        tau = _period_time(int(np.clip(round(3 * obj.tempo), 2, 4)))
        body = np.sin(_TWO_PI * (60 * shift * tau + 2 * np.exp(-30 * tau))) * np.exp(-18 * tau)
        smooth = np.convolve(noise, np.full(8, 1 / 8, np.float32), mode="same")
        return body + 0.6 * smooth * np.exp(-40 * tau)
    if cls == "piano":
        tau = _period_time(2 if fast else 1)
        ratios = [h * np.sqrt(1 + 0.0004 * h * h) for h in range(1, 9)]
        return np.exp(-3 * tau) * _partials(
            _TWO_PI * 262 * shift * tau, ratios, [h**-1.2 for h in range(1, 9)]
        )
    if cls == "trumpet":
        return _sustain(0.03) * _partials(
            _TWO_PI * 349 * shift * _T, (1, 3, 5, 7, 9), (1, 1 / 3, 1 / 5, 1 / 7, 1 / 9)
        )
    if cls == "bell":
        tau = _period_time(2 if obj.tempo > 1.15 else 1)
        ratios, amps = (1.0, 2.76, 5.40, 8.93, 13.34), (1.0, 0.6, 0.4, 0.25, 0.15)
        return np.exp(-1.5 * tau) * _partials(_TWO_PI * 660 * shift * tau, ratios, amps)
    if cls == "dog":
        tau = _period_time(3 if fast else 2)
        env = np.where(tau < 0.13, np.sin(np.pi * np.minimum(tau, 0.13) / 0.13) ** 2, 0).astype(np.float32)
        phase = _TWO_PI * 450 * shift * (tau - 0.75 * tau * tau)
        return env * (_partials(phase, range(1, 7), (0.5, 1.0, 0.8, 0.4, 0.2, 0.1)) + 0.4 * noise)
    if cls == "car":
        am = 1 + 0.5 * np.sin(_TWO_PI * 4.5 * obj.tempo * _T)
        rumble = _partials(_TWO_PI * 55 * shift * _T, range(1, 7), [1 / h for h in range(1, 7)])
        smooth = np.convolve(noise, np.full(16, 1 / 16, np.float32), mode="same")
        return am * (rumble + 2.0 * smooth)
    if cls == "bird":
        tau = _period_time(int(np.clip(round(5 * obj.tempo), 4, 6)))
        env = np.where(tau < 0.07, np.sin(np.pi * np.minimum(tau, 0.07) / 0.07), 0).astype(np.float32)
        return env * np.sin(_TWO_PI * shift * (2500 * tau + 0.5 * 2000 / 0.07 * tau * tau))
    raise ValueError(f"unknown class {cls!r}")


def source_template(obj: SceneObject) -> np.ndarray:
    """One second of an object's sound, ``(16000,)`` float32 at unit RMS, with 8-ms fades."""
    noise = _white(obj.sound_seed, SAMPLE_RATE)
    x = np.asarray(_template_raw(obj, noise), np.float32)
    ramp = np.linspace(0, 1, _FADE, dtype=np.float32)
    x[:_FADE] *= ramp
    x[-_FADE:] *= ramp[::-1]
    return x / max(float(np.sqrt(np.mean(x * x))), 1e-8)


def render_audio(scene: Scene) -> np.ndarray:
    """The clip's mixture ``(n * 16000,)`` float32 in [-1, 1] for an n-second scene (160000 samples for
    10 s, 80000 for 5 s), on the 16-bit grid (``k / 32767``)."""
    mix = np.zeros((scene.num_seconds, SAMPLE_RATE), np.float32)
    for obj in scene.audible:
        gain = np.float32(REF_RMS * 10.0 ** (obj.gain_db / 20.0))
        mix += np.asarray(obj.sounding, np.float32)[:, None] * (gain * source_template(obj))[None, :]
    mix = mix.reshape(-1)
    rms = float(np.sqrt(np.mean(mix * mix))) or REF_RMS * 0.1
    noise_rms = np.float32(rms / 10.0 ** (scene.background.snr_db / 20.0))
    mix += noise_rms * _white(scene.background.noise_seed, mix.size)
    peak = float(np.abs(mix).max())
    if peak > 0.95:
        mix *= np.float32(0.95 / peak)
    return (np.round(mix * 32767) / 32767).astype(np.float32)


def to_int16(audio: np.ndarray) -> np.ndarray:
    """Float samples on the 16-bit grid -> int16 (exact inverse of the quantisation above)."""
    return np.round(np.asarray(audio, np.float64) * 32767).astype(np.int16)
