"""ARIG box metrics: cIoU, AUC and mean IoU (sound-source-localization convention).

The reference has no ARIG evaluation (``utils/ciou.py`` is Complete-IoU, a different thing; see
crab-reference 4.4 / 8.24). We follow the sound-source-localization protocol (LVS, Chen et al. 2021):

* ``ciou``: share of samples whose predicted box has IoU >= 0.5 with the GT box;
* ``auc``: area under the success curve ``s(t) = share of samples with IoU >= t`` for the 21
  thresholds ``t = np.linspace(0, 1, 21)`` (0, 0.05, ..., 1), integrated with the trapezoid rule
  (``sklearn.metrics.auc`` in the LVS code);
* ``miou``: mean box IoU.

Boxes are ``(x1, y1, x2, y2)`` in continuous pixel coordinates (area = (x2-x1)*(y2-y1)); a missing
or unparsable prediction has IoU 0. ``object_accuracy`` (exact class match, normalized) is reported
when the GT names the object.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence

import numpy as np

from crab_core.tasks.parsers import ARIGPrediction, normalize_label, parse_arig

AUC_THRESHOLDS = np.linspace(0.0, 1.0, 21)
CIOU_THRESHOLD = 0.5


def box_iou(a: Sequence[float] | None, b: Sequence[float] | None) -> float:
    """IoU of two ``(x1, y1, x2, y2)`` boxes; 0.0 when either is ``None`` or the union is empty."""
    if a is None or b is None:
        return 0.0
    ax1, ay1, ax2, ay2 = (float(v) for v in a)
    bx1, by1, bx2, by2 = (float(v) for v in b)
    iw = max(0.0, min(ax2, bx2) - max(ax1, bx1))
    ih = max(0.0, min(ay2, by2) - max(ay1, by1))
    inter = iw * ih
    union = max(0.0, ax2 - ax1) * max(0.0, ay2 - ay1) + max(0.0, bx2 - bx1) * max(0.0, by2 - by1) - inter
    return inter / union if union > 0 else 0.0


def grounding_summary(ious: Sequence[float]) -> dict[str, float]:
    """``{"ciou", "auc", "miou"}`` from per-sample IoUs (all 0.0 when empty)."""
    arr = np.asarray(ious, dtype=float)
    if arr.size == 0:
        return {"ciou": 0.0, "auc": 0.0, "miou": 0.0}
    success = np.array([(arr >= t).mean() for t in AUC_THRESHOLDS])
    auc = float(np.sum((success[1:] + success[:-1]) / 2 * np.diff(AUC_THRESHOLDS)))
    return {"ciou": float((arr >= CIOU_THRESHOLD).mean()), "auc": auc, "miou": float(arr.mean())}


class ARIGMetric:
    """Accumulator for ARIG. ``compute()`` keys: ``ciou``, ``auc``, ``miou`` (+ ``object_accuracy``)."""

    def __init__(self, image_size: float | None = 224.0) -> None:
        self.image_size = image_size
        self.ious: list[float] = []
        self.object_hits: list[bool] = []

    def update(self, pred: ARIGPrediction | str | Sequence[float] | None, gt: Mapping) -> float:
        """Add one sample; returns its IoU.

        Args:
            pred: answer text, an :class:`ARIGPrediction`, a box, or ``None``.
            gt: manifest ``gt`` of ``arig``: ``{"object": ..., "box": [x1, y1, x2, y2]}``.
        """
        if isinstance(pred, str):
            pred = parse_arig(pred, self.image_size)
        obj = None
        if isinstance(pred, ARIGPrediction):
            obj, box = pred.object, pred.box
        else:
            box = pred
        iou = box_iou(box, gt["box"])
        self.ious.append(iou)
        if gt.get("object") is not None:
            self.object_hits.append(
                obj is not None and normalize_label(obj) == normalize_label(str(gt["object"]))
            )
        return iou

    def compute(self) -> dict[str, float]:
        out = grounding_summary(self.ious)
        if self.object_hits:
            out["object_accuracy"] = float(np.mean(self.object_hits))
        return out


def arig_majority_baseline(gts: Sequence[Mapping]) -> dict[str, float]:
    """Metrics of always predicting the mean GT box (and the most common object)."""
    boxes = np.asarray([g["box"] for g in gts], dtype=float).reshape(-1, 4)
    mean_box = tuple(boxes.mean(0)) if len(boxes) else None
    objects = [normalize_label(str(g["object"])) for g in gts if g.get("object") is not None]
    top = Counter(objects).most_common(1)[0][0] if objects else None
    metric = ARIGMetric()
    for g in gts:
        metric.update(ARIGPrediction(top, mean_box), g)
    return metric.compute()
