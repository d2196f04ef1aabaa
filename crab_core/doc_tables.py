"""Markdown blocks for the docs, built from the committed results files (besides the quality table).

Every number a doc quotes comes from a results file through one of these builders, each called by
``scripts/render_docs.py`` for a ``<!-- BEGIN generated:NAME -->`` region. A builder takes a
:class:`DocContext` (repository root, results folder) and returns markdown that ends with the file
it read and the command that wrote it. Markdown results files (``benchmarks/results/*.md``, written
by the benchmark scripts) are quoted table by table, verbatim; JSON results files are summarised.

Example::

    >>> ctx = DocContext(Path("."))  # doctest: +SKIP
    >>> print(verify_summary(ctx))  # doctest: +SKIP
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from .errors import ReportError
from .reports import MAX_RESULTS_BYTES, SplitResult, find_results, load_results

_CMD = re.compile(r"`((?:python|bash|accelerate) [^`]+)`")
_DATE = re.compile(r"\b(20\d\d-\d\d-\d\d(?: \d\d:\d\d)?)\b")


@dataclass
class DocContext:
    """Where the builders read: ``root`` (the repository) and ``results_dir`` (default
    ``root/benchmarks/results``); file reads are cached for one render."""

    root: Path
    results_dir: Path | None = None
    _cache: dict = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        self.root = Path(self.root)
        self.results_dir = Path(self.results_dir or self.root / "benchmarks" / "results")

    def rel(self, path: Path) -> str:
        """``path`` relative to the root when it is under it (the form docs print)."""
        try:
            return path.resolve().relative_to(self.root.resolve()).as_posix()
        except ValueError:
            return path.as_posix()

    def result(self, name: str) -> Path:
        """A results file by name (``results_dir/name``)."""
        return self.results_dir / name

    def text(self, path: Path) -> str:
        if path not in self._cache:
            try:
                size = path.stat().st_size
                if size > MAX_RESULTS_BYTES:
                    raise ReportError(f"{self.rel(path)}: {size} bytes, more than a results file")
                self._cache[path] = path.read_text(encoding="utf-8")
            except FileNotFoundError:
                raise ReportError(f"{self.rel(path)}: results file not found") from None
            except (OSError, UnicodeDecodeError) as exc:
                raise ReportError(f"{self.rel(path)}: not readable ({type(exc).__name__})") from None
        return self._cache[path]

    def json(self, path: Path) -> dict:
        try:
            data = json.loads(self.text(path))
        except ValueError:
            raise ReportError(f"{self.rel(path)}: not a readable JSON results file") from None
        if not isinstance(data, dict):
            raise ReportError(f"{self.rel(path)}: not a JSON object")
        return data

    def quality(self, folder: Path | None = None) -> list[SplitResult]:
        """The crab-tiny quality results of ``folder`` (default: the results folder)."""
        key = ("quality", folder or self.results_dir)
        if key not in self._cache:
            self._cache[key] = load_results(find_results(folder or self.results_dir))
        return self._cache[key]


# ---------------------------------------------------------------- statistics


def wilson(k: float, n: int, z: float = 1.96) -> tuple[float, float]:
    """Wilson score interval (95 % by default) of a proportion ``k / n``."""
    if n <= 0:
        raise ValueError("n must be positive")
    p = k / n
    den = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / den
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / den
    return max(0.0, centre - half), min(1.0, centre + half)


def bootstrap_mean(values: Sequence[float], reps: int = 2000, seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap 95 % interval of the mean of ``values`` (deterministic: fixed seed)."""
    import numpy as np

    x = np.asarray(values, dtype=np.float64)
    if x.size == 0:
        raise ValueError("no values")
    rng = np.random.default_rng(seed)
    means = x[rng.integers(0, x.size, size=(reps, x.size))].mean(axis=1)
    lo, hi = np.quantile(means, [0.025, 0.975])
    return float(lo), float(hi)


def fmt_ci(lo: float, hi: float, digits: int = 2) -> str:
    return f"[{lo:.{digits}f}, {hi:.{digits}f}]"


# ---------------------------------------------------------------- markdown results files


def md_tables(text: str) -> list[list[str]]:
    """The markdown tables of ``text``, each as its lines (header, rule, rows)."""
    tables, cur = [], []
    for line in text.splitlines():
        if line.startswith("|"):
            cur.append(line)
        elif cur:
            tables.append(cur)
            cur = []
    if cur:
        tables.append(cur)
    return [t for t in tables if len(t) >= 2 and set(t[1].replace("|", "").strip()) <= set("-: ")]


def table_rows(table: list[str]) -> list[list[str]]:
    """Cells of every row of a table (header included, the rule left out)."""
    return [[c.strip() for c in line.strip().strip("|").split("|")] for i, line in enumerate(table) if i != 1]


def source_line(ctx: DocContext, path: Path, text: str | None = None, command: str | None = None) -> str:
    """``From `file`: `command` (date).`` with the command and date found in the file's text."""
    text = ctx.text(path) if text is None else text
    cmd = command or (m.group(1) if (m := _CMD.search(text[:3000])) else None)
    date = m.group(1) if (m := _DATE.search(text[:3000])) else None
    tail = (f": `{cmd}`" if cmd else "") + (f" ({date})" if date else "")
    return f"From `{ctx.rel(path)}`{tail}."


def include_tables(name: str, tables: Sequence[int] = (0,), heading: bool = False, under: str | None = None):
    """A builder that quotes tables ``tables`` of results file ``name`` verbatim, then its source.

    ``heading``: put the heading above each table in the file (bold) before the table. ``under``: the
    file's folder relative to the repository root (default: the results folder).
    """

    def build(ctx: DocContext) -> str:
        path = ctx.root / under / name if under else ctx.result(name)
        text = ctx.text(path)
        found = md_tables(text)
        parts = []
        for i in tables:
            if i >= len(found):
                raise ReportError(f"{ctx.rel(path)}: has {len(found)} tables, no table {i}")
            if heading:
                before = text[: text.index(found[i][0])]
                heads = re.findall(r"^#+ (.+)$", before, flags=re.M)
                if heads:
                    parts.append(f"**{heads[-1].strip()}**")
            parts.append("\n".join(found[i]))
        parts.append(source_line(ctx, path))
        return "\n\n".join(parts) + "\n"

    return build


def ilora_summary(ctx: DocContext) -> str:
    """Ranges of the I-LoRA overhead ratios (whole layer and adapter branch) over every row of
    ``ilora.md``, named per shape, never one row alone."""
    path = ctx.result("ilora.md")
    rows = table_rows(md_tables(ctx.text(path))[0])
    head, body = rows[0], rows[1:]
    try:
        i_shape, i_pass = head.index("shape (in->out)"), head.index("pass")
        i_ratio, i_branch = head.index("ratio"), head.index("branch ratio")
        layer = [(float(r[i_ratio]), f"{r[i_shape]} {r[i_pass]}") for r in body]
        branch = [(float(r[i_branch]), f"{r[i_shape]} {r[i_pass]}") for r in body]
    except (ValueError, IndexError):
        raise ReportError(f"{ctx.rel(path)}: not the I-LoRA benchmark table") from None

    def rng(vals):
        lo, hi = min(vals), max(vals)
        return f"{lo[0]:.2f} ({lo[1]}) to {hi[0]:.2f} ({hi[1]})"

    return (
        f"Time our I-LoRA adds to the base projection, as a share of what the naive per-head loop adds "
        f"(lower is better, 1 = no gain; over all {len(body)} shape x pass rows): whole layer {rng(layer)}; "
        f"adapter branch alone {rng(branch)}. {source_line(ctx, path)}\n"
    )


# ---------------------------------------------------------------- verify-reference


def _verify(ctx: DocContext) -> tuple[Path, dict, list[dict]]:
    path = ctx.result("verify_reference.json")
    data = ctx.json(path)
    checks = data.get("checks")
    if not isinstance(checks, list) or not checks:
        raise ReportError(f"{ctx.rel(path)}: no 'checks' list")
    return path, data, checks


def _worst(checks: list[dict], key: str) -> dict:
    vals = [c for c in checks if isinstance(c.get(key), (int, float))]
    return max(vals, key=lambda c: c[key]) if vals else {}


def verify_summary(ctx: DocContext) -> str:
    """One paragraph: checks passed, worst absolute and relative error and where."""
    path, data, checks = _verify(ctx)
    passed = sum(bool(c.get("ok")) for c in checks)
    wa, wr = _worst(checks, "max_abs"), _worst(checks, "max_rel")
    return (
        f"On the shared reference fixtures {passed} of {len(checks)} compared tensors are within the "
        f"tolerance (relative error <= {data.get('tol', 1e-4):.0e}); the worst absolute error is "
        f"{wa.get('max_abs', float('nan')):.1e} ({wa.get('component')}, {wa.get('name')}), the worst "
        f"relative error {wr.get('max_rel', float('nan')):.1e} ({wr.get('component')}). "
        + source_line(ctx, path, "", data.get("command"))[:-1]
        + f" ({data.get('date')}, torch {data.get('torch')}).\n"
    )


def verify_table(ctx: DocContext) -> str:
    """Per component: tensors compared, worst absolute and relative error, status."""
    path, data, checks = _verify(ctx)
    per: dict[str, list[dict]] = {}
    for c in checks:
        per.setdefault(str(c.get("component")), []).append(c)
    lines = ["| component | tensors | max abs error | max rel error | status |", "|---|---|---|---|---|"]
    for comp, cs in per.items():
        a = max((c["max_abs"] for c in cs if isinstance(c.get("max_abs"), (int, float))), default=None)
        r = max((c["max_rel"] for c in cs if isinstance(c.get("max_rel"), (int, float))), default=None)
        status = "ok" if all(c.get("ok") for c in cs) else "FAIL"
        lines.append(
            f"| {comp} | {len(cs)} | {'-' if a is None else f'{a:.1e}'} | "
            f"{'-' if r is None else f'{r:.1e}'} | {status} |"
        )
    return "\n".join(lines) + "\n\n" + verify_summary(ctx)


def include_section(name: str, heading: str | None = None):
    """A builder that quotes a markdown results file verbatim: the body under ``## heading`` (up to the
    next heading of that level or above), or with ``heading=None`` everything after the title line;
    then its source."""

    def build(ctx: DocContext) -> str:
        path = ctx.result(name)
        text = ctx.text(path)
        lines = text.splitlines()
        if heading is None:
            start = next((i + 1 for i, x in enumerate(lines) if x.startswith("# ")), 0)
            end = len(lines)
        else:
            idx = [i for i, x in enumerate(lines) if re.match(r"#+ ", x) and x.split(" ", 1)[1] == heading]
            if not idx:
                raise ReportError(f"{ctx.rel(path)}: no section {heading!r}")
            level = len(lines[idx[0]].split(" ", 1)[0])
            start = idx[0] + 1
            end = next(
                (i for i in range(start, len(lines)) if re.match(rf"#{{1,{level}}} ", lines[i])), len(lines)
            )
        body = "\n".join(lines[start:end]).strip("\n")
        named = re.search(r"\b(benchmarks/\w+\.py)\b", heading or "")
        src = source_line(ctx, path, body, f"python {named.group(1)}" if named else None)
        if not _DATE.search(body[:3000]) and (date := _DATE.search(text[:3000])):
            src = src[:-1] + f" ({date.group(1)})."
        body = re.sub(r"^(#+) ", lambda m: "#" * max(len(m.group(1)), 4) + " ", body, flags=re.M)
        return body + "\n\n" + src + "\n"

    return build


__all__ = [
    "DocContext",
    "bootstrap_mean",
    "ilora_summary",
    "include_section",
    "include_tables",
    "md_tables",
    "source_line",
    "verify_summary",
    "verify_table",
    "wilson",
]
