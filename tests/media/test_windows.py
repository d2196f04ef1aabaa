"""Audio windows: the reference's segments for clips up to the nominal length, bounded for longer clips."""

from __future__ import annotations

import pytest
import torch

from crab_core.errors import MediaError, TaskError
from crab_core.media import audio_features, audio_segments, plan_windows
from crab_core.media.windows import Window, cut

SR = 16000


def _ramp(seconds: float) -> torch.Tensor:
    """A waveform whose sample value is its index (so every cut position is visible)."""
    return torch.arange(int(seconds * SR), dtype=torch.float32)


def test_nominal_length_clips_are_cut_as_the_reference_does():
    wave = _ramp(10)
    seg = audio_segments(wave, SR, 10)
    assert seg.shape == (10, 16000)
    for i in range(10):
        assert torch.equal(seg[i], wave[i * 16000 : (i + 1) * 16000])


def test_shorter_clips_keep_the_reference_stretch():
    wave = _ramp(5)  # AVE on a 5-s clip: a nominal second is 0.5 s, as in the reference
    seg = audio_segments(wave, SR, 10)
    assert seg.shape == (10, 8000)
    assert torch.equal(seg[3], wave[24000:32000])


@pytest.mark.parametrize("seconds", [60, 600, 3600])
def test_longer_clips_get_windows_of_the_nominal_length_at_the_reference_starts(seconds):
    n = seconds * SR
    plan = plan_windows(n, SR, 10)
    nps = n // 10
    assert [w.start for w in plan] == [i * nps for i in range(10)]
    assert {w.length for w in plan} == {16000} and {w.taken for w in plan} == {16000}


def test_long_clip_values_are_the_first_second_of_each_nominal_segment():
    wave = _ramp(60)
    seg = audio_segments(wave, SR, 10)
    assert seg.shape == (10, 16000)
    assert torch.equal(seg[4], wave[4 * 96000 : 4 * 96000 + 16000])
    feats = audio_features(wave / wave.max(), SR, 10)
    assert feats.shape == (10, 98, 128)  # the same encoder input as a 10-s clip


def test_avqa_windows_are_two_seconds_for_any_length():
    for seconds in (10, 60, 3600):
        plan = plan_windows(seconds * SR, SR, 10, mode="avqa")
        assert {w.length for w in plan} == {32000}
        assert plan[0].left_pad == 8000 and plan[0].start == 0 and plan[0].taken == 24000
    # a nominal length given explicitly stretches the windows: they are cut to 2 s, the padding kept
    plan = plan_windows(120 * SR, SR, 10, mode="avqa", total_seconds=60)
    assert plan[0] == Window(start=0, stop=16000, left_pad=16000, length=32000)
    assert plan[1] == Window(start=int(5.5 * 32000), stop=int(5.5 * 32000) + 32000, left_pad=0, length=32000)


def test_avqa_left_padding_survives_the_cap():
    wave = _ramp(120)
    seg = audio_segments(wave, SR, 10, mode="avqa", total_seconds=60)
    assert torch.all(seg[0, :16000] == 0) and torch.equal(seg[0, 16000:], wave[:16000])


def test_single_and_explicit_cap():
    wave = _ramp(100)
    single = audio_segments(wave, SR, 5, mode="single", index=3)
    assert single.shape == (1, 16000) and torch.equal(single[0], wave[3 * 320000 : 3 * 320000 + 16000])
    wider = audio_segments(wave, SR, 10, max_window_s=2.5)
    assert wider.shape == (10, 40000)
    with pytest.raises(TaskError, match="max_window_s"):
        plan_windows(SR * 10, SR, 10, max_window_s=0)
    with pytest.raises(TaskError, match="max_window_s"):
        plan_windows(SR * 10, SR, 10, max_window_s=float("inf"))


def test_windows_past_the_end_are_zero_padded():
    wave = _ramp(10)
    seg = audio_segments(wave, SR, 10, 1.5, "uniform")
    assert seg.shape == (10, 24000)  # the cap follows seconds_per_segment
    assert torch.all(seg[-1, 16000:] == 0) and torch.equal(seg[-1, :16000], wave[144000:])
    plan = plan_windows(SR * 10, SR, 10, 1.5)
    assert cut(wave, plan).shape == (10, 24000)


def test_too_short_is_still_rejected():
    with pytest.raises(MediaError, match="too short for 10 segments"):
        audio_segments(torch.zeros(SR), SR, 10)
