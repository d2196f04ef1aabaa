"""What every importer shares: the row / problem stream, path checks, the streaming writer, the report.

An importer is a generator of :class:`Row` (one manifest row, docs/manifest.md) and :class:`Problem`
(a file that is missing, or an annotation row that cannot be read). :func:`write_manifest` streams the
rows into a JSONL file (written to a temporary name, renamed at the end) and counts the problems, so
nothing is dropped silently: every skipped row is in the :class:`ImportReport`, with its reason.

Media and mask paths in the rows are POSIX paths relative to the benchmark's root folder; a manifest
written into that root can be evaluated as is, one written elsewhere with ``eval --media-root ROOT``.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import CrabError

log = logging.getLogger(__name__)

#: Problems kept verbatim in the report (the counts cover all of them).
MAX_EXAMPLES = 20
SPLITS = ("train", "val", "test")


class DataError(CrabError):
    """The benchmark folder or its annotation files cannot be imported (one-line reason)."""


@dataclass
class Row:
    """One manifest row (already in the docs/manifest.md schema, paths relative to the root)."""

    data: dict


@dataclass
class Problem:
    """A row the importer skipped: ``kind`` is ``missing`` (a media / mask file) or ``malformed``."""

    kind: str
    where: str
    reason: str

    def __str__(self) -> str:
        return f"{self.kind}: {self.where}: {self.reason}"


Item = Row | Problem


@dataclass
class ImportReport:
    """Counts of one import. ``rows`` per task; ``problems`` per kind; ``examples`` the first few."""

    bench: str
    split: str
    out: str
    rows: Counter = field(default_factory=Counter)
    problems: Counter = field(default_factory=Counter)
    examples: list[str] = field(default_factory=list)
    sources: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def written(self) -> int:
        return sum(self.rows.values())

    @property
    def skipped(self) -> int:
        return sum(self.problems.values())

    def to_json(self) -> dict:
        return {
            "bench": self.bench,
            "split": self.split,
            "out": self.out,
            "rows": dict(self.rows),
            "written": self.written,
            "skipped": dict(self.problems),
            "examples": self.examples,
            "sources": self.sources,
            "seconds": round(self.seconds, 3),
        }

    def summary(self) -> str:
        per_task = ", ".join(f"{t} {n}" for t, n in sorted(self.rows.items())) or "none"
        lines = [
            f"{self.bench} {self.split}: {self.written} rows written to {self.out} ({per_task}) "
            f"in {self.seconds:.2f} s; read {', '.join(self.sources) or 'nothing'}"
        ]
        if self.skipped:
            kinds = ", ".join(f"{n} {k}" for k, n in sorted(self.problems.items()))
            lines.append(f"{self.skipped} row(s) skipped ({kinds}):")
            lines += [f"  {e}" for e in self.examples]
            if self.skipped > len(self.examples):
                lines.append(f"  ... and {self.skipped - len(self.examples)} more (see the .report.json)")
        return "\n".join(lines)


class Layout:
    """The benchmark root: relative paths and existence checks."""

    def __init__(self, root: str | os.PathLike, make_videos: bool = False) -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise DataError(f"--root {self.root}: not a folder")
        self.make_videos = make_videos

    def path(self, rel: str) -> Path:
        return self.root / rel

    def exists(self, rel: str) -> bool:
        """Whether ``root/rel`` is a file (one ``stat``: thousands of checks take milliseconds)."""
        return (self.root / rel).is_file()

    def first(self, candidates: Iterable[str]) -> str | None:
        """The first candidate (relative path) that exists as a file."""
        return next((c for c in candidates if (self.root / c).is_file()), None)

    def need(self, candidates: Iterable[str], what: str) -> str:
        """The first existing annotation file among ``candidates``, else a :class:`DataError`."""
        cands = list(candidates)
        found = self.first(cands)
        if found is None:
            raise DataError(f"{self.root}: no {what} (looked for {', '.join(cands)})")
        return found

    def missing(self, where: str, *rels: str | None) -> Problem | None:
        """A ``missing`` problem naming the first of ``rels`` that is not a file, else None."""
        for rel in rels:
            if rel is not None and not self.exists(rel):
                return Problem("missing", where, f"no file {rel}")
        return None


def frames_video(layout: Layout, frame_dir: str, count: int, rel_out: str) -> str:
    """``ROOT/rel_out``: a 1-fps video of ``frame_dir/0.jpg .. <count-1>.jpg`` (made once, then reused).

    For releases that ship frames instead of videos (AVSBench-semantic, Ref-AVS), so that ``eval`` can
    run the reference's video + audio test prompt. H.264 lossless (``-qp 0``, 4:4:4): the decoded frames
    differ from the JPEGs only by the RGB <-> YUV rounding (at most a few levels per channel).

    Raises:
        DataError: ffmpeg is missing or fails (its last message).
    """
    import shutil
    import subprocess

    out = layout.path(rel_out)
    if out.is_file() and out.stat().st_size > 0:
        return rel_out
    if shutil.which("ffmpeg") is None:
        raise DataError("--make-videos needs ffmpeg on the PATH")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.stem + ".partial.mp4")
    cmd = [
        "ffmpeg", "-y", "-loglevel", "error", "-framerate", "1", "-start_number", "0",
        "-i", str(layout.path(frame_dir) / "%d.jpg"), "-frames:v", str(count),
        "-c:v", "libx264", "-qp", "0", "-pix_fmt", "yuv444p", "-r", "1", str(tmp),
    ]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0 or not tmp.is_file():
        tmp.unlink(missing_ok=True)
        last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise DataError(f"ffmpeg could not make {rel_out}: {last[:200]}")
    os.replace(tmp, out)
    return rel_out


def read_lines(layout: Layout, rel: str) -> Iterator[tuple[int, str]]:
    """``(line number, text)`` of a UTF-8 text file (BOM and line ends stripped), streamed."""
    try:
        with open(layout.path(rel), encoding="utf-8-sig", newline="") as f:
            for no, line in enumerate(f, 1):
                yield no, line.rstrip("\r\n")
    except UnicodeDecodeError as exc:
        raise DataError(f"{rel}: not UTF-8 text ({exc.reason} at byte {exc.start})") from exc
    except OSError as exc:
        raise DataError(f"{rel}: cannot be read ({exc.strerror or exc})") from exc


def read_json(layout: Layout, rel: str):
    """A JSON annotation file, or a :class:`DataError` with the reason."""
    try:
        with open(layout.path(rel), encoding="utf-8-sig") as f:
            return json.load(f)
    except json.JSONDecodeError as exc:
        raise DataError(f"{rel}: invalid JSON ({exc.msg} at line {exc.lineno})") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"{rel}: cannot be read ({exc})") from exc


def whole_seconds(text: str, lo: int = 0, hi: int = 10) -> int:
    """An integer second in ``[lo, hi]`` from annotation text (``"3"``, ``"3.0"``); ValueError otherwise."""
    value = float(text)
    if not value.is_integer() or not lo <= value <= hi:
        raise ValueError(f"{text!r} is not a whole second in [{lo}, {hi}]")
    return int(value)


def write_manifest(items: Iterable[Item], out: str | os.PathLike, report: ImportReport) -> ImportReport:
    """Stream ``items`` into the JSONL manifest ``out``; problems go to ``report``.

    The file appears only when the import finished (written as ``out.partial``, then renamed), so an
    interrupted import never leaves a truncated manifest behind. A ``out.report.json`` sits next to it.
    """
    t0 = time.perf_counter()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".partial")
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            for item in items:
                if isinstance(item, Problem):
                    report.problems[item.kind] += 1
                    if len(report.examples) < MAX_EXAMPLES:
                        report.examples.append(str(item))
                    continue
                report.rows[item.data["task"]] += 1
                f.write(json.dumps(item.data, ensure_ascii=False) + "\n")
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    report.seconds = time.perf_counter() - t0
    Path(str(out) + ".report.json").write_text(
        json.dumps(report.to_json(), indent=1) + "\n", encoding="utf-8"
    )
    return report
