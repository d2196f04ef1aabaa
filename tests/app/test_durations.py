"""The app's duration limit covers the video stream, a video's audio track and a separate audio file."""

from __future__ import annotations

import shutil

import pytest

from app.durations import check_upload_durations, stream_durations
from crab_core.errors import MediaError
from tests.app._server import ffmpeg

pytestmark = pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="ffmpeg is not installed")


@pytest.fixture(scope="module")
def media(tmp_path_factory):
    d = tmp_path_factory.mktemp("durations")
    ffmpeg(
        "-f",
        "lavfi",
        "-i",
        "color=c=red:s=32x32:r=2:d=4",
        "-f",
        "lavfi",
        "-i",
        "sine=sample_rate=8000:d=90",
        "-c:v",
        "libx264",
        "-c:a",
        "aac",
        "-b:a",
        "8k",
        str(d / "long_track.mp4"),
    )
    ffmpeg("-f", "lavfi", "-i", "sine=sample_rate=8000:d=90", "-b:a", "8k", str(d / "long.mp3"))
    ffmpeg("-f", "lavfi", "-i", "sine=sample_rate=8000:d=3", str(d / "short.wav"))
    ffmpeg("-f", "lavfi", "-i", "color=c=blue:s=32x32:r=2:d=75", "-c:v", "libx264", str(d / "long_video.mp4"))
    (d / "junk.mp4").write_bytes(b"\x00\x01" * 500)
    return d


def test_durations_of_each_stream(media):
    d = stream_durations(media / "long_track.mp4", "x")
    assert d["video"] == pytest.approx(4, abs=0.6) and d["audio"] == pytest.approx(90, abs=1)
    assert stream_durations(media / "long.mp3", "x")["audio"] == pytest.approx(90, abs=1)


def test_limits_name_the_users_file_and_the_flag(media):
    names = {str(media / "long_track.mp4"): "holiday.mp4", str(media / "long.mp3"): "talk.mp3"}
    with pytest.raises(
        MediaError,
        match=r"^the audio track of holiday\.mp4 is 90 s long; this app accepts at most "
        r"60 s \(--max-duration\)$",
    ):
        check_upload_durations(str(media / "long_track.mp4"), None, names, 60)
    # with a separate audio file the video's own track is not used, so it is not held against it
    check_upload_durations(str(media / "long_track.mp4"), str(media / "short.wav"), names, 60)
    with pytest.raises(MediaError, match=r"^the audio file talk\.mp3 is 90 s long"):
        check_upload_durations(str(media / "long_track.mp4"), str(media / "long.mp3"), names, 60)
    with pytest.raises(MediaError, match=r"^the video long_video\.mp4 is 75 s long"):
        check_upload_durations(str(media / "long_video.mp4"), str(media / "short.wav"), {}, 60)
    check_upload_durations(str(media / "long_video.mp4"), str(media / "long.mp3"), {}, 100)


def test_unreadable_file_is_refused_by_name(media):
    with pytest.raises(MediaError, match=r"^clip\.mp4 is not a readable video or audio file"):
        check_upload_durations(str(media / "junk.mp4"), None, {str(media / "junk.mp4"): "clip.mp4"}, 60)
