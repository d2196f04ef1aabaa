"""AVVP (LLP) segment-level and event-level F1, the standard HAN/LLP definitions.

Per video, predictions and GT become binary (classes, seconds) matrices for audio (a) and visual (v);
``av = a * v`` for both. For each of a, v, av and the pooled a+v ("event"), TP/FP/FN are counted per
class; the video's F1 is the mean of ``2TP / (2TP + FP + FN)`` over the classes that have a GT or a
predicted positive, and 1.0 when no class has either (all true negatives).

* segment level: TP/FP/FN count seconds;
* event level: events are the maximal runs of 1s in a class row; a predicted event is a TP when some
  GT event of the class has IoU >= 0.5 with it (else FP); a GT event with no such prediction is an FN
  (the HAN ``event_wise_metric``, with no one-to-one matching).

Dataset values are means over videos: Audio, Visual, Audio-Visual, ``Type@AV`` = mean of those three
means, ``Event@AV`` = mean of the pooled F. Fractions in [0, 1] (the papers print x100). The class set
of a video is the union of its predicted and GT class names (normalized); classes absent from both
do not change any F1, so this equals the fixed 25-class matrices of the reference.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence

import numpy as np

from crab_core.tasks.parsers import AVVPPrediction, normalize_label, parse_avvp

NUM_SEGMENTS = 10
_KINDS = ("audio", "visual", "audio_visual", "event")


def gt_events(gt: Mapping, modality: str) -> list[tuple[str, list[tuple[int, int]]]]:
    """Manifest ``gt`` (``{"audio": [{"event", "ranges"}], "visual": [...]}``) -> [(class, ranges)]."""
    return [(ev["event"], [tuple(r) for r in ev.get("ranges", [])]) for ev in gt.get(modality, [])]


def events_to_matrix(
    events: Iterable, classes: Sequence[str], num_segments: int = NUM_SEGMENTS
) -> np.ndarray:
    """[(class, [(s, e), ...])] -> binary (len(classes), num_segments) matrix; ranges are [s, e)."""
    index = {c: i for i, c in enumerate(classes)}
    mat = np.zeros((len(classes), num_segments), dtype=np.int64)
    for name, ranges in events:
        row = index[normalize_label(name)]
        for s, e in ranges:
            s, e = max(int(s), 0), min(int(e), num_segments)
            if e > s:
                mat[row, s:e] = 1
    return mat


def avvp_matrices(
    pred: AVVPPrediction, gt: Mapping, num_segments: int = NUM_SEGMENTS
) -> tuple[list[str], np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Return ``classes, SO_a, SO_v, GT_a, GT_v``, each matrix (C, num_segments) of 0/1."""
    ga, gv = gt_events(gt, "audio"), gt_events(gt, "visual")
    names = [n for n, _ in (*pred.audio, *pred.visual, *ga, *gv)]
    classes = sorted({normalize_label(n) for n in names})
    mats = [events_to_matrix(ev, classes, num_segments) for ev in (pred.audio, pred.visual, ga, gv)]
    return (classes, *mats)


def class_mean_f1(tp: np.ndarray, fp: np.ndarray, fn: np.ndarray) -> float:
    """Mean over classes with TP+FP > 0 or TP+FN > 0 of 2TP/(2TP+FP+FN); 1.0 when there is none."""
    tp, fp, fn = (np.asarray(x, dtype=float) for x in (tp, fp, fn))
    active = (tp + fp > 0) | (tp + fn > 0)
    if not active.any():
        return 1.0
    return float(np.mean(2 * tp[active] / (2 * tp[active] + fp[active] + fn[active])))


def _segment_counts(pred: np.ndarray, gt: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return (pred * gt).sum(1), (pred * (1 - gt)).sum(1), ((1 - pred) * gt).sum(1)


def extract_events(seq: Sequence[int]) -> list[tuple[int, int]]:
    """Maximal runs of 1s as [start, end) pairs: ``[0,1,1,0,1]`` -> ``[(1, 3), (4, 5)]``."""
    runs, start = [], None
    for i, v in enumerate(list(seq) + [0]):
        if v and start is None:
            start = i
        elif not v and start is not None:
            runs.append((start, i))
            start = None
    return runs


def _iou_ok(a: tuple[int, int], b: tuple[int, int]) -> bool:
    inter = max(0, min(a[1], b[1]) - max(a[0], b[0]))
    union = (a[1] - a[0]) + (b[1] - b[0]) - inter
    return inter >= 0.5 * union


def event_counts(
    pred_events: Sequence[tuple[int, int]], gt_events_: Sequence[tuple[int, int]]
) -> tuple[int, int, int]:
    """HAN ``event_wise_metric``: (TP, FP, FN) of one class row at IoU >= 0.5."""
    tp = sum(any(_iou_ok(p, g) for g in gt_events_) for p in pred_events)
    fn = sum(not any(_iou_ok(g, p) for p in pred_events) for g in gt_events_)
    return tp, len(pred_events) - tp, fn


def _event_level_counts(pred: np.ndarray, gt: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    counts = np.array(
        [event_counts(extract_events(p), extract_events(g)) for p, g in zip(pred, gt)], dtype=float
    )
    counts = counts.reshape(-1, 3)
    return counts[:, 0], counts[:, 1], counts[:, 2]


def _f1_set(counter, so_a, so_v, gt_a, gt_v) -> dict[str, float]:
    ca, cv = counter(so_a, gt_a), counter(so_v, gt_v)
    cav = counter(so_a * so_v, gt_a * gt_v)
    pooled = tuple(x + y for x, y in zip(ca, cv))
    return {k: class_mean_f1(*c) for k, c in zip(_KINDS, (ca, cv, cav, pooled))}


def segment_level_f1(
    so_a: np.ndarray, so_v: np.ndarray, gt_a: np.ndarray, gt_v: np.ndarray
) -> dict[str, float]:
    """Per-video segment-level F1 for ``audio``, ``visual``, ``audio_visual`` and pooled ``event``.

    Args:
        so_a, so_v, gt_a, gt_v: binary (C, T) matrices with the same class order.
    """
    return _f1_set(_segment_counts, *(np.asarray(x, dtype=np.int64) for x in (so_a, so_v, gt_a, gt_v)))


def event_level_f1(
    so_a: np.ndarray, so_v: np.ndarray, gt_a: np.ndarray, gt_v: np.ndarray
) -> dict[str, float]:
    """Per-video event-level F1 (IoU >= 0.5) for ``audio``, ``visual``, ``audio_visual``, ``event``."""
    return _f1_set(_event_level_counts, *(np.asarray(x, dtype=np.int64) for x in (so_a, so_v, gt_a, gt_v)))


class AVVPMetric:
    """Accumulator for AVVP.

    ``compute()`` keys: ``{segment,event}_{audio,visual,audio_visual,type_av,event_av}``.
    """

    def __init__(self, num_segments: int = NUM_SEGMENTS) -> None:
        self.num_segments = num_segments
        self.per_video: list[dict[str, float]] = []

    def update(self, pred: AVVPPrediction | str, gt: Mapping) -> dict[str, float]:
        """Add one video; returns its per-video F1 values (``segment_*`` / ``event_*``)."""
        if isinstance(pred, str):
            pred = parse_avvp(pred)
        _, so_a, so_v, gt_a, gt_v = avvp_matrices(pred, gt, self.num_segments)
        row = {f"segment_{k}": v for k, v in segment_level_f1(so_a, so_v, gt_a, gt_v).items()}
        row.update({f"event_{k}": v for k, v in event_level_f1(so_a, so_v, gt_a, gt_v).items()})
        self.per_video.append(row)
        return row

    def compute(self) -> dict[str, float]:
        out: dict[str, float] = {}
        if not self.per_video:
            return out
        for level in ("segment", "event"):
            means = {k: float(np.mean([r[f"{level}_{k}"] for r in self.per_video])) for k in _KINDS}
            out[f"{level}_audio"] = means["audio"]
            out[f"{level}_visual"] = means["visual"]
            out[f"{level}_audio_visual"] = means["audio_visual"]
            out[f"{level}_type_av"] = (means["audio"] + means["visual"] + means["audio_visual"]) / 3
            out[f"{level}_event_av"] = means["event"]
        return out


def avvp_majority_baseline(gts: Sequence[Mapping], num_segments: int = NUM_SEGMENTS) -> dict[str, float]:
    """Best of: predicting nothing, or the most frequent audio class and the most frequent visual
    class over the whole clip (chosen by ``segment_type_av``)."""
    candidates = [AVVPPrediction()]
    counts = {
        m: Counter(normalize_label(n) for g in gts for n, _ in gt_events(g, m)) for m in ("audio", "visual")
    }
    full = ((0, num_segments),)
    top = {m: ((c.most_common(1)[0][0], full),) if c else () for m, c in counts.items()}
    if top["audio"] or top["visual"]:
        candidates.append(AVVPPrediction(audio=top["audio"], visual=top["visual"]))
    best: dict[str, float] = {}
    for cand in candidates:
        metric = AVVPMetric(num_segments)
        for g in gts:
            metric.update(cand, g)
        res = metric.compute()
        if not best or res.get("segment_type_av", 0.0) > best.get("segment_type_av", 0.0):
            best = res
    return best
