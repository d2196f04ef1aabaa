"""Evaluation over an AV-UIE-style manifest, through the one inference pipeline.

Each row (docs/manifest.md) is run with :meth:`CrabPipeline.run`; the parsed answer and mask are
scored with the task's benchmark metrics, next to the majority / trivial baseline.
"""

from __future__ import annotations

import json
import logging
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .errors import CrabError, TaskError
from .metrics import majority_baseline, metrics_for_task
from .tasks import TASKS

log = logging.getLogger(__name__)

MAX_MANIFEST_BYTES = 512 * 1024**2


@dataclass
class EvalReport:
    """Per-task metric values, baselines, sample counts and failures."""

    metrics: dict[str, dict[str, float]] = field(default_factory=dict)
    baselines: dict[str, dict[str, float]] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)
    errors: list[dict] = field(default_factory=list)
    records: list[dict] = field(default_factory=list)

    def to_json(self) -> dict:
        return {"metrics": self.metrics, "baselines": self.baselines, "counts": self.counts,
                "errors": self.errors}

    def table(self) -> str:
        lines = [f"{'task':<9} {'n':>5}  {'metric':<28} {'model':>8} {'baseline':>9}"]
        for task, vals in self.metrics.items():
            base = self.baselines.get(task, {})
            for name, v in vals.items():
                b = base.get(name)
                lines.append(f"{task:<9} {self.counts.get(task, 0):>5}  {name:<28} {v:>8.4f} "
                             f"{'' if b is None else f'{b:9.4f}'}")
        if self.errors:
            lines.append(f"{len(self.errors)} sample(s) failed, e.g. {self.errors[0]}")
        return "\n".join(lines)


def read_manifest(path: str | Path) -> list[dict]:
    """Read a JSONL manifest; media paths are resolved against its folder.

    Raises:
        TaskError: missing / huge / non-UTF-8 file, bad JSON or rows without ``task``.
    """
    p = Path(path)
    if not p.is_file():
        raise TaskError(f"{p}: manifest not found")
    if p.stat().st_size > MAX_MANIFEST_BYTES:
        raise TaskError(f"{p}: manifest larger than {MAX_MANIFEST_BYTES // 1024**2} MiB")
    try:
        text = p.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise TaskError(f"{p}: manifest is not UTF-8 ({exc.reason} at byte {exc.start})") from exc
    rows = []
    for i, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise TaskError(f"{p}:{i}: invalid JSON ({exc.msg})") from exc
        if not isinstance(row, dict) or "task" not in row:
            raise TaskError(f"{p}:{i}: a row must be an object with a 'task' field")
        for key in ("video", "audio", "image"):
            if row.get(key):
                row[key] = str((p.parent / row[key]).resolve()) if not Path(row[key]).is_absolute() else row[key]
        gt = row.get("gt") or {}
        if isinstance(gt.get("mask"), str) and not Path(gt["mask"]).is_absolute():
            gt["mask"] = str((p.parent / gt["mask"]).resolve())
        rows.append(row)
    return rows


def _gt_mask(task: str, gt: dict) -> np.ndarray:
    from .media.mask import load_binary_mask, load_index_mask, load_palette_mask

    path = gt["mask"]
    if task == "avss":
        loader = load_palette_mask if gt.get("mask_format") == "palette" else load_index_mask
        size = _png_size(path)
        return loader(path, size).numpy()[0]
    return load_binary_mask(path, _png_size(path)).numpy()[0]


def _png_size(path: str) -> int:
    from PIL import Image

    with Image.open(path) as im:
        return int(im.size[0])


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


def score_row(accs: dict, task: str, row: dict, result) -> None:
    """Update the task's accumulators with one result."""
    gt = row.get("gt") or {}
    if TASKS[task].needs_mask:
        gtm = _gt_mask(task, gt)
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


def evaluate(pipeline, rows: Sequence[dict], tasks: Iterable[str] | None = None, progress: bool = True,
             max_new_tokens: int | None = None) -> EvalReport:
    """Run and score every row (of the selected tasks); failures are recorded, not raised.

    ``max_new_tokens`` caps generation (default: each task's budget, 500 text / 100 AVS).
    """
    from tqdm import tqdm

    wanted = set(tasks) if tasks else None
    rows = [r for r in rows if wanted is None or r["task"] in wanted]
    unknown = sorted({r["task"] for r in rows} - set(TASKS))
    if unknown:
        raise TaskError(f"unknown task(s) in manifest: {unknown}")
    report = EvalReport()
    accs: dict[str, dict] = {}
    gts: dict[str, list] = defaultdict(list)
    for row in tqdm(rows, disable=not progress, desc="eval", unit="sample"):
        task = row["task"]
        if task not in accs:
            accs[task] = _accumulators(task)
        try:
            res = pipeline.run(task, video=row.get("video"), audio=row.get("audio"), image=row.get("image"),
                               question=row.get("question"), frame_index=row.get("frame_index"),
                               max_new_tokens=max_new_tokens)
            score_row(accs[task], task, row, res)
        except CrabError as exc:
            report.errors.append({"id": row.get("id"), "task": task, "error": str(exc)})
            continue
        report.counts[task] = report.counts.get(task, 0) + 1
        report.records.append({"id": row.get("id"), "task": task, "text": res.text})
        gts[task].append(_baseline_gt(task, row.get("gt") or {}))
    for task, task_accs in accs.items():
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
