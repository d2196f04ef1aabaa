"""Segmentation metrics of the reference (AVSBench code paths, crab-reference 4.5-4.7).

Binary tasks (S4, MS3, Ref-AVS seen/unseen), per frame, averaged over all frames:

* ``miou``: prediction binarized at ``prob > 0.5``; IoU = |P and G| / |P or G| (+1e-7 in the
  denominator, as ``mask_iou``); for an empty GT frame the score is |not P and not G| / HW.
* ``fscore``: F-beta with beta^2 = 0.3 at 255 thresholds ``linspace(0, 1 - 1e-10, 255)`` on the
  probabilities (``pred >= t``), precision/recall with +1e-20 denominators, NaN -> 0, **max over
  thresholds per frame**; an empty-GT frame scores 0 but is still counted (reference convention).

Ref-AVS null split: ``s`` = sqrt(#{prob > 0.5} / HW) per frame, averaged (lower is better).

AVSS (71 classes incl. background 0), the ``_batch_miou_fscore`` accumulation: per frame and class,
IoU = inter / (union + 2.22e-16) and F-beta from precision = inter/pred, recall = inter/GT (NaN -> 0);
sums over frames divided by the number of frames where the class union > 0; classes never present
count 0 in the mean over all 71 classes (``miou``, ``fscore``). ``miou_present`` / ``fscore_present``
average only over classes present at least once (our addition, easier to read on small sets).
GT pixels outside ``[0, num_classes)`` are ignored.

Predictions are probabilities in [0, 1] (or booleans); pass ``from_logits=True`` for raw logits.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

BETA2 = 0.3
NUM_THRESHOLDS = 255
AVSS_CLASSES = 71
_IOU_EPS = 1e-7
_PR_EPS = 1e-20
_AVSS_EPS = 2.220446049250313e-16


def _frames(x: np.ndarray) -> np.ndarray:
    """(H, W) or (N, H, W) -> (N, H, W) float64."""
    arr = np.asarray(x, dtype=np.float64)
    if arr.ndim == 2:
        arr = arr[None]
    if arr.ndim != 3:
        raise ValueError(f"expected a (H, W) or (N, H, W) mask, got shape {arr.shape}")
    return arr


def _probs(pred, from_logits: bool) -> np.ndarray:
    p = _frames(pred)
    return 1.0 / (1.0 + np.exp(-p)) if from_logits else p


def mask_iou(pred, gt, from_logits: bool = False) -> np.ndarray:
    """Per-frame IoU of ``pred > 0.5`` against ``gt > 0``; empty GT -> |notP & notG| / HW.

    Args:
        pred: (H, W) or (N, H, W) probabilities (or logits with ``from_logits``).
        gt: same shape, binary.

    Returns:
        (N,) IoUs.
    """
    p, g = _probs(pred, from_logits) > 0.5, _frames(gt) > 0
    if p.shape != g.shape:
        raise ValueError(f"prediction {p.shape} and ground truth {g.shape} differ in shape")
    inter = (p & g).sum((1, 2)).astype(float)
    union = (p | g).sum((1, 2)).astype(float)
    empty = g.sum((1, 2)) == 0
    inter[empty] = (~p[empty] & ~g[empty]).sum((1, 2))
    union[empty] = g.shape[1] * g.shape[2]
    return inter / (union + _IOU_EPS)


def frame_fscore(
    pred, gt, from_logits: bool = False, num_thresholds: int = NUM_THRESHOLDS, beta2: float = BETA2
) -> np.ndarray:
    """Per-frame max-over-thresholds F-beta (0 for an empty GT frame). Returns (N,)."""
    p, g = _probs(pred, from_logits), _frames(gt) > 0
    if p.shape != g.shape:
        raise ValueError(f"prediction {p.shape} and ground truth {g.shape} differ in shape")
    th = np.linspace(0.0, 1.0 - 1e-10, num_thresholds)
    out = np.zeros(len(p))
    for i, (pi, gi) in enumerate(zip(p, g)):
        npos = gi.sum()
        if npos == 0:
            continue
        all_sorted, pos_sorted = np.sort(pi.ravel()), np.sort(pi[gi])
        npred = all_sorted.size - np.searchsorted(all_sorted, th, side="left")
        tp = pos_sorted.size - np.searchsorted(pos_sorted, th, side="left")
        prec, rec = tp / (npred + _PR_EPS), tp / (npos + _PR_EPS)
        with np.errstate(invalid="ignore", divide="ignore"):
            f = (1 + beta2) * prec * rec / (beta2 * prec + rec)
        out[i] = np.nan_to_num(f, nan=0.0).max()
    return out


def null_s(pred, from_logits: bool = False) -> np.ndarray:
    """Ref-AVS null metric per frame: sqrt(#{prob > 0.5} / HW). Returns (N,)."""
    p = _probs(pred, from_logits) > 0.5
    return np.sqrt(p.sum((1, 2)) / (p.shape[1] * p.shape[2]))


class BinarySegMetric:
    """Accumulator for S4 / MS3 / Ref-AVS (seen, unseen). ``compute() -> {"miou", "fscore"}``."""

    def __init__(self, from_logits: bool = False) -> None:
        self.from_logits = from_logits
        self.ious: list[float] = []
        self.fscores: list[float] = []

    def update(self, pred, gt) -> tuple[float, float]:
        """Add (H, W) or (N, H, W) frames; returns their mean (IoU, F)."""
        iou, f = mask_iou(pred, gt, self.from_logits), frame_fscore(pred, gt, self.from_logits)
        self.ious.extend(iou.tolist())
        self.fscores.extend(f.tolist())
        return float(iou.mean()), float(f.mean())

    def compute(self) -> dict[str, float]:
        if not self.ious:
            return {"miou": 0.0, "fscore": 0.0}
        return {"miou": float(np.mean(self.ious)), "fscore": float(np.mean(self.fscores))}


class NullSMetric:
    """Accumulator for the Ref-AVS null split. ``compute() -> {"s": mean S}`` (lower is better)."""

    def __init__(self, from_logits: bool = False) -> None:
        self.from_logits = from_logits
        self.values: list[float] = []

    def update(self, pred, gt=None) -> float:
        """Add (H, W) or (N, H, W) frames (``gt`` is ignored: it is empty by definition)."""
        s = null_s(pred, self.from_logits)
        self.values.extend(s.tolist())
        return float(s.mean())

    def compute(self) -> dict[str, float]:
        return {"s": float(np.mean(self.values)) if self.values else 0.0}


def avss_frame_stats(pred: np.ndarray, gt: np.ndarray, num_classes: int = AVSS_CLASSES):
    """Per-class IoU, F-beta and presence (union > 0) of one frame of class indices.

    Args:
        pred: (H, W) predicted class indices.
        gt: (H, W) GT class indices; pixels outside [0, num_classes) are ignored.

    Returns:
        ``(iou, fscore, present)``, each (num_classes,).
    """
    pred, gt = np.asarray(pred).ravel().astype(np.int64), np.asarray(gt).ravel().astype(np.int64)
    if pred.shape != gt.shape:
        raise ValueError(f"prediction {pred.shape} and ground truth {gt.shape} differ in shape")
    keep = (gt >= 0) & (gt < num_classes)
    pred, gt = np.clip(pred[keep], 0, num_classes - 1), gt[keep]
    area_pred = np.bincount(pred, minlength=num_classes).astype(float)
    area_lab = np.bincount(gt, minlength=num_classes).astype(float)
    area_inter = np.bincount(pred[pred == gt], minlength=num_classes).astype(float)
    union = area_pred + area_lab - area_inter
    iou = area_inter / (_AVSS_EPS + union)
    with np.errstate(invalid="ignore", divide="ignore"):
        prec, rec = area_inter / area_pred, area_inter / area_lab
        f = (1 + BETA2) * prec * rec / (BETA2 * prec + rec)
    return iou, np.nan_to_num(f, nan=0.0), union > 0


class AVSSMetric:
    """Accumulator for AVSS class-mean mIoU / F. ``compute()`` keys: ``miou``, ``fscore``,
    ``miou_present``, ``fscore_present``."""

    def __init__(self, num_classes: int = AVSS_CLASSES) -> None:
        self.num_classes = num_classes
        self.iou_sum = np.zeros(num_classes)
        self.f_sum = np.zeros(num_classes)
        self.count = np.zeros(num_classes)

    def update(self, pred, gt) -> None:
        """Add frames. ``pred``: integer (H, W)/(N, H, W) class maps, or float (C, H, W)/(N, C, H, W)
        scores (argmax over C). ``gt``: (H, W)/(N, H, W) class indices."""
        pred = np.asarray(pred)
        if not np.issubdtype(pred.dtype, np.integer):
            if pred.ndim not in (3, 4):
                raise ValueError(f"float predictions must be (C, H, W) or (N, C, H, W), got {pred.shape}")
            pred = pred.argmax(axis=-3)
        gt = np.asarray(gt)
        pred, gt = (pred[None], gt[None]) if gt.ndim == 2 else (pred, gt)
        for p, g in zip(pred, gt, strict=True):
            iou, f, present = avss_frame_stats(p, g, self.num_classes)
            self.iou_sum += iou
            self.f_sum += f
            self.count += present

    def compute(self) -> dict[str, float]:
        with np.errstate(invalid="ignore", divide="ignore"):
            miou_pc = np.nan_to_num(self.iou_sum / self.count, nan=0.0)
            f_pc = np.nan_to_num(self.f_sum / self.count, nan=0.0)
        present = self.count > 0
        return {
            "miou": float(miou_pc.mean()),
            "fscore": float(f_pc.mean()),
            "miou_present": float(miou_pc[present].mean()) if present.any() else 0.0,
            "fscore_present": float(f_pc[present].mean()) if present.any() else 0.0,
        }


def binary_seg_majority_baseline(
    masks: Sequence[np.ndarray], null_masks: Sequence[np.ndarray | None] = ()
) -> dict[str, float]:
    """Better (by mIoU on ``masks``) of predicting an empty mask or a full-frame mask for every frame.

    Args:
        masks: GT masks of the rows scored by ``binary_seg`` (not the Ref-AVS null rows).
        null_masks: GT masks (or None) of the Ref-AVS null rows; when there are any, the result also
            has ``s``: the null S of the same constant prediction on them (0 for empty, 1 for full).
            With null rows only, the empty mask is the baseline (``{"s": 0.0}``).
    """
    best: dict[str, float] = {}
    best_fill = 0.0
    for fill in (0.0, 1.0) if len(masks) else ():
        metric = BinarySegMetric()
        for m in masks:
            m = np.asarray(m)
            metric.update(np.full(m.shape, fill), m)
        res = metric.compute()
        if not best or res["miou"] > best["miou"]:
            best, best_fill = res, fill
    if len(null_masks):
        null = NullSMetric()
        for m in null_masks:
            null.update(np.full(np.shape(m) if m is not None and np.ndim(m) == 2 else (1, 1), best_fill))
        best = {**best, **null.compute()}
    return best


def avss_majority_baseline(masks: Sequence[np.ndarray], num_classes: int = AVSS_CLASSES) -> dict[str, float]:
    """Better (by mIoU) of all-background or a full frame of the foreground class present in the
    most frames."""
    frames_with = np.zeros(num_classes)
    for m in masks:
        idx = np.unique(np.asarray(m))
        frames_with[idx[(idx > 0) & (idx < num_classes)]] += 1
    fills = [0] + ([int(frames_with.argmax())] if frames_with.any() else [])
    best: dict[str, float] = {}
    for fill in fills:
        metric = AVSSMetric(num_classes)
        for m in masks:
            metric.update(np.full(np.asarray(m).shape, fill, dtype=np.int64), m)
        res = metric.compute()
        if not best or res["miou"] > best["miou"]:
            best = res
    return best
