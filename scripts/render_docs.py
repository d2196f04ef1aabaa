"""Rewrite the generated regions of the docs from the committed results files.

A region is the text between ``<!-- BEGIN generated:NAME -->`` and ``<!-- END generated:NAME -->``
in README.md, assets/crab-tiny/MODEL_CARD.md or any docs/**/*.md; NAME picks its builder
(:data:`BUILDERS`). Everything outside the markers is left byte for byte::

    python scripts/render_docs.py            # rewrite the regions that are out of date
    python scripts/render_docs.py --check    # exit 1 with a diff when one is out of date (CI)

Exit status: 0 up to date (or rewritten), 1 out of date with ``--check``, 2 a results file or a
marker is broken (one line on stderr).
"""

from __future__ import annotations

import argparse
import difflib
import os
import re
import sys
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from crab_core.errors import ReportError  # noqa: E402
from crab_core.reports import avqa_type_table, find_results, load_results, quality_table  # noqa: E402

#: region name -> builder(results) -> markdown
BUILDERS: dict[str, Callable[[list], str]] = {
    "crab-tiny-quality": lambda results: quality_table(results),
    "crab-tiny-avqa-types": lambda results: (
        avqa_type_table(results) or "_No per-question-type AVQA results._\n"
    ),
}
MARKER = re.compile(r"<!-- (BEGIN|END) generated:([A-Za-z0-9_-]+) -->")


def doc_files(root: Path) -> list[Path]:
    """The markdown files whose regions are generated (those that exist)."""
    files = [root / "README.md", root / "assets" / "crab-tiny" / "MODEL_CARD.md"]
    files += sorted((root / "docs").rglob("*.md")) if (root / "docs").is_dir() else []
    return [f for f in files if f.is_file()]


def render_text(text: str, results: list, where: str = "") -> str:
    """``text`` with every generated region replaced by its builder's output.

    Raises:
        ReportError: unknown region name, an END without its BEGIN, nested or unclosed regions.
    """
    out, pos, open_name, cache = [], 0, None, {}
    for m in MARKER.finditer(text):
        kind, name = m.groups()
        line = text.count("\n", 0, m.start()) + 1
        if kind == "BEGIN":
            if open_name is not None:
                raise ReportError(f"{where}:{line}: BEGIN generated:{name} inside generated:{open_name}")
            if name not in BUILDERS:
                raise ReportError(
                    f"{where}:{line}: unknown generated region {name!r} (known: {sorted(BUILDERS)})"
                )
            out.append(text[pos : m.end()])
            open_name = name
        else:
            if name != open_name:
                raise ReportError(f"{where}:{line}: END generated:{name} without its BEGIN")
            if name not in cache:
                cache[name] = BUILDERS[name](results).strip("\n")
            out.append("\n" + cache[name] + "\n")
            out.append(m.group(0))
            open_name = None
        pos = m.end()
    if open_name is not None:
        raise ReportError(f"{where}: generated:{open_name} has no END marker")
    out.append(text[pos:])
    return "".join(out)


def _write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.render-tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def run(root: Path, results_dir: Path, check: bool) -> int:
    """Render (or with ``check`` compare) every doc file under ``root``; returns the exit status."""
    results = load_results(find_results(results_dir))
    stale = []
    for path in doc_files(root):
        old = path.read_text(encoding="utf-8")
        new = render_text(old, results, str(path.relative_to(root)))
        if new == old:
            continue
        rel = str(path.relative_to(root))
        stale.append(rel)
        if check:
            diff = difflib.unified_diff(old.splitlines(True), new.splitlines(True), f"a/{rel}", f"b/{rel}")
            sys.stdout.writelines(diff)
        else:
            _write(path, new)
    if check and stale:
        sys.stdout.write(f"\nout of date: {', '.join(stale)}; run `python scripts/render_docs.py`\n")
        return 1
    sys.stdout.write(
        f"{'rewrote' if stale else 'up to date'}: {', '.join(stale) or 'all generated regions'}\n"
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--check", action="store_true", help="exit 1 with a diff when a region is out of date")
    p.add_argument("--root", default=str(ROOT), help="repository root (docs are found under it)")
    p.add_argument("--results", default=None, help="results folder (default: ROOT/benchmarks/results)")
    args = p.parse_args(argv)
    root = Path(args.root)
    try:
        return run(root, Path(args.results) if args.results else root / "benchmarks" / "results", args.check)
    except (ReportError, OSError, UnicodeDecodeError) as exc:
        sys.stderr.write(f"render_docs: {exc}\n")
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
