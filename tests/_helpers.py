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
