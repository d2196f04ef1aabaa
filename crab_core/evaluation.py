"""Evaluation over an AV-UIE-style manifest, through the one inference pipeline.

Each row (docs/manifest.md) is run with :meth:`CrabPipeline.run`; the parsed answer and mask are
scored through the one scoring path (:func:`crab_core.metrics.scoring.load_gt` +
:func:`~crab_core.metrics.scoring.score`), next to the majority / trivial baseline
(:func:`crab_core.metrics.majority_baseline`: Ref-AVS null rows count only in its null S).
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np

from .errors import CrabError, TaskError
from .eval_manifest import read_manifest, row_error
from .metrics import majority_baseline
from .metrics.scoring import MAX_MASK_SIDE, accumulators, avss_classes, has_data, load_gt, mask_side, score
from .metrics.segmentation import AVSS_CLASSES
from .tasks import TASKS

log = logging.getLogger(__name__)

__all__ = ["MAX_MASK_SIDE", "EvalReport", "evaluate", "read_manifest", "score_row"]


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


def _png_size(path: str) -> int:
    """Side at which the GT mask is scored (:func:`crab_core.metrics.scoring.mask_side`)."""
    return mask_side(path)


def score_row(
    accs: dict,
    task: str,
    row: dict,
    result,
    gt_mask: np.ndarray | None = None,
    num_classes: int = AVSS_CLASSES,
) -> None:
    """Update the task's accumulators (:func:`crab_core.metrics.scoring.accumulators`) with one result.

    ``gt_mask``: the GT mask already loaded (seg tasks; loaded from ``row["gt"]`` when None).
    """
    gt = dict(row.get("gt") or {})
    if gt_mask is not None:
        gt["mask"] = gt_mask
    score(task, result, load_gt(task, gt, num_classes=num_classes), accs)


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
    classes = avss_classes(pipeline)
    accs: dict[str, dict] = {}
    gts: dict[str, list] = defaultdict(list)
    for row in tqdm(rows, disable=not progress, desc="eval", unit="sample"):
        task = row["task"]
        accs.setdefault(task, accumulators(task, classes))
        try:
            gt = load_gt(task, row.get("gt") or {}, num_classes=classes)  # before the model runs
            res = pipeline.run(
                task,
                video=row.get("video"),
                audio=row.get("audio"),
                image=row.get("image"),
                question=row.get("question"),
                frame_index=row.get("frame_index"),
                max_new_tokens=max_new_tokens,
            )
            score(task, res, gt, accs[task])
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
            if has_data(acc):  # e.g. Ref-AVS without null rows has no null S
                vals.update(acc.compute())
        report.metrics[task] = vals
        if task != "caption" and gts[task]:
            try:
                report.baselines[task] = majority_baseline(task, gts[task], classes)
            except (TaskError, KeyError, ValueError) as exc:
                log.warning("no baseline for %s: %s", task, exc)
    return report
