"""The app server under hostile or unlucky use (issue #14, app part), against ``python app.py``
(crab-tiny) in a child process capped at 4 GiB of address space, with a private TMPDIR.

One server serves the upload / message / memory cases and is then killed with SIGKILL; a second
start in the same TMPDIR must sweep the dead server's folders, and SIGTERM must remove its own.
"""

from __future__ import annotations

import shutil
import signal
import time
from pathlib import Path

import pytest

from tests._helpers import REPO
from tests.app._server import Server, crab_folders, ffmpeg

pytest.importorskip("gradio_client")
from gradio_client import Client, handle_file  # noqa: E402
from gradio_client.exceptions import AppError  # noqa: E402

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="ffmpeg is not installed"),
    pytest.mark.skipif(
        not (REPO / "assets" / "crab-tiny" / "model.safetensors").is_file(), reason="crab-tiny weights absent"
    ),
]
CLIP = REPO / "assets" / "examples" / "ave.mp4"
VIEW = ("all", "all", "weights", "unit", "all")


@pytest.fixture(scope="module")
def media(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("media")
    # the case: a valid 10-s video plus a 30-minute MP3 (1.8 MB) as the separate audio
    ffmpeg(
        "-f",
        "lavfi",
        "-i",
        "sine=f=440:sample_rate=8000:d=1800",
        "-ac",
        "1",
        "-b:a",
        "8k",
        str(d / "talk.mp3"),
    )
    ffmpeg(
        "-f",
        "lavfi",
        "-i",
        "color=c=red:s=64x64:r=1:d=10",
        "-f",
        "lavfi",
        "-i",
        "sine=f=300:sample_rate=8000:d=1800",
        "-c:v",
        "libx264",
        "-c:a",
        "aac",
        "-b:a",
        "8k",
        str(d / "long_track.mp4"),
    )
    ffmpeg("-f", "lavfi", "-i", "sine=f=500:sample_rate=16000:d=10", str(d / "tone.wav"))
    data = CLIP.read_bytes()
    n = len(data)
    (d / "broken.mp4").write_bytes(data[: n // 5] + bytes(n * 3 // 5) + data[n * 4 // 5 :])
    from PIL import Image

    Image.new("RGB", (64, 64), (200, 30, 30)).save(d / "frame.png")
    shutil.copyfile(d / "frame.png", d / "frame.mp4")  # the same bytes, first sent as a "video"
    return d


@pytest.fixture(scope="module")
def tmpdir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("server-tmp")


@pytest.fixture(scope="module")
def server(tmpdir):
    srv = Server(tmpdir).wait_ready()
    yield srv
    srv.kill()


def run(client: Client, video=None, audio=None, image=None, task: str = "ave", tokens: int = 16):
    files = [handle_file(str(x)) if x else None for x in (video, audio, image)]
    return client.predict(*files, task, "", 0, None, tokens, *VIEW, api_name="/run")


def assert_user_message(msg: str, tmpdir: Path) -> None:
    assert "Traceback" not in msg and str(tmpdir) not in msg and "/tmp" not in msg
    assert "crab-uploads" not in msg and "crab-studio" not in msg and ".cc:" not in msg


def test_30_minute_separate_audio_is_refused_and_the_server_survives(server, media, tmpdir):
    c = Client(server.url, verbose=False)
    with pytest.raises(AppError) as err:
        run(c, CLIP, media / "talk.mp3")
    msg = str(err.value)
    assert "the audio file talk.mp3 is 1800 s long; this app accepts at most 60 s (--max-duration)" in msg
    assert_user_message(msg, tmpdir)
    with pytest.raises(AppError, match=r"the audio track of long_track\.mp4 is 1800 s long"):
        run(c, media / "long_track.mp4")
    assert server.proc.poll() is None and server.rss_mib() < 2048
    answer = run(c, CLIP)[1]
    assert "".join(p["token"] for p in answer).strip()


def test_messages_name_the_users_file_without_server_internals(server, media, tmpdir):
    c = Client(server.url, verbose=False)
    with pytest.raises(AppError) as err:
        run(c, media / "broken.mp4")
    msg = str(err.value)
    assert "broken.mp4" in msg and "corrupt" in msg
    assert_user_message(msg, tmpdir)


def test_other_users_uploads_do_not_break_a_run(server, media, tmpdir):
    alice, bob = Client(server.url, verbose=False), Client(server.url, verbose=False)
    first = "".join(p["token"] for p in run(alice, CLIP)[1])
    for i in range(40):  # more distinct uploads than the app keeps free copies of (32)
        junk = tmpdir.parent / f"junk{i}.mp4"
        junk.write_bytes(f"not a video {i}".encode())
        with pytest.raises(AppError, match=f"junk{i}.mp4 is a text file"):
            run(bob, junk)
    variant = alice.predict("ablate", ["head 0"], ["all"], False, "all", "all", api_name="/intervene")
    assert "without head(s) 0" in variant[0]
    _, audio_fig, _, note = alice.predict(api_name="/attention")
    assert "Attention from the" in note and audio_fig["type"] == "plotly"
    again = "".join(p["token"] for p in run(alice, CLIP)[1])
    assert again == first


def test_same_bytes_as_video_then_as_image(server, media):
    c = Client(server.url, verbose=False)
    with pytest.raises(AppError, match="frame.mp4 is really a still image"):
        run(c, media / "frame.mp4")
    out = run(c, None, media / "tone.wav", media / "frame.png", task="arig")
    assert out[4] is not None  # the box drawn on the image


def test_attribution_memory_is_bounded(server):
    c = Client(server.url, verbose=False)
    run(c, CLIP)
    c.predict(8, api_name="/attribution")
    base = server.rss_mib()
    for _ in range(3):
        bars = c.predict(64, api_name="/attribution")
        assert "audio seconds" in bars["plot"] and "frames" in bars["plot"]
    grown = server.rss_mib() - base
    assert grown < 200, f"resident memory grew by {grown:.0f} MiB over three 64-step attributions"
    with pytest.raises(AppError, match="greater than maximum value 64"):  # the slider refuses it
        c.predict(10_000, api_name="/attribution")


def test_folders_removed_on_sigterm_and_swept_after_kill9(server, tmpdir):
    run(Client(server.url, verbose=False), CLIP)
    left = crab_folders(tmpdir)
    assert any(n.startswith(f"crab-uploads-{server.proc.pid}-") for n in left)
    assert any(n.startswith(f"crab-studio-{server.proc.pid}-") for n in left)
    server.kill()  # SIGKILL: nothing can clean up
    assert crab_folders(tmpdir) == left
    second = Server(tmpdir).wait_ready()
    try:
        now = crab_folders(tmpdir)
        assert not set(now) & set(left), f"the dead server's folders were not swept: {now}"
        assert len(now) == 2 and all(f"-{second.proc.pid}-" in n for n in now)
        run(Client(second.url, verbose=False), CLIP)
        second.proc.send_signal(signal.SIGTERM)
        t0 = time.monotonic()
        second.proc.wait(60)
        assert time.monotonic() - t0 < 30
        assert crab_folders(tmpdir) == [], second.output()[-2000:]
    finally:
        second.kill()
