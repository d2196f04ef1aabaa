"""AVE segment accuracy and AVQA accuracy (overall, per question type, per modality).

AVE (crab-reference 4.1): the standard segment-level accuracy, 10 one-second segments per video,
29 classes (28 events + ``background``), averaged over all test segments (not per video). Class
names are compared after :func:`crab_core.tasks.parsers.normalize_label` (case, ``_`` and spaces).

AVQA (crab-reference 4.3): exact match of the normalized ``<answer>`` text with the GT answer,
averaged over all questions; per ``question_type`` (e.g. ``Audio-Visual/Existential``) and per
modality (the part before ``/``: ``Audio``, ``Visual``, ``Audio-Visual``).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence

import numpy as np

from crab_core.tasks.parsers import (
    BACKGROUND,
    AVEPrediction,
    AVQAPrediction,
    normalize_answer,
    normalize_label,
    parse_ave,
    parse_avqa,
)

NUM_SEGMENTS = 10


def ave_gt_segments(gt: Mapping | Sequence[str], num: int = NUM_SEGMENTS) -> list[str]:
    """Per-second GT labels from a manifest ``gt`` (``segments``, else ``event`` + ``range``)."""
    if not isinstance(gt, Mapping):
        return list(gt)
    if gt.get("segments"):
        return list(gt["segments"])
    return AVEPrediction(gt["event"], tuple(gt["range"])).segments(num)


def ave_segment_accuracy(pred: Sequence[Sequence[str]], gt: Sequence[Sequence[str]]) -> float:
    """Share of correctly labelled segments over all videos.

    Args:
        pred: per video, per-second predicted labels.
        gt: per video, per-second GT labels (same lengths).

    Returns:
        Correct segments / all segments, in [0, 1] (0.0 when there is nothing).
    """
    correct = total = 0
    for p, g in zip(pred, gt, strict=True):
        if len(p) != len(g):
            raise ValueError(f"prediction has {len(p)} segments, ground truth {len(g)}")
        correct += sum(normalize_label(a) == normalize_label(b) for a, b in zip(p, g))
        total += len(g)
    return correct / total if total else 0.0


class AVEAccuracy:
    """Accumulator for AVE segment accuracy. ``compute() -> {"accuracy": float}``."""

    def __init__(self, num_segments: int = NUM_SEGMENTS) -> None:
        self.num_segments = num_segments
        self.correct = 0
        self.total = 0

    def update(self, pred: AVEPrediction | str | Sequence[str], gt: Mapping | Sequence[str]) -> float:
        """Add one video; returns its segment accuracy.

        Args:
            pred: answer text, an :class:`AVEPrediction`, or per-second labels.
            gt: manifest ``gt`` of the ``ave`` task, or per-second labels.
        """
        if isinstance(pred, str):
            pred = parse_ave(pred)
        g = ave_gt_segments(gt, self.num_segments)
        p = pred.segments(len(g)) if isinstance(pred, AVEPrediction) else list(pred)
        if len(p) != len(g):
            raise ValueError(f"prediction has {len(p)} segments, ground truth {len(g)}")
        correct = sum(normalize_label(a) == normalize_label(b) for a, b in zip(p, g))
        self.correct += correct
        self.total += len(g)
        return correct / len(g) if g else 0.0

    def compute(self) -> dict[str, float]:
        return {"accuracy": self.correct / self.total if self.total else 0.0}


def ave_majority_baseline(gts: Sequence[Mapping], num: int = NUM_SEGMENTS) -> dict[str, float]:
    """Accuracy of always answering the most common event with the most common range."""
    events = Counter(normalize_label(g["event"]) for g in gts if g.get("event"))
    ranges = Counter(tuple(int(v) for v in g["range"]) for g in gts if g.get("range") is not None)
    if not events:
        pred = [BACKGROUND] * num
    else:
        rng = ranges.most_common(1)[0][0] if ranges else None
        pred = AVEPrediction(events.most_common(1)[0][0], rng).segments(num)
    metric = AVEAccuracy(num)
    for g in gts:
        metric.update(pred, g)
    return metric.compute()


def _type_key(question_type) -> str:
    """``"Audio-Visual/Existential"``, ``["Audio", "Counting"]`` or ``'["Audio", "Counting"]'`` -> ``A/B``."""
    if isinstance(question_type, str):
        s = question_type.strip()
        if s.startswith("["):
            parts = [p.strip(" \"'") for p in s.strip("[]").split(",")]
            return "/".join(p for p in parts if p)
        return s
    if isinstance(question_type, Sequence):
        return "/".join(str(p) for p in question_type)
    return str(question_type)


class AVQAAccuracy:
    """Accumulator for AVQA accuracy.

    ``compute()`` returns ``accuracy`` (all questions), ``accuracy/type/<type>`` and
    ``accuracy/modality/<modality>`` (means over the questions of that type / modality).
    """

    def __init__(self) -> None:
        self.hits: list[bool] = []
        self.types: list[str] = []

    def update(self, pred: AVQAPrediction | str | None, gt: Mapping) -> bool:
        """Add one question; returns whether it was answered correctly.

        Args:
            pred: answer text, an :class:`AVQAPrediction`, or ``None`` (no answer).
            gt: manifest ``gt`` of ``avqa``: ``{"answer": ..., "question_type": ...}``.
        """
        if isinstance(pred, str):
            pred = parse_avqa(pred)
        ans = pred.answer if isinstance(pred, AVQAPrediction) else None
        hit = ans is not None and ans == normalize_answer(str(gt["answer"]))
        self.hits.append(bool(hit))
        self.types.append(_type_key(gt.get("question_type", "unknown")))
        return bool(hit)

    def compute(self) -> dict[str, float]:
        return avqa_accuracy(self.hits, self.types)


def avqa_accuracy(hits: Sequence[bool], types: Sequence[str]) -> dict[str, float]:
    """Overall, per-type and per-modality accuracy from per-question hits and type keys."""
    hits_arr = np.asarray(hits, dtype=float)
    out = {"accuracy": float(hits_arr.mean()) if len(hits_arr) else 0.0}
    types_arr = np.asarray(types, dtype=object)
    for t in sorted(set(types)):
        out[f"accuracy/type/{t}"] = float(hits_arr[types_arr == t].mean())
    mods = np.asarray([t.split("/")[0] for t in types], dtype=object)
    for m in sorted(set(mods.tolist())):
        out[f"accuracy/modality/{m}"] = float(hits_arr[mods == m].mean())
    return out


def avqa_majority_baseline(gts: Sequence[Mapping]) -> dict[str, float]:
    """Accuracy of answering, for every question type, that type's most common answer."""
    by_type: dict[str, Counter] = {}
    for g in gts:
        by_type.setdefault(_type_key(g.get("question_type", "unknown")), Counter())[
            normalize_answer(str(g["answer"]))
        ] += 1
    metric = AVQAAccuracy()
    for g in gts:
        counts = by_type[_type_key(g.get("question_type", "unknown"))]
        metric.update(AVQAPrediction(counts.most_common(1)[0][0]), g)
    return metric.compute()
