"""Shared tail of the benchmark scripts: a dated header line and the markdown written to results/."""

from __future__ import annotations

import platform
import sys
import time
from pathlib import Path

import torch


def header(command: str, threads: int) -> str:
    """`` `command` · date · machine · torch version · threads`` (one markdown line)."""
    return (
        f"`{command}` · {time.strftime('%Y-%m-%d %H:%M')} · {platform.machine()} · "
        f"torch {torch.__version__} · {threads} thread(s)"
    )


def write_report(out: str | Path, name: str, md: str) -> int:
    """Write ``md`` to ``out/name`` (folders created) and echo it; returns exit code 0."""
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_text(md)
    sys.stdout.write(md)
    return 0
