"""The server's private temporary folders: created with the owner's PID in their name, removed on a
normal exit, SIGINT or SIGTERM, and swept at the next start when their owner died without cleaning
up (``kill -9``, OOM kill, power loss).

A folder is ``<tempdir>/crab-<kind>-<pid>-<random>`` and holds a marker file (``.crab-owner``) with
the owner's PID and process start time, so a reused PID is not mistaken for the owner. Only folders
of this user whose owner is gone are swept; folders of running servers are never touched.
"""

from __future__ import annotations

import atexit
import logging
import os
import re
import shutil
import signal
import tempfile
import threading
from pathlib import Path

from crab_core.errors import ConfigError

log = logging.getLogger(__name__)

MARKER = ".crab-owner"
_NAME = re.compile(r"^crab-(?:studio|uploads)-(\d+)-[a-z0-9_]+$")
_created: list[Path] = []
_lock = threading.Lock()


def _start_time(pid: int) -> str | None:
    """Start time of process ``pid`` in clock ticks since boot (Linux), or None when unknown."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # the command name (field 2) may hold spaces and parentheses: split after its closing ')'
    fields = stat.rsplit(")", 1)[-1].split()
    return fields[19] if len(fields) > 19 else None


def _alive(pid: int, started: str | None) -> bool:
    """Whether the process that created a folder is still running."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    if started is None:
        return True
    now = _start_time(pid)
    return now is None or now == started


def private_dir(kind: str, root: str | os.PathLike | None = None) -> Path:
    """Create ``<root>/crab-<kind>-<pid>-XXXX`` (root: the system temp folder), marked with this
    process and removed at exit (see :func:`cleanup`)."""
    pid = os.getpid()
    path = Path(tempfile.mkdtemp(prefix=f"crab-{kind}-{pid}-", dir=root))
    (path / MARKER).write_text(f"{pid} {_start_time(pid) or '-'}\n")
    with _lock:
        if not _created:
            atexit.register(cleanup)
        _created.append(path)
    return path


def cleanup() -> None:
    """Remove every folder this process created (idempotent)."""
    with _lock:
        paths = list(_created)
        _created.clear()
    for path in paths:
        shutil.rmtree(path, ignore_errors=True)


def sweep_stale(root: str | os.PathLike | None = None) -> list[Path]:
    """Remove this user's ``crab-studio-*`` / ``crab-uploads-*`` folders whose owner process is dead.

    Returns:
        The folders removed.
    """
    base = Path(root or tempfile.gettempdir())
    removed = []
    try:
        entries = list(base.iterdir())
    except OSError:
        return removed
    for path in entries:
        m = _NAME.match(path.name)
        if m is None or path.is_symlink() or not path.is_dir():
            continue
        try:
            if path.stat().st_uid != os.getuid():
                continue
            owner = (path / MARKER).read_text().split()
        except (OSError, UnicodeDecodeError):
            owner = []
        pid = int(m.group(1))
        started = owner[1] if len(owner) > 1 and owner[0] == str(pid) and owner[1] != "-" else None
        if pid == os.getpid() or _alive(pid, started):
            continue
        shutil.rmtree(path, ignore_errors=True)
        removed.append(path)
    if removed:
        log.info("removed %d temporary folder(s) left by stopped servers", len(removed))
    return removed


def check_writable(path: str | os.PathLike, what: str) -> Path:
    """Create ``path`` if needed and prove it is a writable folder (a file is written and removed).

    Raises:
        ConfigError: one line naming ``what`` (e.g. ``GRADIO_TEMP_DIR``) and the problem.
    """
    p = Path(path)
    try:
        p.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".crab-write-test-", dir=p)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise ConfigError(
            f"{what} ({p}) is not a writable folder: {reason}; point it to a writable folder"
        ) from None
    return p


def _interrupt(signum, frame) -> None:  # noqa: ARG001 - signal handler signature
    raise KeyboardInterrupt(f"signal {signum}")


def handle_termination() -> None:
    """Treat SIGTERM (container stop, systemd) and SIGHUP like Ctrl-C: the server closes and the
    temporary folders are removed. Call from the main thread."""
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _interrupt)
