"""Every bad input gives a MediaError (or TaskError) that names the file and the problem."""

from __future__ import annotations

import shutil
import subprocess

import numpy as np
import pytest
import soundfile as sf

from crab_core.errors import MediaError, TaskError
from crab_core.media import (
    check_file,
    load_audio,
    load_binary_mask,
    load_clip,
    load_image,
    load_palette_mask,
    load_video_frames,
    video_duration,
)

AVE_MP4 = "ave/-67UNKFmRLk.mp4"

pytestmark = pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="ffmpeg not installed")


def _ffmpeg(*args):
    subprocess.run(["ffmpeg", "-v", "error", "-y", *map(str, args)], check=True)


@pytest.fixture(scope="module")
def media(tmp_path_factory):
    root = tmp_path_factory.mktemp("bad")
    silent = root / "silent.mp4"
    _ffmpeg(
        "-f", "lavfi", "-i", "testsrc=size=64x64:rate=10", "-t", "2", "-an", "-pix_fmt", "yuv420p", silent
    )
    with_audio = root / "with_audio.mp4"
    _ffmpeg(
        "-f",
        "lavfi",
        "-i",
        "testsrc=size=64x64:rate=10",
        "-f",
        "lavfi",
        "-i",
        "sine=frequency=440:sample_rate=16000",
        "-t",
        "2",
        "-pix_fmt",
        "yuv420p",
        "-c:a",
        "aac",
        with_audio,
    )
    faststart = root / "faststart.mp4"
    _ffmpeg(
        "-f",
        "lavfi",
        "-i",
        "testsrc=size=64x64:rate=10",
        "-t",
        "2",
        "-pix_fmt",
        "yuv420p",
        "-movflags",
        "+faststart",
        faststart,
    )
    return root, silent, with_audio, faststart


def test_missing_files(tmp_path):
    for loader, name in [
        (lambda p: load_video_frames(p, 4, 32), "gone.mp4"),
        (load_audio, "gone.wav"),
        (lambda p: load_image(p, 32), "gone.jpg"),
        (lambda p: load_binary_mask(p, 32), "gone.png"),
    ]:
        with pytest.raises(MediaError, match=f"not found: {name}"):
            loader(tmp_path / name)


def test_zero_byte(tmp_path):
    empty = tmp_path / "empty.mp4"
    empty.touch()
    with pytest.raises(MediaError, match="empty.mp4 is empty"):
        load_video_frames(empty, 4, 32)
    with pytest.raises(MediaError, match="is empty"):
        load_audio(empty)


def test_truncated_mp4(real_media_dir, tmp_path, media):
    head = tmp_path / "head.mp4"
    head.write_bytes((real_media_dir / AVE_MP4).read_bytes()[:2048])
    with pytest.raises(MediaError, match="could not decode video head.mp4"):
        load_video_frames(head, 10, 32)
    with pytest.raises(MediaError, match="head.mp4"):
        load_audio(head)
    with pytest.raises(MediaError, match="head.mp4"):
        video_duration(head)
    cut = tmp_path / "cut.mp4"  # moov atom intact, frame data missing
    data = media[3].read_bytes()
    cut.write_bytes(data[: len(data) * 3 // 4])
    with pytest.raises(MediaError, match="cut.mp4"):
        load_video_frames(cut, 10, 32)


def test_video_without_audio_track(media):
    _, silent, with_audio, _ = media
    with pytest.raises(MediaError, match="silent.mp4 has no audio track"):
        load_audio(silent)
    with pytest.raises(MediaError, match="has no audio track"):
        load_clip(silent, task_frames=10, audio_mode="uniform", image_size=32)
    clip = load_clip(silent, task_frames=10, audio_mode=None, image_size=32)
    assert clip.frames.shape == (10, 3, 32, 32) and clip.audio is None
    clip = load_clip(with_audio, task_frames=10, audio_mode="uniform", image_size=32)
    assert clip.audio.shape[:1] == (10,) and clip.num_frames == 10 and clip.duration_s == pytest.approx(2.0)


def test_image_passed_as_video(real_media_dir, tmp_path):
    with pytest.raises(MediaError, match="unsupported extension '.jpg'.*image"):
        load_video_frames(real_media_dir / "s4/0.jpg", 10, 32)
    disguised = tmp_path / "frame.mp4"
    disguised.write_bytes((real_media_dir / "s4/0.jpg").read_bytes())
    with pytest.raises(MediaError, match="frame.mp4 is really a still image"):
        load_video_frames(disguised, 10, 32)


def test_text_file_as_audio(tmp_path):
    for name in ("notes.wav", "notes.mp3"):
        path = tmp_path / name
        path.write_text("this is not audio\n" * 20)
        with pytest.raises(MediaError, match=f"{name} is a text file"):
            load_audio(path)
    garbage = tmp_path / "noise.wav"
    garbage.write_bytes(bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8)))
    with pytest.raises(MediaError, match="noise.wav"):
        load_audio(garbage)


def test_directory(tmp_path):
    folder = tmp_path / "clip.mp4"
    folder.mkdir()
    with pytest.raises(MediaError, match="is a directory"):
        load_video_frames(folder, 4, 32)
    with pytest.raises(MediaError, match="is a directory"):
        load_audio(tmp_path)


def test_unsupported_extension(tmp_path):
    for name, loader in [
        ("clip.xyz", lambda p: load_video_frames(p, 4, 32)),
        ("sound.txt", load_audio),
        ("pic.docx", lambda p: load_image(p, 32)),
        ("mask.svg", lambda p: load_palette_mask(p, 8)),
    ]:
        path = tmp_path / name
        path.write_bytes(b"\x00\x01\x02\x03" * 16)
        with pytest.raises(MediaError, match=f"{name} has unsupported extension"):
            loader(path)


def test_too_short_audio(tmp_path):
    short = tmp_path / "blip.wav"
    sf.write(short, np.zeros(3200, np.float32), 16000)  # 0.2 s
    assert load_audio(short).shape == (3200,)
    with pytest.raises(MediaError, match="blip.wav.*too short"):
        load_clip(audio=short, task_frames=10, audio_mode="uniform")
    one_second = tmp_path / "second.wav"
    sf.write(one_second, np.zeros(16000, np.float32), 16000)
    with pytest.raises(MediaError, match="too short for 10 segments"):
        load_clip(audio=one_second, task_frames=10, audio_mode="uniform")


def test_size_and_duration_limits(media):
    _, silent, _, _ = media
    with pytest.raises(MediaError, match="larger than the limit"):
        check_file(silent, "video", max_bytes=100)
    with pytest.raises(
        MediaError, match=r"the video silent.mp4 is 2 s long; the limit is 1 s \(--max-duration\)"
    ):
        load_clip(silent, task_frames=4, audio_mode=None, image_size=32, max_duration_s=1.0)


def test_inconsistent_task_arguments(media):
    _, silent, _, _ = media
    with pytest.raises(TaskError):
        load_clip(silent, task_frames=4, audio_mode="stereo")
    with pytest.raises(TaskError, match="needs audio"):
        load_clip(image=None, task_frames=4, audio_mode="uniform")
