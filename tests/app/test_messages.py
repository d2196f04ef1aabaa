"""User-facing messages name the user's files, never server paths or decoder internals."""

from __future__ import annotations

from app.messages import UNREADABLE, user_message


def test_known_copies_become_the_users_file_name():
    names = {"/tmp/crab-uploads-77-abc/0123456789abcdef0123.mp4": "holiday.mp4"}
    text = (
        "video file not found: 0123456789abcdef0123.mp4 (/tmp/crab-uploads-77-abc/0123456789abcdef0123.mp4)"
    )
    assert user_message(text, names) == "video file not found: holiday.mp4 (holiday.mp4)"


def test_other_paths_keep_only_their_last_part():
    out = user_message("could not open /var/tmp/gradio/5f2a/clip.wav: bad header; see C:\\srv\\x.log")
    assert out == "could not open clip.wav: bad header; see x.log"
    assert user_message("ratio 30/60 s at http://h/x") == "ratio 30/60 s at http://h/x"


def test_decoder_internals_are_replaced():
    text = (
        "could not read clip.mp4: [12:01:02] /github/workspace/src/video/threaded_decoder.cc:218: "
        "Check failed: run_.load()"
    )
    assert user_message(text) == f"could not read clip.mp4: {UNREADABLE}"
    assert user_message("terminate called after throwing") == f"could not read the file: {UNREADABLE}"
    assert "\n" not in user_message("a\nb") and len(user_message("x" * 5000)) == 300
