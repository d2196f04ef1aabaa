"""Upload copies: one per content and extension, kept while a run holds them, evicted otherwise."""

from __future__ import annotations

import gc
from pathlib import Path

from app.uploads import UploadIndex


def _file(folder: Path, name: str, data: bytes) -> str:
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return str(path)


def test_leased_copies_survive_other_users_uploads(tmp_path):
    index = UploadIndex(tmp_path / "copies", max_files=2)
    (tmp_path / "copies").mkdir()
    mine = index.lease()
    kept = index.add(_file(tmp_path / "a", "clip.mp4", b"user A's clip"), mine)
    for i in range(10):  # other users' uploads, each request dropped at once
        index.add(_file(tmp_path / f"b{i}", "other.mp4", f"clip {i}".encode()), index.lease())
        gc.collect()
    assert Path(kept).read_bytes() == b"user A's clip"
    assert index.held() == 1 and len(index) == 3  # A's copy plus the two newest free ones
    assert mine.names == {kept: "clip.mp4"}
    del mine
    gc.collect()
    index.add(_file(tmp_path / "c", "new.mp4", b"another clip"), index.lease())
    assert not Path(kept).exists() and len(index) == 3  # A's copy was the oldest free one


def test_same_bytes_get_one_copy_per_extension(tmp_path):
    (tmp_path / "copies").mkdir()
    index = UploadIndex(tmp_path / "copies")
    lease = index.lease()
    as_video = index.add(_file(tmp_path / "1", "frame.mp4", b"\x89PNG\r\n\x1a\n" + b"0" * 64), lease)
    as_image = index.add(_file(tmp_path / "2", "frame.png", b"\x89PNG\r\n\x1a\n" + b"0" * 64), lease)
    again = index.add(_file(tmp_path / "3", "again.PNG", b"\x89PNG\r\n\x1a\n" + b"0" * 64), lease)
    assert as_video.endswith(".mp4") and as_image.endswith(".png") and again == as_image
    assert lease.names[as_image] == "again.PNG"  # the name this request used
    assert index.add(None, lease) is None and index.add(str(tmp_path / "missing.mp4"), lease).endswith(
        "missing.mp4"
    )
