"""The head-profile tables of docs/interpret/README.md, built from the committed profile files.

``python -m crab_core inspect profile`` writes ``profile.json`` (per task: mean routing, single-head
ablation metrics, share of answers identical to the normal run, n) and ``inspect
attribution-sanity`` writes ``attribution_sanity.json`` (per sample localisation ratios). Every
number these builders print carries its n and a 95 % interval where the file allows one:

- a share of samples (identical answers, attribution ratio above 1, AVQA accuracy: one question per
  sample): Wilson score interval;
- a mean of n per-sample values in [0, 1] (AVE accuracy: 10 segments per sample; S4 / MS3 / Ref-AVS
  mIoU and ARIG IoU: one mask or box per sample): Hoeffding interval, mean +- sqrt(ln(2/0.05) / 2n),
  valid for any such values but wide, since the profile keeps only the mean;
- a mean of per-sample values recorded in the file (attribution ratios): percentile bootstrap;
- anything else (pooled F1, class-averaged AVSS mIoU, NLL, router weights): n only, marked ``-``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

from .doc_tables import DocContext, bootstrap_mean, fmt_ci, wilson
from .errors import ReportError

#: metric key -> interval kind (see the module docstring)
INTERVAL = {
    "avqa_accuracy.accuracy": "wilson",
    "ave_accuracy.accuracy": "hoeffding",
    "binary_seg.miou": "hoeffding",
    "arig.miou": "hoeffding",
}
#: the headline key where ``inspect profile``'s first-key primary metric is not it
PREFERRED = {"avss": "avss_seg.miou_present"}
VARIANT_ORDER = ("normal", "only_h0", "only_h1", "only_h2", "without_h0", "without_h1", "without_h2")


def hoeffding(mean: float, n: int, alpha: float = 0.05) -> tuple[float, float]:
    """Two-sided Hoeffding interval of the mean of ``n`` independent values in [0, 1]."""
    half = math.sqrt(math.log(2 / alpha) / (2 * n))
    return max(0.0, mean - half), min(1.0, mean + half)


def _bounds(key: str, value: float, n: int) -> tuple[float, float] | None:
    kind = INTERVAL.get(key)
    if kind == "wilson":
        return wilson(round(value * n), n)
    if kind == "hoeffding":
        return hoeffding(value, n)
    return None


def _interval(key: str, value: float, n: int) -> str:
    b = _bounds(key, value, n)
    return fmt_ci(*b) if b else "-"


def _cell(value: float | None, bounds: tuple[float, float] | None) -> str:
    """A variant's value, bold when it lies outside the normal run's interval."""
    if value is None:
        return "-"
    text = f"{value:.3f}"
    return f"**{text}**" if bounds and not bounds[0] <= value <= bounds[1] else text


def _profile(ctx: DocContext, folder: str) -> tuple[Path, dict]:
    path = ctx.root / folder / "profile.json"
    data = ctx.json(path)
    for key in ("ablation", "counts", "primary_metric", "routing"):
        if not isinstance(data.get(key), dict):
            raise ReportError(f"{ctx.rel(path)}: no {key!r} (not an `inspect profile` file)")
    return path, data


def _variants(data: dict) -> list[str]:
    seen = {v for t in data["ablation"].values() for v in t}
    return [v for v in VARIANT_ORDER if v in seen] + sorted(seen - set(VARIANT_ORDER))


def ablation_table(folder: str):
    """Primary metric per task and routing variant, with n and the normal run's 95 % interval."""

    def build(ctx: DocContext) -> str:
        path, data = _profile(ctx, folder)
        variants = _variants(data)
        head = ["task", "n", "metric", "normal [95 % interval]", *variants[1:]]
        lines = ["| " + " | ".join(head) + " |", "|---" * len(head) + "|"]
        for task, table in data["ablation"].items():
            key, n = data["primary_metric"].get(task), data["counts"].get(task, 0)
            if PREFERRED.get(task) in table.get("normal", {}):
                key = PREFERRED[task]
            if key is None or key not in table.get("normal", {}) or not n:
                continue
            normal = table["normal"][key]
            bounds = _bounds(key, normal, n)
            cells = [_cell(table.get(v, {}).get(key), bounds) for v in variants[1:]]
            lines.append(
                f"| {task} | {n} | {key} | {normal:.3f} {_interval(key, normal, n)} | "
                + " | ".join(cells)
                + " |"
            )
        return (
            "\n".join(lines)
            + "\n\nBold: outside the normal run's 95 % interval (`-`: no interval for that metric). From `"
            + ctx.rel(path)
            + "`.\n"
        )

    return build


def agreement_table(folder: str):
    """Share of answers identical to the normal run, per task and variant, with Wilson intervals."""

    def build(ctx: DocContext) -> str:
        path, data = _profile(ctx, folder)
        variants = [v for v in _variants(data) if v != "normal"]
        lines = ["| task | n | " + " | ".join(variants) + " |", "|---" * (len(variants) + 2) + "|"]
        for task, shares in data.get("answers", {}).items():
            n = data["counts"].get(task, 0)
            if not n:
                continue
            cells = []
            for v in variants:
                p = shares.get(v)
                cells.append("-" if p is None else f"{p:.2f} {fmt_ci(*wilson(round(p * n), n))}")
            lines.append(f"| {task} | {n} | " + " | ".join(cells) + " |")
        return "\n".join(lines) + "\n\nFrom `" + ctx.rel(path) + "`; 95 % Wilson intervals.\n"

    return build


def _head_means(routing: Sequence) -> tuple[list[float], float, tuple[int, int, int, float]]:
    """Mean router weight per head over layers x projections, the largest deviation from uniform of
    any (layer, projection) cell, and that cell (layer, projection index, head, weight)."""
    cells = [(li, pi, hw) for li, layer in enumerate(routing) for pi, hw in enumerate(layer)]
    h = len(cells[0][2])
    means = [sum(c[2][k] for c in cells) / len(cells) for k in range(h)]
    best = max(
        ((li, pi, k, hw[k]) for li, pi, hw in cells for k in range(h)), key=lambda t: abs(t[3] - 1 / h)
    )
    return means, abs(best[3] - 1 / h), best


def routing_table(folders: Sequence[tuple[str, str]]):
    """Per task: mean router weight per head (over layers x projections) and the strongest single
    (layer, projection, head) preference, for each profile in ``folders`` ((folder, label) pairs)."""

    def build(ctx: DocContext) -> str:
        lines = [
            "| task | "
            + " | ".join(f"{label}: mean weight per head (n)" for _, label in folders)
            + " | "
            + " | ".join(f"{label}: strongest cell" for _, label in folders)
            + " |",
            "|---" * (2 * len(folders) + 1) + "|",
        ]
        profiles = [_profile(ctx, f) for f, _ in folders]
        tasks = list(dict.fromkeys(t for _, d in profiles for t in d["routing"]))
        for task in tasks:
            means, strongest = [], []
            for _, d in profiles:
                r = d["routing"].get(task)
                if not r:
                    means.append("-")
                    strongest.append("-")
                    continue
                m, _, (li, pi, k, w) = _head_means(r)
                means.append(" / ".join(f"{x:.3f}" for x in m) + f" ({d['counts'].get(task, '?')})")
                strongest.append(f"layer {d['layers'][li]} {d['projections'][pi]} head {k}: {w:.2f}")
            lines.append(f"| {task} | " + " | ".join(means) + " | " + " | ".join(strongest) + " |")
        h = profiles[0][1].get("num_heads", 3)
        srcs = ", ".join(f"`{ctx.rel(p)}`" for p, _ in profiles)
        return (
            "\n".join(lines)
            + f"\n\nUniform routing = {1 / h:.3f} per head. n: samples per task (their tokens pooled; the "
            f"files keep only means, so no interval). From {srcs}.\n"
        )

    return build


#: attribution level -> what it measures
LEVELS = {
    "embedding_seconds_sounding": "embeddings: seconds the object sounds",
    "fbank_seconds_sounding": "fbank: seconds the object sounds",
    "embedding_frames_visible": "embeddings: frames the object is visible (clips where it changes)",
    "pixel_frames_visible": "pixels: frames the object is visible (clips where it changes)",
    "embedding_frames_av": "embeddings: frames visible and sounding",
    "pixel_frames_av": "pixels: frames visible and sounding",
}


def attribution_table(path_rel: str):
    """Localisation ratios of ``attribution_sanity.json`` with n and 95 % intervals."""

    def build(ctx: DocContext) -> str:
        path = ctx.root / path_rel
        data = ctx.json(path)
        samples = data.get("samples")
        if not isinstance(samples, list) or not samples:
            raise ReportError(f"{ctx.rel(path)}: no 'samples' (not an attribution-sanity file)")
        lines = [
            "| level: attribution share on ... over elsewhere | n | mean ratio [bootstrap 95 %] | "
            "median | share > 1 [Wilson 95 %] |",
            "|---|---|---|---|---|",
        ]
        for key, label in LEVELS.items():
            vals = sorted(
                float(s[key])
                for s in samples
                if isinstance(s.get(key), (int, float)) and math.isfinite(s[key])
            )
            if not vals:
                continue
            n, above = len(vals), sum(v > 1 for v in vals)
            med = vals[n // 2] if n % 2 else (vals[n // 2 - 1] + vals[n // 2]) / 2
            lines.append(
                f"| {label} | {n} | {sum(vals) / n:.2f} {fmt_ci(*bootstrap_mean(vals))} | {med:.2f} | "
                f"{above / n:.2f} {fmt_ci(*wilson(above, n))} |"
            )
        delta = data.get("mean_abs_delta", {})
        deltas = ", ".join(f"{k} {v:.2f}" for k, v in delta.items())
        return (
            "\n".join(lines)
            + f"\n\n{data.get('num')} AVE samples rendered in memory, integrated gradients with "
            f"{data.get('n_steps')} steps; mean |convergence delta| (log-probability units): {deltas}. "
            f"From `{ctx.rel(path)}`.\n"
        )

    return build


def kind_table(folders: Sequence[tuple[str, str]]):
    """Per token kind: mean router weight per head over tasks, layers and projections (each task
    weighted equally), for each profile in ``folders`` ((folder, label) pairs)."""

    def build(ctx: DocContext) -> str:
        profiles = [_profile(ctx, f) for f, _ in folders]
        head = "| token kind | " + " | ".join(
            f"{label}: mean weight per head (tasks)" for _, label in folders
        )
        lines = [head + " |", "|---" * (len(folders) + 1) + "|"]
        kinds = list(
            dict.fromkeys(k for _, d in profiles for t in d.get("routing_by_kind", {}).values() for k in t)
        )
        for kind in kinds:
            cells = []
            for _, d in profiles:
                per_task = [
                    _head_means(t[kind])[0] for t in d.get("routing_by_kind", {}).values() if t.get(kind)
                ]
                if not per_task:
                    cells.append("-")
                    continue
                h = len(per_task[0])
                mean = [sum(m[k] for m in per_task) / len(per_task) for k in range(h)]
                cells.append(" / ".join(f"{x:.3f}" for x in mean) + f" ({len(per_task)})")
            lines.append(f"| {kind} | " + " | ".join(cells) + " |")
        srcs = ", ".join(f"`{ctx.rel(p)}`" for p, _ in profiles)
        return "\n".join(lines) + f"\n\nFrom {srcs} (`routing_by_kind`; means only, so no interval).\n"

    return build


__all__ = [
    "INTERVAL",
    "ablation_table",
    "agreement_table",
    "attribution_table",
    "hoeffding",
    "kind_table",
    "routing_table",
]
