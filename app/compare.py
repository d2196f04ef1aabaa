"""Heads side by side: the normal answer and every single-head variant of one run, with how far
each variant is from the normal run and from the ground truth.

:func:`agreement` is pure (parsed answers, masks and ground-truth dicts in, one number out) and
:func:`compare_heads` drives the engine: ``only head h`` (every token routed to h) and ``without
head h`` (h removed, the others unchanged) for every head, decoded from the cached clip.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from crab_core.interpret.control import HeadControl
from crab_core.tasks import get_task

from . import render


@dataclass
class HeadRow:
    """One cell of the grid.

    Attributes:
        name: ``normal``, ``only h0``, ``without h1`` ... record: the variant's run record.
        vs_normal / vs_gt: ``(metric name, value)`` against the normal run / the ground truth, or
            None (no ground truth, or nothing to compare). nll: mean per-token NLL of the reference
            answer under this routing.
    """

    name: str
    record: object
    vs_normal: tuple[str, float] | None = None
    vs_gt: tuple[str, float] | None = None
    nll: float | None = None
    changed: bool = False
    extras: dict = field(default_factory=dict)


def _iou(a: set, b: set) -> float:
    return 1.0 if not a and not b else len(a & b) / len(a | b)


def _seconds(ranges) -> set[int]:
    out: set[int] = set()
    for r in ranges or []:
        if r is not None and len(r) == 2:
            out.update(range(int(r[0]), int(r[1])))
    return out


def _events(task: str, parsed=None, gt: dict | None = None) -> set[tuple]:
    """Event-seconds of an AVE / AVVP answer or ground truth: ``{(modality, event, second)}``."""
    if task == "ave":
        if gt is not None:
            return {("av", str(gt.get("event")), s) for s in _seconds([gt.get("range")])}
        return {("av", str(parsed.event), s) for s in _seconds([parsed.range])} if parsed.event else set()
    out = set()
    for mod in ("audio", "visual"):
        if gt is not None:
            items = [(ev["event"], ev["ranges"]) for ev in gt.get(mod, [])]
        else:
            items = list(getattr(parsed, mod, []) or [])
        for name, ranges in items:
            out |= {(mod, str(name), s) for s in _seconds(ranges)}
    return out


def box_iou(a, b) -> float:
    """IoU of two ``(x1, y1, x2, y2)`` boxes (0 when either is missing or empty)."""
    if a is None or b is None:
        return 0.0
    ax1, ay1, ax2, ay2 = (float(v) for v in a)
    bx1, by1, bx2, by2 = (float(v) for v in b)
    iw, ih = max(0.0, min(ax2, bx2) - max(ax1, bx1)), max(0.0, min(ay2, by2) - max(ay1, by1))
    inter = iw * ih
    union = max(ax2 - ax1, 0) * max(ay2 - ay1, 0) + max(bx2 - bx1, 0) * max(by2 - by1, 0) - inter
    return inter / union if union > 0 else 0.0


def _answer_text(parsed, text: str) -> str:
    return " ".join(str(getattr(parsed, "answer", None) or text or "").lower().split())


def agreement(task: str, result, other=None, gt: dict | None = None, gt_mask: np.ndarray | None = None):
    """How close ``result`` is to ``other`` (another run's result) or to the ground truth.

    Args:
        task: task name. result: a ``TaskResult``-like object (``parsed``, ``text``, ``mask``).
        other: the result to compare with, or None to compare with the ground truth ``gt``
            (the manifest / example ``gt`` dict) and ``gt_mask`` (seg tasks).

    Returns:
        ``(metric name, value in 0..1)``, or None when there is nothing to compare with.
        AVE / AVVP: IoU of the event-seconds; ARIG: box IoU; seg tasks: mask IoU (AVSS: mean IoU
        over classes); AVQA: 1 when the answers match; captioning: None against ground truth,
        else whether the text is the same.
    """
    spec = get_task(task)
    parsed = result.parsed
    if spec.needs_mask:
        ref = other.mask if other is not None else gt_mask
        if ref is None or result.mask is None:
            return None
        if task == "avss":
            return "mIoU", render.class_scores(result.mask, ref)["miou"]
        return "IoU", render.mask_scores(result.mask, ref)["iou"]
    if task in ("ave", "avvp"):
        if other is None and gt is None:
            return None
        theirs = _events(task, other.parsed) if other is not None else _events(task, gt=gt)
        ours = _events(task, parsed)
        return None if not ours and not theirs else ("IoU", _iou(ours, theirs))
    if task == "arig":
        ref = other.parsed.box if other is not None else (gt or {}).get("box")
        return None if ref is None else ("box IoU", box_iou(parsed.box, ref))
    if other is not None:
        return "same answer", float(
            _answer_text(parsed, result.text) == _answer_text(other.parsed, other.text)
        )
    if gt is not None and gt.get("answer") is not None:
        return "correct", float(
            _answer_text(parsed, result.text) == " ".join(str(gt["answer"]).lower().split())
        )
    return None


def head_controls(num_heads: int) -> list[tuple[str, HeadControl | None]]:
    """``normal``, ``only h0 .. only h{H-1}``, ``without h0 .. without h{H-1}``."""
    rows: list[tuple[str, HeadControl | None]] = [("normal", None)]
    rows += [(f"only h{h}", HeadControl.only(h)) for h in range(num_heads)]
    rows += [(f"without h{h}", HeadControl.without(h)) for h in range(num_heads)]
    return rows


def compare_heads(engine, record, reference: str | None = None, gt: dict | None = None) -> list[HeadRow]:
    """Run ``record``'s request under every single-head variant (the clip comes from the pipeline's
    cache) and compare each with the normal run and the ground truth.

    Args:
        engine: an :class:`app.engine.Engine`. record: the normal run.
        reference: the reference answer whose NLL is measured (default: the normal run's answer).
        gt: ground-truth dict (bundled examples); the seg ground truth is ``record.gt``.
    """
    task = record.result.task
    rows = []
    for name, ctl in head_controls(engine.num_heads):
        rec = record if ctl is None else engine.run(record.request, ctl, capture=False)
        row = HeadRow(name, rec, changed=rec.result.text != record.result.text)
        if ctl is not None:
            row.vs_normal = agreement(task, rec.result, record.result)
        row.vs_gt = agreement(task, rec.result, None, gt, record.gt)
        rows.append(row)
    controls = [c for _, c in head_controls(engine.num_heads)]
    for row, nll in zip(rows, engine.answer_nlls(record, reference, controls), strict=True):
        row.nll = nll
    return rows
