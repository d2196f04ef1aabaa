"""Shared test helpers (import as ``tests._helpers``)."""

from __future__ import annotations

import shutil
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def writable_copy(src: Path, dst: Path) -> Path:
    """Copy a (read-only) folder and make the copy writable."""
    shutil.copytree(src, dst)
    for p in [dst, *dst.rglob("*")]:
        p.chmod(0o755 if p.is_dir() else 0o644)
    return dst


def run_memory_capped(code: str, cap_bytes: int, timeout: float = 120.0):
    """Run ``code`` in a fresh Python whose address space is capped (``RLIMIT_AS``) at ``cap_bytes``.

    A memory regression then fails the test (MemoryError / non-zero exit) instead of the machine.
    Returns the ``subprocess.CompletedProcess`` (text stdout / stderr).
    """
    import os
    import resource
    import subprocess
    import sys

    def _cap() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (cap_bytes, cap_bytes))

    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    return subprocess.run(
        [sys.executable, "-c", code],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
        preexec_fn=_cap,
        env=env,
    )
