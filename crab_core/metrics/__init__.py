"""Exact benchmark metrics of the Crab tasks (numpy), with accumulators and majority baselines.

Every accumulator has ``update(pred, gt)`` (one sample, or a batch of frames for masks) and
``compute() -> dict[str, float]`` with fractions in [0, 1]. Text tasks accept the generated text, a
parsed prediction, or plain structures; ``gt`` is the manifest ``gt`` object (docs/manifest.md),
with seg masks already loaded as arrays.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from crab_core.errors import TaskError
from crab_core.metrics.avvp import AVVPMetric, avvp_majority_baseline, event_level_f1, segment_level_f1
from crab_core.metrics.classification import (
    AVEAccuracy,
    AVQAAccuracy,
    ave_majority_baseline,
    ave_segment_accuracy,
    avqa_accuracy,
    avqa_majority_baseline,
)
from crab_core.metrics.grounding import ARIGMetric, arig_majority_baseline, box_iou, grounding_summary
from crab_core.metrics.scoring import TaskScorer, load_gt, score
from crab_core.metrics.segmentation import (
    AVSS_CLASSES,
    AVSSMetric,
    BinarySegMetric,
    NullSMetric,
    avss_frame_stats,
    avss_majority_baseline,
    binary_seg_majority_baseline,
    frame_fscore,
    mask_iou,
    null_s,
)
from crab_core.tasks.registry import get_task

#: Metric accumulators by the names used in ``TaskSpec.metrics``.
METRICS: dict[str, type] = {
    "ave_accuracy": AVEAccuracy,
    "avvp": AVVPMetric,
    "avqa_accuracy": AVQAAccuracy,
    "arig": ARIGMetric,
    "binary_seg": BinarySegMetric,
    "avss_seg": AVSSMetric,
    "null_s": NullSMetric,
}


def make_metric(name: str, **kwargs):
    """Instantiate the accumulator ``name`` (a key of :data:`METRICS`).

    Raises:
        TaskError: unknown metric name.
    """
    if name not in METRICS:
        raise TaskError(f"unknown metric {name!r}; known: {sorted(METRICS)}")
    return METRICS[name](**kwargs)


def metrics_for_task(task: str) -> dict[str, object]:
    """Fresh accumulators for every metric of ``task`` (empty for captioning), with default arguments
    (probabilities for masks, 71 AVSS classes); :func:`crab_core.metrics.scoring.accumulators` gives the
    ones the scoring path feeds."""
    return {name: make_metric(name) for name in get_task(task).metrics}


def _masks(gts: Sequence) -> list[np.ndarray]:
    out = []
    for g in gts:
        m = g["mask"] if isinstance(g, Mapping) else g
        if isinstance(m, str):
            raise TaskError("majority_baseline needs loaded mask arrays, not paths")
        out.append(np.asarray(m))
    return out


def majority_baseline(task: str, gts: Sequence, num_classes: int = AVSS_CLASSES) -> dict[str, float]:
    """Metric values of always predicting the most frequent answer.

    * ``ave``: most common class with the most common range;
    * ``avqa``: the majority answer of each question type;
    * ``avvp``: the better of predicting nothing and the most frequent audio / visual class over
      the whole clip;
    * ``arig``: the mean GT box;
    * ``s4``/``ms3``/``ref-avs``: the better of an empty and a full-frame mask (by mIoU on the rows
      with an object; Ref-AVS null rows, ``gt["null"]``, are left out of the mIoU and give ``s``, the
      null S of that same mask);
      ``avss``: the better of all-background and a full frame of the most frequent class.

    Args:
        task: task name.
        gts: manifest ``gt`` objects; for seg tasks dicts whose ``mask`` is an array, or arrays.
        num_classes: AVSS classes (the model's ``config.seg.num_avss_classes``).

    Raises:
        TaskError: unknown task, or a task without a metric (``caption``).
    """
    name = get_task(task).name
    if name == "ave":
        return ave_majority_baseline(gts)
    if name == "avqa":
        return avqa_majority_baseline(gts)
    if name == "avvp":
        return avvp_majority_baseline(gts)
    if name == "arig":
        return arig_majority_baseline(gts)
    kind = get_task(task).mask_kind
    if kind == "binary":
        null = [g for g in gts if isinstance(g, Mapping) and g.get("null")]
        rows = [g for g in gts if not (isinstance(g, Mapping) and g.get("null"))]
        null_masks = [None if isinstance(g.get("mask"), (str, type(None))) else g["mask"] for g in null]
        return binary_seg_majority_baseline(_masks(rows), null_masks)
    if kind == "classes":
        return avss_majority_baseline(_masks(gts), num_classes)
    raise TaskError(f"task {name!r} has no metric, so no majority baseline")


__all__ = [
    "ARIGMetric",
    "AVEAccuracy",
    "AVQAAccuracy",
    "AVSSMetric",
    "AVVPMetric",
    "BinarySegMetric",
    "TaskScorer",
    "METRICS",
    "NullSMetric",
    "arig_majority_baseline",
    "ave_majority_baseline",
    "ave_segment_accuracy",
    "avqa_accuracy",
    "avqa_majority_baseline",
    "avss_frame_stats",
    "avss_majority_baseline",
    "avvp_majority_baseline",
    "binary_seg_majority_baseline",
    "box_iou",
    "event_level_f1",
    "frame_fscore",
    "grounding_summary",
    "load_gt",
    "majority_baseline",
    "make_metric",
    "mask_iou",
    "metrics_for_task",
    "null_s",
    "score",
    "segment_level_f1",
]
