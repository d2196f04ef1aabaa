"""Audio decoding (equal to librosa.load), per-task segmentation and fbank features."""

from __future__ import annotations

import shutil
import subprocess

import numpy as np
import pytest
import soundfile as sf
import torch

from crab_core.errors import MediaError, TaskError
from crab_core.media import audio_features, audio_segments, load_audio, load_clip
from crab_core.media.fbank import crab_fbank

REAL_AUDIO = {
    "ave/-67UNKFmRLk.mp3": 160125,
    "ave/-67UNKFmRLk.mp4": 160125,
    "avqa/00006835.mp3": 960069,
    "s4/audio.wav": 80320,
    "ms3/audio.wav": 80320,
    "avss/audio.wav": 160000,
    "ref-avs/audio.wav": 160000,
}

needs_ffmpeg = pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="ffmpeg not installed")


@pytest.mark.parametrize("name", sorted(REAL_AUDIO))
def test_real_audio_loads(real_media_dir, name):
    wave = load_audio(real_media_dir / name)
    assert wave.dtype == torch.float32 and wave.dim() == 1
    assert wave.shape[0] == REAL_AUDIO[name]
    assert 0 < wave.abs().max() <= 1.0


def test_equal_to_librosa_load(real_media_dir):
    librosa = pytest.importorskip("librosa")
    for name in ("ave/-67UNKFmRLk.mp3", "ave/-67UNKFmRLk.mp4", "s4/audio.wav"):
        path = real_media_dir / name
        ref, _ = librosa.load(str(path), sr=16000, mono=True)
        np.testing.assert_array_equal(load_audio(path).numpy(), ref)


def test_resampled_wav_equals_librosa(tmp_path):
    librosa = pytest.importorskip("librosa")
    path = tmp_path / "s44.wav"
    data = np.random.default_rng(0).uniform(-0.5, 0.5, (44100 + 37, 2)).astype(np.float32)
    sf.write(path, data, 44100)
    ref, _ = librosa.load(str(path), sr=16000, mono=True)
    np.testing.assert_array_equal(load_audio(path).numpy(), ref)


@needs_ffmpeg
@pytest.mark.parametrize(
    "ext,codec",
    [
        ("m4a", "aac"),
        ("aac", "aac"),
        ("flac", "flac"),
        ("ogg", "libvorbis"),
        ("mp3", "libmp3lame"),
        ("mp4", "aac"),
    ],
)
def test_generated_formats(tmp_path, ext, codec):
    path = tmp_path / f"tone.{ext}"
    cmd = [
        "ffmpeg",
        "-v",
        "error",
        "-y",
        "-f",
        "lavfi",
        "-i",
        "sine=frequency=440:sample_rate=22050:duration=1",
        "-c:a",
        codec,
        str(path),
    ]
    if subprocess.run(cmd, check=False).returncode != 0:
        pytest.skip(f"this ffmpeg cannot encode {codec}")
    wave = load_audio(path)
    assert abs(wave.shape[0] - 16000) < 1600  # encoder padding varies by codec
    assert wave.abs().max() > 0.05


def test_avqa_windows_match_reference_formula(real_media_dir):
    wave = load_audio(real_media_dir / "avqa/00006835.mp3")
    feats = audio_features(wave, 16000, 10, mode="avqa")
    assert feats.shape == (10, 198, 128) and feats.dtype == torch.float32
    audio = wave.numpy()
    nps = int(len(audio) / 60)
    expected = []
    for t in range(0, 60, 6):
        start, end = max(0, t - 0.5), min(60, t + 1.5)
        seg = audio[int(start * nps) : int(nps * end)]
        if t - 0.5 < 0:
            seg = np.concatenate((np.zeros(2 * nps - len(seg), np.float32), seg))
        expected.append(crab_fbank(torch.from_numpy(seg).unsqueeze(0))[0])
    assert torch.equal(feats, torch.stack(expected))


def test_uniform_and_single(real_media_dir):
    wave = load_audio(real_media_dir / "s4/audio.wav")
    uniform = audio_features(wave, 16000, 5)
    assert uniform.shape == (5, 98, 128)
    nps = int(wave.shape[0] / 5)
    assert torch.equal(uniform[2], crab_fbank(wave[2 * nps : 3 * nps].unsqueeze(0))[0])
    single = audio_features(wave, 16000, 5, mode="single", index=2)
    assert single.shape == (1, 98, 128) and torch.equal(single[0], uniform[2])
    ave = audio_features(load_audio(real_media_dir / "ave/-67UNKFmRLk.mp3"), 16000, 10)
    assert ave.shape == (10, 98, 128)


def test_segmentation_padding_and_generalisation():
    wave = torch.linspace(-0.5, 0.5, 16000 * 10)
    seg = audio_segments(wave, 16000, 10, 1.5, "uniform")
    assert seg.shape == (10, 24000)
    assert torch.all(seg[-1, 16000:] == 0)  # last window runs past the end: zero right-padding
    avqa = audio_segments(wave, 16000, 10, mode="avqa")  # 10 s clip: t = 0, 1, ..., 9
    assert avqa.shape == (10, 32000)
    assert torch.all(avqa[0, :8000] == 0) and torch.equal(avqa[0, 8000:], wave[:24000])
    assert torch.equal(avqa[3], wave[int(2.5 * 16000) : int(4.5 * 16000)])
    assert torch.all(avqa[9, 24000:] == 0)


def test_bad_segmentation_arguments():
    wave = torch.zeros(16000 * 2)
    with pytest.raises(TaskError):
        audio_segments(wave, 16000, 5, mode="nope")
    with pytest.raises(TaskError):
        audio_segments(wave, 16000, 5, mode="single")
    with pytest.raises(TaskError):
        audio_segments(wave, 16000, 5, mode="single", index=5)
    with pytest.raises(MediaError, match="too short"):
        audio_segments(torch.zeros(4000), 16000, 1)
    with pytest.raises(MediaError, match="too short for 10 segments"):
        audio_segments(torch.zeros(16000), 16000, 10)
    with pytest.raises(MediaError, match="16000 Hz"):
        audio_features(torch.zeros(44100), 44100, 1)


def test_load_clip_audio_only_avqa(real_media_dir):
    clip = load_clip(audio=real_media_dir / "avqa/00006835.mp3", task_frames=10, audio_mode="avqa")
    assert clip.frames is None and clip.audio.shape == (10, 198, 128)
    assert clip.duration_s == pytest.approx(60.0, abs=0.1)
