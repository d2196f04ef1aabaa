"""Issue #14: the duration limit applies to the video, its audio track and a separate audio file, before
decoding; the decoders cap what they read whatever the header says; messages name the limit and the flag
and never a decoder's internals; ``infer`` rejects a bad ``--max-new-tokens``."""

from __future__ import annotations

import shutil
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf
import torch

from crab_core.errors import MediaError, TaskError
from crab_core.media import (
    Durations,
    check_media,
    describe_decoder_error,
    load_audio,
    load_audio_segments,
    load_clip,
    load_video_frames,
    plan_windows,
    probe_durations,
)
from crab_core.media import audio as audio_mod
from crab_core.media.windows import cut
from tests._helpers import REPO

pytestmark = pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="ffmpeg not installed")


def _ffmpeg(*args):
    subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-y", *map(str, args)], check=True)


def _video(seconds):
    return ["-f", "lavfi", "-t", str(seconds), "-i", "testsrc=size=64x64:rate=2"]


def _tone(seconds):
    return ["-f", "lavfi", "-t", str(seconds), "-i", "sine=frequency=440:sample_rate=8000"]


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("limits")
    enc = ["-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p"]
    _ffmpeg(*_video(10), *enc, "-an", d / "v10.mp4")
    _ffmpeg(*_video(10), *_tone(120), *enc, "-c:a", "aac", "-b:a", "16k", d / "track120.mp4")
    _ffmpeg(*_video(120), *enc, "-an", d / "v120.mp4")
    with open(d / "piped.mkv", "wb") as out:  # written to a pipe: the file declares no duration at all
        cmd = ["ffmpeg", "-nostdin", "-v", "error", *_tone(120), "-c:a", "aac", "-f", "matroska", "pipe:1"]
        subprocess.run(cmd, stdout=out, check=True)
    t = np.arange(120 * 8000) / 8000
    sf.write(
        d / "long.wav",
        (0.3 * np.sin(2 * np.pi * 440 * t) * (1 + np.floor(t) % 7)).astype(np.float32) / 7,
        8000,
    )
    sf.write(d / "s61.wav", np.full(61 * 8000, 0.1, np.float32), 8000)
    sf.write(d / "s10.wav", np.full(10 * 8000, 0.1, np.float32), 8000)
    return d


def test_separate_audio_file_is_rejected_from_metadata_before_decoding(files, monkeypatch):
    def no_decoding(*args, **kwargs):
        raise AssertionError("decoded although the header says it is too long")

    monkeypatch.setattr(audio_mod, "read_full", no_decoding)
    monkeypatch.setattr(audio_mod, "read_span", no_decoding)
    msg = r"^the audio file long\.wav is 120 s long; the limit is 60 s \(--max-duration\)$"
    with pytest.raises(MediaError, match=msg):
        load_clip(files / "v10.mp4", audio=files / "long.wav", task_frames=10, image_size=32)
    with pytest.raises(MediaError, match=msg):
        check_media(files / "v10.mp4", files / "long.wav")


def test_audio_track_of_a_video_is_limited_too(files):
    msg = r"^the audio track of track120\.mp4 is 120 s long; the limit is 60 s \(--max-duration\)$"
    with pytest.raises(MediaError, match=msg):
        load_clip(files / "track120.mp4", task_frames=10, image_size=32)
    with pytest.raises(MediaError, match=msg):
        check_media(files / "track120.mp4")
    # with a separate audio file the video's own track is not used, so it is not limited
    clip = load_clip(files / "track120.mp4", audio=files / "s10.wav", task_frames=10, image_size=32)
    assert clip.audio.shape == (10, 98, 128) and clip.duration_s == pytest.approx(10, abs=0.6)
    check_media(files / "track120.mp4", files / "s10.wav")


def test_video_stream_is_limited_before_the_decoder_opens(files):
    with pytest.raises(
        MediaError, match=r"^the video v120\.mp4 is 120 s long; the limit is 60 s \(--max-duration\)$"
    ):
        load_video_frames(files / "v120.mp4", 10, 32)
    assert load_video_frames(files / "v120.mp4", 10, 32, max_duration_s=3600).shape == (10, 32, 32, 3)


def test_tolerance_accepts_container_rounding_but_not_a_second_more(files, real_media_dir):
    clip = load_clip(audio=real_media_dir / "avqa/00006835.mp3", task_frames=10, audio_mode="avqa")
    assert clip.audio.shape == (10, 198, 128)  # 60.004 s under a 60-s limit
    with pytest.raises(MediaError, match="s61.wav is 61 s long; the limit is 60 s"):
        load_audio(files / "s61.wav")


def test_probe_reads_stream_durations(files):
    info = probe_durations(files / "track120.mp4")
    assert info.video == pytest.approx(10, abs=0.6) and info.audio == pytest.approx(120, abs=0.6)
    assert info.has_video and info.has_audio and info.audio_params == (8000, 1)
    assert probe_durations(files / "piped.mkv").audio is None  # nothing declared


@pytest.mark.parametrize("source", ["long.wav", "track120.mp4"])
def test_raised_limit_decodes_only_bounded_windows(files, source):
    segs, seconds = load_audio_segments(files / source, 10, max_duration_s=3600)
    assert segs.shape == (10, 16000) and seconds == pytest.approx(120, abs=0.1)
    full = load_audio(files / source, max_duration_s=3600)
    # exactly the windows planned for the declared length, cut from the whole decoded track
    plan = plan_windows(int(round(probe_durations(files / source).audio * 16000)), 16000, 10)
    assert (segs - cut(full, plan)).abs().max() < 1e-5
    clip = load_clip(
        files / source if source.endswith(".mp4") else files / "v10.mp4",
        audio=None if source.endswith(".mp4") else files / source,
        task_frames=10,
        image_size=32,
        max_duration_s=3600,
    )
    assert clip.audio.shape == (10, 98, 128)


def test_no_declared_length_is_capped_by_the_decoder(files):
    msg = r"^the audio file piped\.mkv is longer than 60 s; the limit is 60 s \(--max-duration\)$"
    with pytest.raises(MediaError, match=msg):
        load_clip(files / "v10.mp4", audio=files / "piped.mkv", task_frames=10, image_size=32)
    segs, seconds = load_audio_segments(files / "piped.mkv", 10, max_duration_s=3600)
    assert segs.shape == (10, 16000) and seconds == pytest.approx(120, abs=0.2)


def test_lying_headers(files, monkeypatch):
    real = probe_durations(files / "long.wav")
    monkeypatch.setattr(audio_mod, "probe_durations", lambda p: Durations(audio=5.0, has_audio=True))
    with pytest.raises(MediaError, match="long.wav is longer than 60 s; the limit is 60 s"):
        load_audio(files / "long.wav")  # the header claims 5 s: the decode cap still stops at 60 s
    segs, seconds = load_audio_segments(files / "long.wav", 10, max_duration_s=3600)
    assert seconds == pytest.approx(120) and segs.shape == (10, 16000)
    # a header that claims more than the stream holds: measured, then planned again
    monkeypatch.setattr(audio_mod, "probe_durations", lambda p: Durations(audio=900.0, has_audio=True))
    again, seconds = load_audio_segments(files / "long.wav", 10, max_duration_s=3600)
    assert seconds == pytest.approx(real.audio) and torch.allclose(again, segs, atol=1e-5)


def test_decoder_internals_never_reach_the_user(files, tmp_path):
    internal = "[12:03:01] /github/workspace/src/video/threaded_decoder.cc:218: Check failed: run_.load()"
    assert describe_decoder_error(internal) == "the file is corrupt, truncated or in an unsupported format"
    assert describe_decoder_error("moov atom not found").startswith("the file is incomplete or corrupt")
    faststart = tmp_path / "faststart.mp4"  # index first: the decoder opens it, then runs out of data
    _ffmpeg(
        *_video(120),
        "-c:v",
        "libx264",
        "-preset",
        "ultrafast",
        "-pix_fmt",
        "yuv420p",
        "-an",
        "-movflags",
        "+faststart",
        faststart,
    )
    for source, name in [(files / "v120.mp4", "cut.mp4"), (faststart, "cut_faststart.mp4")]:
        data = source.read_bytes()
        (tmp_path / name).write_bytes(data[: len(data) // 2])
        with pytest.raises(MediaError) as err:
            load_video_frames(tmp_path / name, 10, 32, max_duration_s=3600)
        text = str(err.value)
        assert text.startswith(f"could not decode video {name}: the file is ") and "corrupt" in text
        for internal in (".cc:", "Check failed", "av_read_frame", "failed with", "/"):
            assert internal not in text


def test_pipeline_applies_the_limit_and_the_token_check(files):
    from crab_core.pipeline import CrabPipeline

    pipe = CrabPipeline.load("crab-tiny")
    assert pipe.max_duration_s == 60.0
    with pytest.raises(MediaError, match="the audio file long.wav is 120 s long; the limit is 60 s"):
        pipe.run("ave", video=files / "v10.mp4", audio=files / "long.wav", max_new_tokens=2)
    res = pipe.run(
        "ave", video=files / "v10.mp4", audio=files / "long.wav", max_new_tokens=2, max_duration_s=3600
    )
    assert len(res.answer_ids) == 2
    for bad in (-5, 0, 2.5):
        with pytest.raises(TaskError, match="max_new_tokens must be a positive integer"):
            pipe.run("ave", video=files / "v10.mp4", audio=files / "long.wav", max_new_tokens=bad)
    from crab_core.interpret.inputs import Request, load_input

    with pytest.raises(MediaError, match="the limit is 60 s"):
        load_input(pipe, Request(task="ave", video=str(files / "v10.mp4"), audio=str(files / "long.wav")))
    pipe.max_duration_s = 3600.0
    raw = load_input(pipe, Request(task="ave", video=str(files / "v10.mp4"), audio=str(files / "long.wav")))
    assert raw.audio.shape == (10, 98, 128)


def _infer(*args):
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "crab_core",
            "infer",
            "--model",
            "crab-tiny",
            "--task",
            "ave",
            *map(str, args),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_infer_usage_errors_and_limit_message(files):
    proc = _infer("--video", files / "v10.mp4", "--max-new-tokens", "-5")
    assert proc.returncode == 2 and proc.stdout == ""
    assert "argument --max-new-tokens: must be a positive integer (at least 1), got -5" in proc.stderr
    proc = _infer("--video", files / "v10.mp4", "--max-duration", "-1")
    assert proc.returncode == 2 and "argument --max-duration: must be a positive number" in proc.stderr
    proc = _infer("--video", files / "v10.mp4", "--audio", files / "long.wav")
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines()[-1] == (
        "error: the audio file long.wav is 120 s long; the limit is 60 s (--max-duration)"
    )


def test_every_command_sharing_the_model_options_gets_the_limit():
    import argparse

    from crab_core.cli_common import add_model_args, load_pipeline

    parser = argparse.ArgumentParser()
    add_model_args(parser)  # infer and eval
    assert parser.parse_args([]).max_duration == 60.0
    pipe = load_pipeline(
        parser.parse_args(["--model", "crab-tiny", "--device", "cpu", "--max-duration", "120"])
    )
    assert pipe.max_duration_s == 120.0
    with pytest.raises(SystemExit):
        parser.parse_args(["--max-duration", "inf"])
    proc = subprocess.run(
        [sys.executable, "-m", "crab_core", "eval", "--help"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0 and "--max-duration S" in proc.stdout
