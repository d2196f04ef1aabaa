"""Head profiles over a dataset: mean routing per task x layer x projection x head (overall and per
token kind), mean head contribution norms, and the single-head ablation metric table.

For every manifest row the clip is encoded once and decoded under each variant of
:func:`~crab_core.interpret.ablation.single_head_variants` (normal, each head alone, each head
removed); the normal run is captured. Per-variant metrics use the task accumulators.
"""

from __future__ import annotations

import json
import logging
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..tasks import get_task
from .ablation import Scorer, Variant, generate, num_heads, single_head_variants
from .capture import TOKEN_KINDS, RoutingTrace
from .inputs import Request, encode, load_input

log = logging.getLogger(__name__)

#: Metric used in the ablation summary per task (the first metric's first key otherwise).
PRIMARY_METRIC = {
    "ave": "ave_accuracy.accuracy",
    "avvp": "avvp.segment_type_av",
    "avqa": "avqa_accuracy.accuracy",
    "arig": "arig.miou",
    "s4": "binary_seg.miou",
    "ms3": "binary_seg.miou",
    "avss": "avss_seg.miou",
    "ref-avs": "binary_seg.miou",
}


class _Mean:
    """Running NaN-aware mean of equally shaped arrays."""

    def __init__(self) -> None:
        self.total: np.ndarray | None = None
        self.count: np.ndarray | None = None

    def add(self, values: np.ndarray) -> None:
        """Add ``(N, ...)`` rows."""
        if values.shape[0] == 0:
            return
        s, c = np.nansum(values, 0), (~np.isnan(values)).sum(0)
        self.total = s if self.total is None else self.total + s
        self.count = c if self.count is None else self.count + c

    def mean(self) -> np.ndarray | None:
        if self.total is None:
            return None
        with np.errstate(invalid="ignore", divide="ignore"):
            return (self.total / self.count).astype(np.float32)


@dataclass
class HeadProfile:
    """Dataset-level head profile (plain data; ``to_json`` / ``from_json``).

    Attributes:
        model: model name. num_heads: H. layers / projections: axes of the arrays.
        routing: ``{task: (n_layers, n_proj, H)}`` mean router weight over every captured token.
        routing_by_kind: ``{task: {kind: (n_layers, n_proj, H)}}`` the same per token kind.
        norms: ``{task: (n_layers, n_proj, H)}`` mean head contribution norm.
        ablation: ``{task: {variant: {metric: value}}}`` metrics of each routing variant.
        answers: ``{task: {variant: fraction of answers identical to the normal run}}``.
        counts: samples per task. errors: ``"id: message"`` of skipped rows. seconds: wall time.
    """

    model: str
    num_heads: int
    layers: list[int] = field(default_factory=list)
    projections: list[str] = field(default_factory=list)
    routing: dict[str, np.ndarray] = field(default_factory=dict)
    routing_by_kind: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)
    norms: dict[str, np.ndarray] = field(default_factory=dict)
    ablation: dict[str, dict[str, dict[str, float]]] = field(default_factory=dict)
    answers: dict[str, dict[str, float]] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def to_json(self) -> dict:
        def arr(a):
            return np.round(np.asarray(a, np.float64), 6).tolist()

        return {
            "model": self.model,
            "num_heads": self.num_heads,
            "layers": self.layers,
            "projections": self.projections,
            "routing": {t: arr(a) for t, a in self.routing.items()},
            "routing_by_kind": {
                t: {k: arr(a) for k, a in d.items()} for t, d in self.routing_by_kind.items()
            },
            "norms": {t: arr(a) for t, a in self.norms.items()},
            "ablation": self.ablation,
            "answers": self.answers,
            "counts": self.counts,
            "errors": self.errors,
            "seconds": self.seconds,
            "primary_metric": {t: primary_metric(t, self.ablation.get(t, {})) for t in self.ablation},
        }

    @classmethod
    def from_json(cls, data: dict) -> HeadProfile:
        def arr(a):
            return np.asarray(a, np.float32)

        return cls(
            data["model"],
            data["num_heads"],
            data["layers"],
            data["projections"],
            {t: arr(a) for t, a in data["routing"].items()},
            {t: {k: arr(a) for k, a in d.items()} for t, d in data["routing_by_kind"].items()},
            {t: arr(a) for t, a in data["norms"].items()},
            data["ablation"],
            data.get("answers", {}),
            data["counts"],
            data.get("errors", []),
            data.get("seconds", 0.0),
        )


def primary_metric(task: str, table: dict[str, dict[str, float]]) -> str | None:
    """The metric key summarising ``task`` in an ablation table."""
    key = PRIMARY_METRIC.get(task)
    first = next(iter(table.values()), {})
    if key in first:
        return key
    if task == "ref-avs" and "null_s.s" in first:
        return "null_s.s"
    return next(iter(first), None)


def read_manifest(path: str | Path) -> list[dict]:
    """Rows of a JSONL manifest."""
    with open(path, encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


class _TaskAcc:
    def __init__(self, task: str, variants: Sequence[Variant]) -> None:
        self.routing, self.norms = _Mean(), _Mean()
        self.kinds: dict[str, _Mean] = defaultdict(_Mean)
        self.scorers = {v.name: Scorer(task) for v in variants}
        self.same: dict[str, list[bool]] = defaultdict(list)
        self.nll: dict[str, list[float]] = defaultdict(list)
        self.count = 0

    def add_trace(self, trace: RoutingTrace) -> None:
        self.routing.add(trace.weights)
        self.norms.add(trace.norms)
        for k in TOKEN_KINDS:
            self.kinds[k].add(trace.weights[trace.kinds == k])


def profile_dataset(
    pipeline,
    manifest: str | Path,
    limit: int | None = None,
    variants: Sequence[Variant] | None = None,
    tasks: Sequence[str] | None = None,
    max_new_tokens: int | None = None,
) -> HeadProfile:
    """Profile the heads of ``pipeline``'s model on a manifest.

    Args:
        pipeline: a :class:`~crab_core.pipeline.CrabPipeline`.
        manifest: JSONL manifest (docs/manifest.md); media paths relative to its folder.
        limit: at most this many rows per task.
        variants: routing variants (default :func:`single_head_variants`); the first is captured.
        tasks: restrict to these tasks.
        max_new_tokens: decode budget (default: each task's).
    """
    t0 = time.perf_counter()
    root = Path(manifest).parent
    h = num_heads(pipeline.model)
    variants = list(variants) if variants is not None else single_head_variants(h)
    prof = HeadProfile(pipeline.name, h)
    accs: dict[str, _TaskAcc] = {}
    for row in read_manifest(manifest):
        task = get_task(row["task"]).name
        if (tasks and task not in tasks) or (
            limit is not None and task in accs and accs[task].count >= limit
        ):
            continue
        acc = accs.setdefault(task, _TaskAcc(task, variants))
        try:
            _profile_row(pipeline, row, root, variants, acc, prof, max_new_tokens)
        except Exception as exc:  # noqa: BLE001 - one bad row must not stop a profile
            log.warning("skipping %s: %s", row.get("id"), exc)
            prof.errors.append(f"{row.get('id')}: {type(exc).__name__}: {exc}")
    for task, acc in accs.items():
        if acc.count == 0:
            continue
        prof.counts[task] = acc.count
        prof.routing[task], prof.norms[task] = acc.routing.mean(), acc.norms.mean()
        prof.routing_by_kind[task] = {k: m.mean() for k, m in acc.kinds.items() if m.mean() is not None}
        prof.ablation[task] = {
            name: {**s.compute(), **_mean_nll(acc.nll.get(name))} for name, s in acc.scorers.items()
        }
        prof.answers[task] = {name: float(np.mean(v)) for name, v in acc.same.items()}
    prof.seconds = time.perf_counter() - t0
    return prof


def _profile_row(pipeline, row, root, variants, acc: _TaskAcc, prof: HeadProfile, max_new_tokens) -> None:
    for scorer in acc.scorers.values():
        scorer.root = root
    raw = load_input(pipeline, Request.from_row(row, root))
    media = encode(pipeline.model, raw)
    outs = [
        generate(
            pipeline,
            raw,
            media,
            v,
            capture=(i == 0),
            max_new_tokens=max_new_tokens,
            reference=row.get("output"),
        )
        for i, v in enumerate(variants)
    ]
    trace = outs[0].trace
    if not prof.layers:
        prof.layers, prof.projections = trace.layers, trace.projections
    acc.add_trace(trace)
    for out in outs:
        acc.scorers[out.variant.name].update(out.result, row.get("gt", {}))
        acc.same[out.variant.name].append(out.result.text == outs[0].result.text)
        if out.metrics:
            acc.nll[out.variant.name].append(out.metrics["reference_nll"])
    acc.count += 1
    log.info("%s %s: %s", row.get("id"), row["task"], outs[0].result.text[:60])


def _mean_nll(values) -> dict[str, float]:
    return {"reference_nll": float(np.mean(values))} if values else {}


def write_report(prof: HeadProfile, out_dir: str | Path, png: bool = True) -> list[Path]:
    """Write ``profile.json``, ``ablation.md`` and the figures (plotly HTML, matplotlib PNG)."""
    from . import profile_figures

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = [out / "profile.json", out / "ablation.md"]
    (out / "profile.json").write_text(json.dumps(prof.to_json(), indent=1) + "\n", encoding="utf-8")
    (out / "ablation.md").write_text(ablation_markdown(prof), encoding="utf-8")
    html = {
        "task_head_routing": profile_figures.task_head_routing(prof),
        "layer_head_routing": profile_figures.layer_head_summary_tasks(prof),
        "kind_head_routing": profile_figures.kind_head_routing(prof),
        "ablation": profile_figures.ablation_heatmap(prof),
    }
    for name, fig in html.items():
        path = out / f"{name}.html"
        fig.write_html(path, include_plotlyjs="cdn")
        written.append(path)
    if png:
        written += profile_figures.profile_pngs(prof, out)
    return written


def ablation_markdown(prof: HeadProfile) -> str:
    """Markdown table: per task the primary metric of every variant (and answer agreement)."""
    variants = list(next(iter(prof.ablation.values()), {}))
    lines = ["| task | n | metric | " + " | ".join(variants) + " |", "|---|---|---|" + "---|" * len(variants)]
    for task, table in prof.ablation.items():
        key = primary_metric(task, table)
        vals = [f"{table[v].get(key, float('nan')):.3f}" if key else "-" for v in variants]
        lines.append(f"| {task} | {prof.counts.get(task, 0)} | {key or '-'} | " + " | ".join(vals) + " |")
    lines += [
        "",
        "Mean per-token NLL of the reference answer (lower is better):",
        "",
        "| task | " + " | ".join(variants) + " |",
        "|---|" + "---|" * len(variants),
    ]
    for task, table in prof.ablation.items():
        vals = [f"{table[v]['reference_nll']:.3f}" if "reference_nll" in table[v] else "-" for v in variants]
        lines.append(f"| {task} | " + " | ".join(vals) + " |")
    lines += [
        "",
        "Share of answers identical to the normal run:",
        "",
        "| task | " + " | ".join(variants) + " |",
        "|---|" + "---|" * len(variants),
    ]
    for task, same in prof.answers.items():
        lines.append(f"| {task} | " + " | ".join(f"{same.get(v, 0):.2f}" for v in variants) + " |")
    return "\n".join(lines) + "\n"
