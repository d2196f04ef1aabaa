"""Turn a run record into the values of the result and inspection panels (pure; no Gradio, no model).

A "record" is anything with the fields of :class:`app.engine.RunRecord` (``request.task``,
``result`` = a ``TaskResult``-like object, ``trace``, ``target``, ``gt``, ``control``, ``extras``,
``seconds``); tests use small fakes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
import plotly.graph_objects as go

from crab_core.tasks import seg_tasks

from . import render, views

SEG_TASKS = seg_tasks()
CLASS_TASKS = seg_tasks("classes")


@dataclass
class ResultView:
    """Values of the result panel (``show_*``: whether that panel has anything to show)."""

    answer: list[tuple[str, str | None]]
    summary: str
    timeline: go.Figure
    image: np.ndarray | None
    legend: str
    show_timeline: bool = False
    show_image: bool = False


def _gt_dict(record) -> dict | None:
    extras = getattr(record, "extras", {}) or {}
    return extras.get("gt_json")


def _escape(text: str) -> str:
    """Keep ``<event>``-style tags visible in markdown (they would be dropped as HTML)."""
    return str(text).replace("<", "&lt;").replace(">", "&gt;")


def ood_notice(result) -> str:
    """The library's out-of-domain notice of a result (``TaskResult.out_of_domain``) as one warning
    line, then its notes on how the input was read (``TaskResult.notes``); "" when it has neither."""
    flag = getattr(result, "out_of_domain", None)
    lines = []
    if isinstance(flag, str) and flag.strip():
        text = re.sub(r"^\s*out[ -]of[ -]domain\s*[:.-]\s*", "", flag.strip(), flags=re.IGNORECASE)
        lines.append("⚠️ **Out of domain:** " + _escape(text))
    elif flag:
        lines.append(
            "⚠️ **Out of domain:** this input is not a SynthAV clip, the only kind of scene this model "
            "knows: the answer is not meaningful."
        )
    notes = getattr(result, "notes", None)
    notes = [notes] if isinstance(notes, str) else list(notes or [])
    lines += [f"_Note: {_escape(n)}_" for n in dict.fromkeys(str(n) for n in notes)]
    return "  \n".join(lines)


def _truth_lines(record, gt: dict | None) -> list[str]:
    """Metric against the ground truth and the expected answer, when known."""
    from .compare import agreement

    res = record.result
    out = []
    if res.task not in SEG_TASKS:
        metric = agreement(res.task, res, None, gt, getattr(record, "gt", None))
        if metric is not None:
            extra = ""
            if res.task == "ave" and gt is not None:
                hit = str(res.parsed.event or "").strip().lower() == str(gt.get("event", "")).strip().lower()
                extra = f", event {'correct' if hit else 'wrong'}"
            out.append(f"Against the ground truth: **{metric[0]}** {metric[1]:.2f}{extra}")
    expected = (getattr(record, "extras", {}) or {}).get("expected")
    if expected:
        out.append(f"_Expected answer (bundled example):_ {_escape(expected)}")
    return out


def result_view(record, class_names: list[str] | None = None) -> ResultView:
    """Render the answer text, the parsed summary, the out-of-domain notice, the ground truth of a
    bundled example, and the task's drawing."""
    res = record.result
    task = res.task
    summary = _escape(render.answer_summary(task, res.parsed))
    timeline = render.empty_figure("")
    image, legend = None, ""
    gt = _gt_dict(record)
    if task == "ave":
        timeline = render.ave_timeline(res.parsed, gt)
    elif task == "avvp":
        timeline = render.avvp_timeline(res.parsed, gt)
    elif task == "arig" and record.target is not None:
        gt_box = gt.get("box") if gt else None
        image = render.draw_box(record.target, res.parsed.box, gt_box, res.parsed.object)
        legend = render.overlay_legend("arig", gt_box is not None)
    elif task in SEG_TASKS and record.target is not None:
        image, legend, scores = _seg_image(task, res.mask, record.target, record.gt, class_names)
        summary = "  \n".join(x for x in (summary, render.scores_markdown(scores)) if x)
        if (getattr(record, "extras", {}) or {}).get("forced_mask"):
            summary += (
                "  \n_The answer had no seg tokens: this mask was decoded from seg tokens appended "
                "to the answer._"
            )
    lines = [ood_notice(res), summary, *_truth_lines(record, gt)]
    return ResultView(
        render.highlight_answer(res.text),
        "  \n".join(x for x in lines if x),
        timeline,
        image,
        legend,
        show_timeline=task in ("ave", "avvp"),
        show_image=image is not None,
    )


def _seg_image(task, mask, target, gt, class_names):
    if mask is None:
        return np.asarray(target), "_No mask was decoded._", None
    if task in CLASS_TASKS:
        image, legend = render.class_overlay(target, mask, class_names)
        return image, render.legend_markdown(legend), render.class_scores(mask, gt)
    return (
        render.mask_overlay(target, mask, gt),
        render.overlay_legend(task, gt is not None),
        render.mask_scores(mask, gt),
    )


def status_line(record, trained: bool) -> str:
    """One line: timings, cache use, and the model caveat."""
    t = record.result.timings
    parts = [
        f"answered in {record.seconds:.2f} s",
        "clip features from cache" if record.result.cached else f"encode {t.get('encode', 0):.2f} s",
        f"generate {t.get('generate', 0):.2f} s",
    ]
    if record.control is not None:
        parts.append(record.control.describe())
    line = " · ".join(parts)
    if not trained:
        line += "  \n**Random weights: the answers are noise** (no trained crab-tiny found)."
    return line


def inspection_figures(
    trace,
    layer=views.ALL,
    projection=views.ALL,
    values: str = "weights",
    group: str = "unit",
    kind: str = views.ALL,
) -> tuple[go.Figure, go.Figure, go.Figure]:
    """Router heatmap, layer x head summary and per-head contributions of one trace."""
    if trace is None:
        empty = render.empty_figure()
        return empty, empty, empty
    return (
        views.router_heatmap(trace, layer, projection, values, group),
        views.layer_head_summary(trace, kind, values),
        views.head_contributions(trace, layer, projection),
    )


def attention_outputs(
    summary, frames: np.ndarray | None, spectrogram: np.ndarray | None, seconds: float | None
) -> tuple[np.ndarray | None, go.Figure, go.Figure, str]:
    """Frame strip, audio figure, interaction map and a one-line note from an ``AttentionSummary``."""
    strip = None
    if frames is not None and len(summary.frames):
        strip = views.frame_attention_strip(frames[: len(summary.frames)], summary.frames)
    if spectrogram is not None and len(summary.seconds):
        audio = views.audio_attention(spectrogram, summary.seconds, seconds)
    else:
        audio = render.empty_figure("This prompt has no audio tokens.")
    if summary.interaction.size and summary.interaction.any():
        inter = views.interaction_map(summary.interaction)
    else:
        inter = render.empty_figure(
            "No audio → video attention (the prompt lacks one of them, or audio comes first)."
        )
    names = {"answer": "the answer's own earlier tokens", "text": "prompt text"}
    shares = ", ".join(f"{names.get(k, k + ' tokens')} {v:.1%}" for k, v in summary.by_kind.items())
    total = sum(summary.by_kind.values())
    rest = (
        "" if abs(total - 1.0) < 0.005 else f"; the other {1 - total:.1%} goes to tokens outside the prompt"
    )
    note = (
        f"Attention from the {summary.query} tokens (mean over layers and heads), shares of where it goes: "
        f"{shares} (total {total:.0%}{rest})."
    )
    return strip, audio, inter, note
