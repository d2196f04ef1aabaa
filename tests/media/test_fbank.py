"""Kaldi fbank vs the reference goldens (d_fbank) and edge cases."""

from __future__ import annotations

import math

import pytest
import torch
from safetensors.torch import load_file

from crab_core.errors import MediaError
from crab_core.media.fbank import FBANK_MEAN, FBANK_STD, crab_fbank, kaldi_fbank


@pytest.fixture(scope="module")
def golden(fixtures_dir):
    wave = load_file(str(fixtures_dir / "d_fbank" / "inputs.safetensors"))["waveform"]
    ref = load_file(str(fixtures_dir / "d_fbank" / "outputs.safetensors"))["fbank_normalized"]
    return wave, ref


def test_crab_fbank_matches_golden(golden):
    wave, ref = golden
    out = crab_fbank(wave)
    assert out.shape == ref.shape == (2, 98, 128)
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, ref, atol=1e-4, rtol=0)


def test_kaldi_fbank_per_row_matches_golden(golden):
    wave, ref = golden
    rows = torch.stack([(kaldi_fbank(row) - FBANK_MEAN) / (2 * FBANK_STD) for row in wave])
    torch.testing.assert_close(rows, ref, atol=1e-4, rtol=0)


def test_empty_mel_bin_is_log_eps(golden):
    wave, _ = golden
    raw = kaldi_fbank(wave[0])
    expected = math.log(torch.finfo(torch.float32).eps)
    assert torch.all(raw[:, 3] == raw[0, 3])
    assert raw[0, 3].item() == pytest.approx(expected, abs=1e-6)
    assert torch.all(raw[:, [0, 1, 2, 4]] > expected)


def test_one_d_input_is_batch_of_one(golden):
    wave, ref = golden
    out = crab_fbank(wave[1])
    assert out.shape == (1, 98, 128)
    torch.testing.assert_close(out[0], ref[1], atol=1e-4, rtol=0)


def test_two_seconds_gives_198_frames():
    wave = 0.1 * torch.sin(torch.arange(32000) * 0.05)
    assert crab_fbank(wave).shape == (1, 198, 128)
    assert kaldi_fbank(wave).shape == (198, 128)


def test_frame_count_formula():
    for samples in (400, 401, 559, 560, 1234):
        frames = kaldi_fbank(torch.zeros(samples).uniform_(-0.5, 0.5)).shape[0]
        assert frames == 1 + (samples - 400) // 160


@pytest.mark.parametrize("samples", [0, 1, 399])
def test_short_waveform_raises(samples):
    with pytest.raises(MediaError):
        crab_fbank(torch.zeros(2, samples))
    with pytest.raises(MediaError):
        kaldi_fbank(torch.zeros(samples))


def test_bad_inputs_raise():
    with pytest.raises(MediaError):
        kaldi_fbank(torch.zeros(2, 16000))
    with pytest.raises(MediaError):
        crab_fbank(torch.zeros(1, 1, 16000))
    with pytest.raises(MediaError):
        crab_fbank(torch.zeros(16000, dtype=torch.int16))


def test_silence_is_finite():
    out = crab_fbank(torch.zeros(16000))
    assert torch.isfinite(out).all()
