"""Kaldi-compatible log-mel filterbank (pure torch) and Crab's normalised BEATs input.

The reference (``dataset/audio_processor.py::preprocess``) calls
``torchaudio.compliance.kaldi.fbank(wave * 2**15, num_mel_bins=128, sample_frequency=16000,
frame_length=25, frame_shift=10)`` with every other option at its default, then normalises with
``(fbank - 15.41663) / (2 * 6.55582)``. torchaudio is not a dependency here, so this module re-derives the
same recipe with the same float32 operations in the same order, which makes the result bit-identical on CPU:

* frames of 25 ms every 10 ms, only frames that fit completely (``snip_edges``), no dither;
* per-frame DC removal, pre-emphasis 0.97 (the first sample is pre-emphasised against itself),
  Povey window (``hann(periodic=False) ** 0.85``), zero padding to the next power of two (512);
* power spectrum ``|rfft|**2``, triangular mel filters between 20 Hz and Nyquist on Kaldi's mel scale
  (``1127 ln(1 + f/700)``), a zero column for the Nyquist bin, then ``log(max(x, eps_float32))``.

With 128 bins on a 512-point FFT at 16 kHz, mel triangle 3 (0-based) holds no FFT bin. Real Kaldi refuses
these settings; torchaudio (and therefore Crab) writes ``log(eps) = -15.942385`` in that column for every
frame. This module reproduces that constant column.
"""

from __future__ import annotations

import math
from functools import lru_cache

import torch
from torch import Tensor

from crab_core.errors import MediaError

FBANK_MEAN = 15.41663
FBANK_STD = 6.55582

_PREEMPHASIS = 0.97
_LOW_FREQ = 20.0
_POVEY_POWER = 0.85
_EPS = torch.finfo(torch.float32).eps


def _mel(freq: float) -> float:
    return 1127.0 * math.log(1.0 + freq / 700.0)


@lru_cache(maxsize=8)
def _mel_banks(num_bins: int, padded_size: int, sample_rate: float) -> Tensor:
    """Triangular Kaldi mel filters, float32, with the Nyquist column appended as zeros.

    Args:
        num_bins: Number of mel triangles.
        padded_size: FFT length (a power of two).
        sample_rate: Sampling rate in Hz.

    Returns:
        ``(num_bins, padded_size // 2 + 1)`` float32 weights. Treat as read-only (cached).
    """
    if num_bins <= 3:
        raise ValueError("Kaldi mel banks need more than 3 bins")
    nyquist = 0.5 * sample_rate
    mel_low, mel_high = _mel(_LOW_FREQ), _mel(nyquist)
    delta = (mel_high - mel_low) / (num_bins + 1)
    index = torch.arange(num_bins).unsqueeze(1)  # int64, promoted to float32 below
    left = mel_low + index * delta
    center = mel_low + (index + 1.0) * delta
    right = mel_low + (index + 2.0) * delta
    bin_hz = (sample_rate / padded_size) * torch.arange(float(padded_size // 2))
    fft_mel = (1127.0 * (1.0 + bin_hz / 700.0).log()).unsqueeze(0)
    rising = (fft_mel - left) / (center - left)
    falling = (right - fft_mel) / (right - center)
    banks = torch.max(torch.zeros(1), torch.min(rising, falling))
    return torch.nn.functional.pad(banks, (0, 1), mode="constant", value=0.0)


@lru_cache(maxsize=8)
def _povey_window(size: int) -> Tensor:
    return torch.hann_window(size, periodic=False, dtype=torch.float32).pow(_POVEY_POWER)


def _frame_sizes(sample_rate: int, frame_length_ms: float, frame_shift_ms: float) -> tuple[int, int, int]:
    size = int(sample_rate * frame_length_ms * 0.001)
    shift = int(sample_rate * frame_shift_ms * 0.001)
    if size < 2 or shift < 1:
        raise ValueError(f"bad frame geometry: length {size} samples, shift {shift} samples")
    padded = 1 << (size - 1).bit_length()
    return size, shift, padded


def _log_mel(
    scaled: Tensor, sample_rate: int, num_mel_bins: int, frame_length_ms: float, frame_shift_ms: float
) -> Tensor:
    """Kaldi log-mel of already int16-scaled waveforms.

    Args:
        scaled: ``(N, S)`` float32 waveforms in int16 units.
        sample_rate: Sampling rate in Hz.
        num_mel_bins: Number of mel bins.
        frame_length_ms: Window length in milliseconds.
        frame_shift_ms: Hop in milliseconds.

    Returns:
        ``(N, frames, num_mel_bins)`` float32 log-mel energies.
    """
    size, shift, padded = _frame_sizes(sample_rate, frame_length_ms, frame_shift_ms)
    if scaled.shape[-1] < size:
        raise MediaError(
            f"waveform has {scaled.shape[-1]} samples, shorter than one {frame_length_ms:g} ms frame "
            f"({size} samples at {sample_rate} Hz)"
        )
    frames = scaled.unfold(-1, size, shift)  # (N, m, size)
    frames = frames - frames.mean(dim=-1, keepdim=True)
    previous = torch.cat((frames[..., :1], frames[..., :-1]), dim=-1)
    frames = frames - _PREEMPHASIS * previous
    frames = frames * _povey_window(size).to(frames.device)
    frames = torch.nn.functional.pad(frames, (0, padded - size))
    power = torch.fft.rfft(frames).abs().pow(2.0)  # (N, m, padded // 2 + 1)
    banks = _mel_banks(num_mel_bins, padded, float(sample_rate)).to(power.device)
    n, m = power.shape[:2]
    energies = torch.mm(power.reshape(n * m, -1), banks.T).reshape(n, m, num_mel_bins)
    return torch.clamp_min(energies, _EPS).log()


def _as_float32(waveform: Tensor) -> Tensor:
    if not isinstance(waveform, Tensor):
        raise MediaError(f"waveform must be a torch.Tensor, got {type(waveform).__name__}")
    if not waveform.is_floating_point():
        raise MediaError(f"waveform must be floating point in [-1, 1], got {waveform.dtype}")
    return waveform.to(torch.float32)


def kaldi_fbank(
    waveform: Tensor,
    sample_rate: int = 16000,
    num_mel_bins: int = 128,
    frame_length_ms: float = 25.0,
    frame_shift_ms: float = 10.0,
) -> Tensor:
    """Kaldi log-mel filterbank of one waveform, as torchaudio's ``kaldi.fbank(waveform * 2**15)``.

    Args:
        waveform: ``(S,)`` float waveform in [-1, 1].
        sample_rate: Sampling rate in Hz.
        num_mel_bins: Number of mel bins.
        frame_length_ms: Window length in milliseconds.
        frame_shift_ms: Hop in milliseconds.

    Returns:
        ``(frames, num_mel_bins)`` float32 log-mel energies, ``frames = 1 + (S - win) // hop``.

    Raises:
        MediaError: If the input is not a 1-D float tensor or is shorter than one frame.
    """
    waveform = _as_float32(waveform)
    if waveform.dim() != 1:
        raise MediaError(f"kaldi_fbank expects a 1-D waveform, got shape {tuple(waveform.shape)}")
    scaled = (waveform * 2**15).unsqueeze(0)
    return _log_mel(scaled, sample_rate, num_mel_bins, frame_length_ms, frame_shift_ms)[0]


def crab_fbank(waveforms: Tensor) -> Tensor:
    """Crab's BEATs input: 128-bin Kaldi fbank at 16 kHz, normalised by ``(x - mean) / (2 * std)``.

    Args:
        waveforms: ``(N, S)`` (or ``(S,)``, treated as N=1) float waveforms in [-1, 1] at 16 kHz.

    Returns:
        ``(N, frames, 128)`` float32, e.g. ``(N, 98, 128)`` for 1 s and ``(N, 198, 128)`` for 2 s.

    Raises:
        MediaError: If the input is not a 1-D/2-D float tensor or is shorter than one 25 ms frame.
    """
    waveforms = _as_float32(waveforms)
    if waveforms.dim() == 1:
        waveforms = waveforms.unsqueeze(0)
    if waveforms.dim() != 2:
        raise MediaError(f"crab_fbank expects (N, S) or (S,), got shape {tuple(waveforms.shape)}")
    log_mel = _log_mel(waveforms * 2**15, 16000, 128, 25.0, 10.0)
    return (log_mel - FBANK_MEAN) / (2 * FBANK_STD)
