"""Quality tables built from the committed results files, never from hand-copied figures.

``benchmarks/crab_tiny_quality.py`` writes one JSON file per run (``crab_tiny_quality*.json``):
``{split: {"model", "trained", "metrics": {task: {key: value}}, "baselines": {task: {key: value}},
"counts": {task: n}, ...}}``, plus ``seed``, ``command``, ``weights_sha256``,
``ref_avs_null_count`` and ``avqa_type_counts``. This module reads those files and renders the
crab-tiny quality table (one row per headline metric with its issue #13 target, one column per
split and results file, a range over seeds per split) and the AVQA per-question-type table, as
markdown. ``scripts/render_docs.py`` puts them into README / MODEL_CARD; the app's Model tab shows
the same text.

Example::

    >>> from crab_core.reports import find_results, load_results, quality_report
    >>> print(quality_report(load_results(find_results("benchmarks/results"))))  # doctest: +SKIP
"""

from __future__ import annotations

import ast
import hashlib
import json
import math
import re
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from .errors import ReportError

#: a results file larger than this is refused (the real ones are ~20 KB)
MAX_RESULTS_BYTES = 8 * 2**20
RESULTS_GLOB = "crab_tiny_quality*.json"
#: the results file whose model (and weights) the tables describe
PRIMARY = "crab_tiny_quality"
SPLITS = ("test", "test-compositional")
_TYPE_PREFIX = "accuracy/type/"


@dataclass(frozen=True)
class Target:
    """One headline metric (``metrics[task][key]``) and its target (issue #13)."""

    task: str
    key: str
    label: str
    bound: float
    higher_is_better: bool = True

    @property
    def text(self) -> str:
        return f"{'>=' if self.higher_is_better else '<='} {self.bound:.2f}"

    def met(self, value: float) -> bool:
        return value >= self.bound if self.higher_is_better else value <= self.bound


#: the crab-tiny quality targets of issue #13, in table order
TARGETS: tuple[Target, ...] = (
    Target("ave", "accuracy", "AVE accuracy", 0.92),
    Target("avqa", "accuracy", "AVQA accuracy", 0.80),
    Target("avvp", "segment_audio", "AVVP segment F1 audio", 0.75),
    Target("avvp", "segment_visual", "AVVP segment F1 visual", 0.85),
    Target("arig", "ciou", "ARIG cIoU", 0.60),
    Target("s4", "miou", "S4 mIoU", 0.75),
    Target("ms3", "miou", "MS3 mIoU", 0.65),
    Target("avss", "miou_present", "AVSS mIoU (classes present)", 0.45),
    Target("ref-avs", "miou", "Ref-AVS mIoU", 0.60),
    Target("ref-avs", "s", "Ref-AVS null S (lower is better)", 0.15, higher_is_better=False),
)


@dataclass(frozen=True)
class SplitResult:
    """One split of one results file (``source`` is the file's stem)."""

    source: str
    split: str
    model: str
    trained: bool
    weights: str | None
    seed: int | None
    command: str | None
    metrics: Mapping[str, Mapping[str, float]]
    baselines: Mapping[str, Mapping[str, float]]
    counts: Mapping[str, int]
    avqa_type_counts: Mapping[str, int]
    ref_avs_null: int | None = None

    @property
    def identity(self) -> tuple[str, str | None]:
        """(model name, weights digest or None when the file predates digests)."""
        return self.model, self.weights

    def value(self, task: str, key: str) -> float | None:
        return self.metrics.get(task, {}).get(key)

    def baseline(self, task: str, key: str) -> float | None:
        return self.baselines.get(task, {}).get(key)

    def n(self, task: str, key: str) -> int | None:
        """Samples behind ``metrics[task][key]`` (Ref-AVS: null rows for ``s``, the others for the rest)."""
        if task == "avqa" and key.startswith(_TYPE_PREFIX):
            return self.avqa_type_counts.get(key.removeprefix(_TYPE_PREFIX))
        total = self.counts.get(task)
        if task == "ref-avs" and total is not None:  # null rows score only S, the others only the rest
            if self.ref_avs_null is None:
                return None
            return self.ref_avs_null if key == "s" else total - self.ref_avs_null
        return total


def weights_digest(path: str | Path) -> str:
    """First 16 hex digits of the SHA-256 of a weights file (read in 1 MiB chunks)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(2**20):
            h.update(chunk)
    return h.hexdigest()[:16]


def find_results(folder: str | Path) -> list[Path]:
    """The ``crab_tiny_quality*.json`` files of ``folder``, the primary file first, then by name."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ReportError(f"{folder}: results folder not found")
    return sorted(folder.glob(RESULTS_GLOB), key=lambda p: (p.stem != PRIMARY, p.name))


def load_results(paths: Sequence[str | Path]) -> list[SplitResult]:
    """Read results files (each split a :class:`SplitResult`, in file then split order).

    Raises:
        ReportError: a file is missing, too large, not JSON or not a quality results file.
    """
    out: list[SplitResult] = []
    for path in map(Path, paths):
        raw = _read_json(path)
        seeds, command = _md_meta(path.with_suffix(".md"))
        for split, body in raw.items():
            out.append(_parse_split(path, split, body, seeds.get(split), command))
    return out


def _read_json(path: Path) -> dict:
    try:
        size = path.stat().st_size
        if size > MAX_RESULTS_BYTES:
            raise ReportError(f"{path.name}: {size} bytes, more than a results file ({MAX_RESULTS_BYTES})")
        raw = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ReportError(f"{path.name}: results file not found") from None
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise ReportError(f"{path.name}: not a readable JSON results file ({type(exc).__name__})") from None
    if not isinstance(raw, dict) or not raw or not all(isinstance(v, dict) for v in raw.values()):
        raise ReportError(f"{path.name}: not a quality results file (want {{split: {{metrics, ...}}}})")
    return raw


def _md_meta(md: Path) -> tuple[dict[str, int], str | None]:
    """Seeds and command from the markdown the same run wrote (results files that predate ``seed``)."""
    try:
        text = md.read_text(encoding="utf-8")[:4000]
    except (OSError, UnicodeDecodeError):
        return {}, None
    cmd = re.search(r"`(python benchmarks/crab_tiny_quality\.py[^`]*)`", text)
    seeds: dict[str, int] = {}
    found = re.search(r"split seeds (\{[^}]*\})", text)
    if found:
        try:
            parsed = ast.literal_eval(found.group(1))
        except (ValueError, SyntaxError):
            parsed = {}
        seeds = {k: v for k, v in parsed.items() if isinstance(k, str) and type(v) is int}
    return seeds, cmd.group(1) if cmd else None


def _parse_split(
    path: Path, split: str, body: dict, md_seed: int | None, md_command: str | None
) -> SplitResult:
    where = f"{path.name} [{split}]"
    if "metrics" not in body:
        raise ReportError(f"{where}: no 'metrics' (not a quality results file)")
    seed = body.get("seed", md_seed)
    weights = body.get("weights_sha256")
    null = body.get("ref_avs_null_count")
    for name, v, kind in (
        ("seed", seed, int),
        ("weights_sha256", weights, str),
        ("ref_avs_null_count", null, int),
    ):
        if v is not None and (not isinstance(v, kind) or isinstance(v, bool)):
            raise ReportError(f"{where}: '{name}' is {type(v).__name__}, want {kind.__name__}")
    return SplitResult(
        source=path.stem,
        split=split,
        model=str(body.get("model", "?")),
        trained=body.get("trained") is not False,
        weights=weights,
        seed=seed,
        command=str(body.get("command") or md_command or "") or None,
        metrics=_number_table(body["metrics"], where, "metrics"),
        baselines=_number_table(body.get("baselines") or {}, where, "baselines"),
        counts=_counts(body.get("counts") or {}, where, "counts"),
        avqa_type_counts=_counts(body.get("avqa_type_counts") or {}, where, "avqa_type_counts"),
        ref_avs_null=null,
    )


def _number_table(obj, where: str, name: str) -> dict[str, dict[str, float]]:
    if not isinstance(obj, dict) or not all(isinstance(v, dict) for v in obj.values()):
        raise ReportError(f"{where}: '{name}' is not {{task: {{metric: value}}}}")
    out: dict[str, dict[str, float]] = {}
    for task, vals in obj.items():
        for key, v in vals.items():
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
                raise ReportError(f"{where}: {name}[{task!r}][{key!r}] = {v!r} is not a finite number")
        out[task] = {k: float(v) for k, v in vals.items()}
    return out


def _counts(obj, where: str, name: str) -> dict[str, int]:
    if not isinstance(obj, dict) or not all(type(v) is int and v >= 0 for v in obj.values()):
        raise ReportError(f"{where}: '{name}' is not {{name: count >= 0}}")
    return dict(obj)


def same_model(results: Sequence[SplitResult]) -> tuple[list[SplitResult], list[SplitResult]]:
    """Split ``results`` into those of the primary file's model and weights, and the others."""
    if not results:
        raise ReportError("no quality results to report")
    ref = next((r for r in results if r.source == PRIMARY), results[0]).identity
    return [r for r in results if r.identity == ref], [r for r in results if r.identity != ref]


@dataclass(frozen=True)
class _Row:
    task: str
    key: str
    label: str
    target: Target | None = None


def _cell(r: SplitResult, row: _Row, col_n: int | None) -> str:
    v = r.value(row.task, row.key)
    if v is None:
        return "-"
    b = r.baseline(row.task, row.key)
    text = f"{v:.3f}"
    if row.target is not None and row.target.met(v):
        text = f"**{text}**"
    text += f" ({'-' if b is None else f'{b:.3f}'})"
    n = r.n(row.task, row.key)
    if n != col_n and (n is not None or col_n is not None):
        text += f", n={'?' if n is None else n}"
    return text


def _spread(results: Sequence[SplitResult], row: _Row) -> str:
    """``min–max (k runs, n=total)`` over the results that have the metric; ``-`` when none has."""
    have = [r for r in results if r.value(row.task, row.key) is not None]
    if not have:
        return "-"
    vals = [r.value(row.task, row.key) for r in have]
    ns = [r.n(row.task, row.key) for r in have]
    total = None if None in ns else sum(ns)
    lo, hi = min(vals), max(vals)
    span = f"{lo:.3f}" if f"{lo:.3f}" == f"{hi:.3f}" else f"{lo:.3f}–{hi:.3f}"
    return f"{span} ({len(have)} run{'s' * (len(have) > 1)}, n={'?' if total is None else total})"


def _header(r: SplitResult, col_n: int | None) -> str:
    where = f"seed {r.seed}" if r.seed is not None else r.source
    rnd = ", random weights" if not r.trained else ""
    return f"{r.split} ({where}{'' if col_n is None else f', n={col_n}'}{rnd})"


def _grid(
    rows: Sequence[_Row], columns: Sequence[SplitResult], ranged: Sequence[SplitResult], with_target: bool
) -> list[str]:
    """Markdown table lines: rows x (target?, one column per result, one range column per split)."""
    splits = [s for s in SPLITS if any(r.split == s for r in ranged)]
    splits += sorted({r.split for r in ranged} - set(splits))
    col_ns = []
    for c in columns:
        ns = [c.n(row.task, row.key) for row in rows if c.value(row.task, row.key) is not None]
        common = Counter(ns).most_common(1)
        col_ns.append(common[0][0] if common and with_target else None)
    head = ["metric"] + (["target"] if with_target else [])
    head += [_header(c, n) for c, n in zip(columns, col_ns)] + [f"range over seeds: {s}" for s in splits]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in rows:
        cells = [row.label] + ([row.target.text] if with_target and row.target else [])
        cells += [_cell(c, row, n) for c, n in zip(columns, col_ns)]
        cells += [_spread([r for r in ranged if r.split == s], row) for s in splits]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def _verdict(results: Sequence[SplitResult]) -> str:
    every, some, none = [], [], []
    for t in TARGETS:
        vals = [r.value(t.task, t.key) for r in results if r.value(t.task, t.key) is not None]
        if not vals:
            continue
        hits = sum(t.met(v) for v in vals)
        if hits == len(vals):
            every.append(t.label)
        elif hits:
            some.append(f"{t.label} ({hits} of {len(vals)})")
        else:
            none.append(t.label)
    parts = [f"on every result: {', '.join(every) or 'none'}"]
    parts += [f"on some: {', '.join(some)}"] if some else []
    parts += [f"on none: {', '.join(none)}"] if none else []
    return "Targets met " + "; ".join(parts) + "."


def _sources(results: Sequence[SplitResult], folder: str) -> list[str]:
    lines = []
    for source in dict.fromkeys(r.source for r in results):
        rs = [r for r in results if r.source == source]
        seeds = ", ".join(f"{r.split}={r.seed}" for r in rs if r.seed is not None)
        cmd = next((r.command for r in rs if r.command), None)
        lines.append(
            f"- `{folder}/{source}.json`"
            + (f": `{cmd}`" if cmd else "")
            + (f" (seeds {seeds})" if seeds else "")
        )
    return lines


def quality_table(results: Sequence[SplitResult], folder: str = "benchmarks/results") -> str:
    """The crab-tiny quality table (markdown) with its notes, for the primary file's model.

    Columns: one per split of every results file that scores at least two headline tasks; a range
    column per split over every result of that model (all files, all seeds). ``folder`` is only
    the path printed in the notes.

    Raises:
        ReportError: ``results`` is empty.
    """
    mine, others = same_model(results)
    columns = [r for r in mine if len({t.task for t in TARGETS if r.value(t.task, t.key) is not None}) >= 2]
    rows = [_Row(t.task, t.key, t.label, t) for t in TARGETS]
    lines = _grid(rows, columns, mine, with_target=True)
    model = mine[0].model + (f" (weights sha256 {mine[0].weights})" if mine[0].weights else "")
    legend = (
        f"Model: {model}. Bold: target met. In brackets: the majority / trivial baseline on the same "
        "split (`-`: the results file has none). n: samples scored per task (in a cell when it differs "
        "from its column's; `?`: not recorded in the results file). Range over seeds: min–max over "
        "every result of this model on that split "
        "(each results file is other fresh seeds; n = their samples together), not the best one."
    )
    parts = ["\n".join(lines), legend, _verdict(mine), "\n".join(["From:", *_sources(mine, folder)])]
    if others:
        left = ", ".join(f"{r.source} [{r.split}]" for r in others)
        parts.append(f"Left out (another model or other weights than `{PRIMARY}.json`): {left}.")
    return "\n\n".join(parts) + "\n"


def avqa_type_table(results: Sequence[SplitResult]) -> str:
    """AVQA accuracy per question type (markdown), majority answer of the type in brackets and its n;
    ``""`` when no result of the primary file's model has per-type accuracies."""
    mine, _ = same_model(results)
    typed = [r for r in mine if any(k.startswith(_TYPE_PREFIX) for k in r.metrics.get("avqa", {}))]
    if not typed:
        return ""
    types = sorted({k for r in typed for k in r.metrics["avqa"] if k.startswith(_TYPE_PREFIX)})
    rows = [_Row("avqa", k, k.removeprefix(_TYPE_PREFIX)) for k in types]
    columns = [r for r in typed if len({t.task for t in TARGETS if r.value(t.task, t.key) is not None}) >= 2]
    lines = _grid(rows, columns or typed, typed, with_target=False)
    lines[0] = lines[0].replace("| metric |", "| question type |", 1)
    unknown = sorted({r.source for r in typed if not r.avqa_type_counts})
    note = "Majority answer of the type in brackets, n items of the type."
    if unknown:
        note += f" n per type not recorded in: {', '.join(unknown)}."
    return "\n".join(lines) + "\n\n" + note + "\n"


def quality_report(results: Sequence[SplitResult], folder: str = "benchmarks/results") -> str:
    """Both tables: :func:`quality_table`, then the AVQA per-type table under a heading when present."""
    per_type = avqa_type_table(results)
    text = quality_table(results, folder)
    return text + (f"\n**AVQA accuracy per question type**\n\n{per_type}" if per_type else "")


__all__ = [
    "MAX_RESULTS_BYTES",
    "PRIMARY",
    "RESULTS_GLOB",
    "TARGETS",
    "SplitResult",
    "Target",
    "avqa_type_table",
    "find_results",
    "load_results",
    "quality_report",
    "quality_table",
    "same_model",
    "weights_digest",
]
