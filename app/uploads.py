"""Private, content-addressed copies of uploads that stay alive while a run can still use them.

Gradio rewrites an upload on every call (gradio_client re-uploads the same clip each time), so the
app copies each upload once per content: the same bytes under the same extension keep one path and
modification time and hit the pipeline's encoded-clip cache. Each request holds a :class:`Lease`
on its copies; the lease lives in the request, which lives in the session's run record, so the
files of a run that a user can still act on (``/intervene``, ``/attention``, ``/attribution``) are
never deleted. Of the copies no request holds, the ``max_files`` most recently used are kept for
reuse and older ones are deleted.
"""

from __future__ import annotations

import hashlib
import logging
import shutil
import threading
import weakref
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger(__name__)


@dataclass
class _Entry:
    path: Path
    holders: int = 0


@dataclass(eq=False)
class Lease:
    """Keeps some copies alive until this object is garbage collected.

    Attributes:
        names: ``{server path: the user's file name}`` of the leased copies (for messages).
    """

    names: dict[str, str] = field(default_factory=dict)
    keys: list[tuple[str, str]] = field(default_factory=list)


class UploadIndex:
    """Content-addressed upload copies in ``folder`` (``<sha1[:20]><ext>``, one per content and
    extension).

    Args:
        folder: an existing private folder (removed by the caller at exit).
        max_files: most copies kept for reuse that no request holds (held ones are never deleted).
    """

    def __init__(self, folder: str | Path, max_files: int = 32) -> None:
        self.folder = Path(folder)
        self.max_files = max_files
        self._entries: OrderedDict[tuple[str, str], _Entry] = OrderedDict()
        self._released: deque[tuple[str, str]] = deque()  # appended by finalizers (any thread)
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._entries)

    def lease(self) -> Lease:
        """A new empty lease; fill it with :meth:`add`."""
        lease = Lease()
        weakref.finalize(lease, self._released.extend, lease.keys)
        return lease

    def add(self, path: str | None, lease: Lease) -> str | None:
        """The private copy of ``path`` (made on first sight), held by ``lease``; None stays None.

        Paths that are not regular files are returned unchanged (the loaders report them).
        """
        if path is None or not Path(path).is_file():
            return path
        digest = hashlib.sha1()
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                digest.update(chunk)
        suffix = Path(path).suffix.lower()
        key = (digest.hexdigest(), suffix)
        with self._lock:
            self._drain()
            entry = self._entries.get(key)
            if entry is None or not entry.path.is_file():
                target = self.folder / f"{key[0][:20]}{suffix}"
                shutil.copyfile(path, target)
                entry = self._entries[key] = _Entry(target, entry.holders if entry else 0)
            self._entries.move_to_end(key)
            entry.holders += 1
            lease.keys.append(key)
            lease.names[str(entry.path)] = Path(path).name
            self._evict()
        return str(entry.path)

    def held(self) -> int:
        """Number of copies some live request holds (releases and evicts what was freed first)."""
        with self._lock:
            self._drain()
            self._evict()
            return sum(1 for e in self._entries.values() if e.holders > 0)

    def _drain(self) -> None:
        while self._released:
            key = self._released.popleft()
            entry = self._entries.get(key)
            if entry is not None:
                entry.holders -= 1

    def _evict(self) -> None:
        free = [k for k, e in self._entries.items() if e.holders <= 0]
        for key in free[: max(0, len(free) - self.max_files)]:
            self._entries.pop(key).path.unlink(missing_ok=True)
