"""Evaluation over an AV-UIE-style manifest, through the one inference pipeline.

Each row (docs/manifest.md) is run with :meth:`CrabPipeline.run`; the parsed answer and mask are
scored with the task's benchmark metrics, next to the majority / trivial baseline.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .errors import CrabError, MediaError, TaskError
from .eval_manifest import read_manifest, row_error
from .metrics import majority_baseline, metrics_for_task
from .tasks import TASKS

log = logging.getLogger(__name__)

__all__ = ["EvalReport", "evaluate", "read_manifest", "score_row"]

#: Ground-truth masks are compared at most at this side (a 60000-px PNG must not allocate 71 x 60000^2).
MAX_MASK_SIDE = 1024


@dataclass
class EvalReport:
    """Per-task metric values, baselines, scored-row counts and failed rows.

    ``errors`` holds one ``{"row", "id", "task", "error"}`` per row that could not be scored (``row``
    is the manifest line number, or ``None`` for rows that did not come from a manifest).
    """

    metrics: dict[str, dict[str, float]] = field(default_factory=dict)
    baselines: dict[str, dict[str, float]] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)
    errors: list[dict] = field(default_factory=list)
    records: list[dict] = field(default_factory=list)

    @property
    def scored(self) -> int:
        """Rows that were run and scored."""
        return sum(self.counts.values())

    def to_json(self) -> dict:
        return {
            "metrics": self.metrics,
            "baselines": self.baselines,
            "counts": self.counts,
            "scored": self.scored,
            "failed": len(self.errors),
            "errors": self.errors,
        }

    def table(self, max_errors: int = 20) -> str:
        lines = [f"{'task':<9} {'n':>5}  {'metric':<28} {'model':>8} {'baseline':>9}"]
        for task, vals in self.metrics.items():
            base = self.baselines.get(task, {})
            for name, v in vals.items():
                b = base.get(name)
                lines.append(
                    f"{task:<9} {self.counts.get(task, 0):>5}  {name:<28} {v:>8.4f} "
                    f"{'' if b is None else f'{b:9.4f}'}"
                )
        if self.errors:
            lines.append(f"{len(self.errors)} row(s) failed and are not in the metrics:")
            lines += [f"  {describe_error(e)}" for e in self.errors[:max_errors]]
            if len(self.errors) > max_errors:
                lines.append(f"  ... and {len(self.errors) - max_errors} more (--json lists them all)")
        return "\n".join(lines)


def describe_error(e: dict) -> str:
    """``row 3 (id 'x', ave): reason``."""
    where = f"row {e['row']}" if e.get("row") is not None else "row ?"
    extra = ", ".join(
        x for x in (f"id {e['id']!r}" if e.get("id") is not None else "", e.get("task") or "") if x
    )
    return f"{where}{f' ({extra})' if extra else ''}: {e['error']}"


def _gt_mask(task: str, gt: dict) -> np.ndarray:
    from .media.mask import load_binary_mask, load_index_mask, load_palette_mask

    path = gt["mask"]
    if task == "avss":
        loader = load_palette_mask if gt.get("mask_format") == "palette" else load_index_mask
        size = _png_size(path)
        return loader(path, size).numpy()[0]
    return load_binary_mask(path, _png_size(path)).numpy()[0]


def _png_size(path: str) -> int:
    """Side at which the GT mask is scored: its width, capped at :data:`MAX_MASK_SIDE`."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            width = int(im.size[0])
    except (OSError, ValueError, Image.DecompressionBombError) as exc:
        raise MediaError(f"could not read mask {Path(path).name}: {exc}") from exc
    return max(1, min(width, MAX_MASK_SIDE))


def _pred_mask(result, task: str, size: int) -> np.ndarray:
    """Mask logits resized to the GT size; no mask (no seg tokens) scores as an empty mask."""
    classes = 71 if task == "avss" else 1
    if result.mask_logits is None:
        out = np.full((classes, size, size), -20.0, np.float32)
        if task == "avss":
            out[0] = 20.0
        return out
    lg = torch.from_numpy(result.mask_logits)[None]
    return F.interpolate(lg, size=(size, size), mode="bilinear", align_corners=False)[0].numpy()


def score_row(accs: dict, task: str, row: dict, result, gt_mask: np.ndarray | None = None) -> None:
    """Update the task's accumulators with one result (``gt_mask``: the loaded GT mask, seg tasks)."""
    gt = row.get("gt") or {}
    if TASKS[task].needs_mask:
        gtm = _gt_mask(task, gt) if gt_mask is None else gt_mask
        logits = _pred_mask(result, task, gtm.shape[-1])
        if task == "avss":
            accs["avss_seg"].update(logits, gtm)
        elif task == "ref-avs" and gt.get("null"):
            accs["null_s"].update(logits[0])
        else:
            accs["binary_seg"].update(logits[0], gtm)
        return
    for acc in accs.values():
        acc.update(result.parsed, gt)


def evaluate(
    pipeline,
    rows: Sequence[dict],
    tasks: Iterable[str] | None = None,
    progress: bool = True,
    max_new_tokens: int | None = None,
    errors: Sequence[dict] = (),
) -> EvalReport:
    """Run and score every row (of the selected tasks); failures are recorded per row, not raised.

    Args:
        pipeline: a :class:`CrabPipeline`.
        rows: manifest rows (:func:`read_manifest`).
        tasks: evaluate only these tasks.
        progress: show a tqdm bar.
        max_new_tokens: cap on generation (default: each task's budget, 500 text / 100 AVS).
        errors: rows already refused while reading the manifest; they are reported with the others.

    Returns:
        the report; a task none of whose rows could be scored has no metrics (``counts`` 0).
    """
    from tqdm import tqdm

    wanted = set(tasks) if tasks else None
    rows = [r for r in rows if wanted is None or r["task"] in wanted]
    unknown = sorted({r["task"] for r in rows} - set(TASKS))
    if unknown:
        raise TaskError(f"unknown task(s) in manifest: {unknown}")
    report = EvalReport(
        errors=[e for e in errors if wanted is None or e.get("task") not in set(TASKS) - wanted]
    )
    accs: dict[str, dict] = {}
    gts: dict[str, list] = defaultdict(list)
    for row in tqdm(rows, disable=not progress, desc="eval", unit="sample"):
        task = row["task"]
        accs.setdefault(task, _accumulators(task))
        try:
            gt = _baseline_gt(task, row.get("gt") or {})  # loads a GT mask before the model runs
            res = pipeline.run(
                task,
                video=row.get("video"),
                audio=row.get("audio"),
                image=row.get("image"),
                question=row.get("question"),
                frame_index=row.get("frame_index"),
                max_new_tokens=max_new_tokens,
            )
            score_row(accs[task], task, row, res, gt.get("mask") if TASKS[task].needs_mask else None)
        except CrabError as exc:
            report.errors.append(row_error(row.get("_line"), row, str(exc)))
            continue
        except (KeyError, TypeError, ValueError, IndexError) as exc:  # a gt the row checks did not foresee
            log.debug("row %s could not be scored", row.get("_line"), exc_info=True)
            report.errors.append(
                row_error(row.get("_line"), row, f"cannot score the gt ({type(exc).__name__}: {exc})")
            )
            continue
        report.counts[task] = report.counts.get(task, 0) + 1
        report.records.append({"id": row.get("id"), "task": task, "text": res.text})
        gts[task].append(gt)
    report.errors.sort(key=lambda e: (e.get("row") is None, e.get("row") or 0))
    for task, task_accs in accs.items():
        if not report.counts.get(task):
            continue  # nothing scored: no metric (0.0 would read as a result)
        vals: dict[str, float] = {}
        for acc in task_accs.values():
            vals.update(acc.compute())
        report.metrics[task] = vals
        if task != "caption" and gts[task]:
            try:
                report.baselines[task] = majority_baseline(task, gts[task])
            except (TaskError, KeyError, ValueError) as exc:
                log.warning("no baseline for %s: %s", task, exc)
    return report


def _accumulators(task: str) -> dict:
    accs = metrics_for_task(task)
    for name in ("binary_seg", "null_s"):
        if name in accs:
            accs[name] = type(accs[name])(from_logits=True)
    return accs


def _baseline_gt(task: str, gt: dict):
    if TASKS[task].needs_mask:
        return {**gt, "mask": _gt_mask(task, gt)}
    return gt
