"""The app's temporary folders: owner-marked, removed by cleanup, swept only when the owner is dead."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from app import tempdirs
from crab_core.errors import ConfigError


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_sweep_removes_only_folders_of_dead_owners(tmp_path):
    dead = _dead_pid()
    stale = tmp_path / f"crab-uploads-{dead}-abc123"
    stale.mkdir()
    (stale / "x.mp4").write_bytes(b"user data")
    (stale / tempdirs.MARKER).write_text(f"{dead} 123\n")
    reused = tmp_path / f"crab-studio-{os.getppid()}-zz9"  # a live PID that started at another time
    reused.mkdir()
    (reused / tempdirs.MARKER).write_text(f"{os.getppid()} 1\n")
    live = tmp_path / f"crab-studio-{os.getppid()}-live"  # no marker: a live PID is kept
    live.mkdir()
    mine = tempdirs.private_dir("studio", root=tmp_path)
    legacy = tmp_path / "crab-studio-k2j4h5g6"  # pre-marker name: never guessed at
    legacy.mkdir()
    other = tmp_path / f"something-{dead}-abc"
    other.mkdir()
    removed = tempdirs.sweep_stale(tmp_path)
    assert sorted(p.name for p in removed) == sorted([stale.name, reused.name])
    assert live.is_dir() and mine.is_dir() and legacy.is_dir() and other.is_dir()
    assert mine.name.startswith(f"crab-studio-{os.getpid()}-")
    assert (mine / tempdirs.MARKER).read_text().split()[0] == str(os.getpid())


def test_cleanup_removes_this_process_folders(tmp_path):
    a = tempdirs.private_dir("uploads", root=tmp_path)
    (a / "clip.mp4").write_bytes(b"x")
    tempdirs.cleanup()
    assert not a.exists()
    tempdirs.cleanup()  # idempotent


def test_unwritable_folder_is_a_one_line_error(tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    target = ro if not os.access(ro, os.W_OK) else tmp_path / "file"
    if target.name == "file":  # root ignores permissions: a path below a regular file cannot be written
        target.write_text("x")
        target = target / "sub"
    with pytest.raises(
        ConfigError, match=r"^GRADIO_TEMP_DIR \(.*\) is not a writable folder: .*writable folder$"
    ):
        tempdirs.check_writable(target, "GRADIO_TEMP_DIR")
    assert tempdirs.check_writable(tmp_path / "new" / "dir", "X").is_dir()
