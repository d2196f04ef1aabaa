"""The one scoring path of every caller: load a row's ground truth, score an answer against it.

``python -m crab_core eval`` (:mod:`crab_core.evaluation`), the trainer's quick evaluation
(:mod:`crab_core.training.evaluate`) and head ablation (:mod:`crab_core.interpret.ablation`) all
go through :func:`load_gt` and :func:`score`, driven by the task's :class:`~crab_core.tasks.TaskSpec`:

* ``mask_kind=None`` (text tasks): every accumulator of ``spec.metrics`` gets the parsed answer;
* ``mask_kind="binary"`` (S4, MS3, Ref-AVS): ``binary_seg`` gets the mask logits and the 0/1 GT; a
  Ref-AVS row with ``gt["null"]`` goes to ``null_s`` instead (its GT is empty by definition);
* ``mask_kind="classes"`` (AVSS): ``avss_seg`` gets the ``(C, H, W)`` logits and the class-index GT,
  with ``C`` = the model's ``seg.num_avss_classes`` (:attr:`TaskScorer.num_classes`).

Masks are compared at the GT's resolution: a GT PNG is loaded at its own width (capped at
:data:`MAX_MASK_SIDE`) unless a side is asked for, and the predicted logits are resized bilinearly to
it. A missing predicted mask (no seg tokens in the answer) scores as an empty mask (all background).
AVSS GT PNGs are ``index`` PNGs unless ``gt["mask_format"] == "palette"`` (docs/manifest.md).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from crab_core.errors import MediaError, TaskError
from crab_core.metrics.segmentation import AVSS_CLASSES, AVSSMetric, BinarySegMetric, NullSMetric
from crab_core.tasks.registry import get_task
from crab_core.tasks.spec import TaskSpec

#: Ground-truth masks are compared at most at this side (a 60000-px PNG must not allocate 71 x 60000^2).
MAX_MASK_SIDE = 1024
#: Accumulator fed with the mask, per ``TaskSpec.mask_kind``.
MASK_METRIC = {"binary": "binary_seg", "classes": "avss_seg"}
#: Manifest ``gt.mask_format`` values of a ``classes`` mask; the first is the default.
CLASS_MASK_FORMATS = ("index", "palette")
_EMPTY_LOGIT = 20.0


class Answer(Protocol):
    """What :func:`score` reads from a result (:class:`~crab_core.pipeline.TaskResult` has it all).

    Attributes:
        text: the generated answer. parsed: its parse (None: parsed from ``text``).
        mask_logits: ``(C, S, S)`` float logits of the predicted mask (``C`` = 1 for binary tasks), or None.
    """

    text: str
    parsed: Any
    mask_logits: np.ndarray | None


@dataclass
class Generated:
    """An :class:`Answer` made of a text and mask logits (the trainer's evaluation, tests)."""

    text: str
    mask_logits: np.ndarray | None = None
    parsed: Any = None


def avss_classes(owner: Any = None) -> int:
    """AVSS class count from a model config: ``owner`` is a pipeline, a model or a ``CrabConfig``
    (:data:`AVSS_CLASSES`, 71, when it has no ``seg.num_avss_classes``)."""
    for path in (("model", "config", "seg"), ("config", "seg"), ("seg",)):
        obj = owner
        for attr in path:
            obj = getattr(obj, attr, None)
        if obj is not None and getattr(obj, "num_avss_classes", None) is not None:
            return int(obj.num_avss_classes)
    return AVSS_CLASSES


def mask_loader_kind(spec: TaskSpec | str, gt: Mapping) -> str:
    """The :func:`crab_core.media.mask.mask_from_any` kind of a row's GT mask file.

    ``binary`` for binary tasks; for ``classes`` tasks ``gt["mask_format"]`` (default ``index``).

    Raises:
        TaskError: a task without a mask, or an unknown ``mask_format``.
    """
    spec = get_task(spec)
    if spec.mask_kind is None:
        raise TaskError(f"task {spec.name!r} has no mask")
    if spec.mask_kind == "binary":
        return "binary"
    fmt = gt.get("mask_format") or CLASS_MASK_FORMATS[0]
    if fmt not in CLASS_MASK_FORMATS:
        raise TaskError(f"gt.mask_format must be one of {list(CLASS_MASK_FORMATS)}, got {fmt!r:.40}")
    return fmt


def mask_side(path: str | Path) -> int:
    """Side at which a GT mask file is scored: its width, capped at :data:`MAX_MASK_SIDE`.

    Raises:
        MediaError: the file is not a readable image.
    """
    from PIL import Image

    try:
        with Image.open(path) as im:
            width = int(im.size[0])
    except (OSError, ValueError, Image.DecompressionBombError) as exc:
        raise MediaError(f"could not read mask {Path(path).name}: {exc}") from exc
    return max(1, min(width, MAX_MASK_SIDE))


def load_gt(
    spec: TaskSpec | str,
    gt: Mapping[str, Any],
    *,
    root: str | Path | None = None,
    size: int | None = None,
    num_classes: int = AVSS_CLASSES,
) -> dict[str, Any]:
    """A copy of a manifest ``gt`` whose ``mask`` is loaded (seg tasks; other tasks: a plain copy).

    Args:
        spec: the task. gt: the manifest ``gt`` (docs/manifest.md); ``mask`` a path or an array.
        root: folder that a relative mask path is relative to.
        size: load the mask file at ``size x size`` (default: its width, capped at :data:`MAX_MASK_SIDE`).
        num_classes: palette size of ``classes`` masks.

    Returns:
        ``gt`` with ``mask`` ``(H, W)``: float32 0/1 (``binary``) or int64 class indices (``classes``);
        a Ref-AVS null row without a mask keeps ``mask`` None.

    Raises:
        MediaError: unreadable mask file. TaskError: unknown ``mask_format``.
    """
    spec = get_task(spec)
    out = dict(gt)
    if spec.mask_kind is None:
        return out
    m = out.get("mask")
    if m is None:
        if not out.get("null"):
            raise TaskError(f"{spec.name} gt has no mask")
        return out
    if isinstance(m, (str, Path)):
        from crab_core.media.mask import mask_from_any

        path = Path(m) if root is None or Path(m).is_absolute() else Path(root) / m
        side = size if size is not None else mask_side(path)
        kind = mask_loader_kind(spec, out)
        extra = {} if kind == "binary" else {"num_classes": num_classes}
        m = mask_from_any(path, side, kind, **extra).numpy()[0]
    m = np.asarray(m)
    if m.ndim != 2:
        raise ValueError(f"a GT mask must be (H, W), got shape {m.shape}")
    out["mask"] = (m > 0).astype(np.float32) if spec.mask_kind == "binary" else m.astype(np.int64)
    return out


def pred_logits(result: Answer, shape: tuple[int, int], channels: int) -> np.ndarray:
    """``result``'s mask logits resized bilinearly to ``shape`` ``(H, W)``: ``(channels, H, W)``.

    No mask scores as an empty one: every pixel background (logit -20, class 0 at +20).
    """
    lg = getattr(result, "mask_logits", None)
    if lg is None:
        out = np.full((channels, *shape), -_EMPTY_LOGIT, np.float32)
        if channels > 1:
            out[0] = _EMPTY_LOGIT
        return out
    lg = np.asarray(lg, dtype=np.float32)
    lg = lg[None] if lg.ndim == 2 else lg
    if lg.shape[0] != channels:
        raise ValueError(f"the predicted mask has {lg.shape[0]} channels, the task {channels}")
    if tuple(lg.shape[-2:]) == tuple(shape):
        return lg
    import torch
    import torch.nn.functional as F

    t = torch.from_numpy(np.ascontiguousarray(lg))[None]
    return F.interpolate(t, size=tuple(shape), mode="bilinear", align_corners=False)[0].numpy()


def accumulators(spec: TaskSpec | str, num_classes: int = AVSS_CLASSES) -> dict[str, object]:
    """Fresh accumulators of ``spec.metrics`` as :func:`score` feeds them (mask metrics on logits)."""
    from crab_core.metrics import make_metric

    out: dict[str, object] = {}
    for name in get_task(spec).metrics:
        if name == "binary_seg":
            out[name] = BinarySegMetric(from_logits=True)
        elif name == "null_s":
            out[name] = NullSMetric(from_logits=True)
        elif name == "avss_seg":
            out[name] = AVSSMetric(num_classes=num_classes)
        else:
            out[name] = make_metric(name)
    return out


def score(spec: TaskSpec | str, result: Answer, gt: Mapping[str, Any], accs: Mapping[str, Any]) -> None:
    """Add one answer to the task's accumulators (:func:`accumulators`).

    Args:
        spec: the task. result: the answer (:class:`Answer`).
        gt: the row's ground truth as :func:`load_gt` returns it (seg masks loaded).
        accs: the task's accumulators.
    """
    spec = get_task(spec)
    if spec.mask_kind is None:
        pred = result.parsed if getattr(result, "parsed", None) is not None else result.text
        for acc in accs.values():
            acc.update(pred, gt)
        return
    mask = gt.get("mask")
    channels = accs[MASK_METRIC["classes"]].num_classes if spec.mask_kind == "classes" else 1
    if spec.mask_kind == "binary" and gt.get("null") and "null_s" in accs:
        lg = getattr(result, "mask_logits", None)
        shape = mask.shape if mask is not None else (np.asarray(lg).shape[-2:] if lg is not None else (8, 8))
        accs["null_s"].update(pred_logits(result, tuple(shape), 1)[0])
        return
    if mask is None or isinstance(mask, (str, Path)):
        raise TaskError("score needs the GT mask loaded (load_gt)")
    logits = pred_logits(result, mask.shape, channels)
    accs[MASK_METRIC[spec.mask_kind]].update(logits[0] if channels == 1 else logits, mask)


class TaskScorer:
    """One task's accumulators with :func:`load_gt` + :func:`score`.

    Args:
        spec: the task. num_classes: AVSS classes (the model's ``config.seg.num_avss_classes``).
        root: folder that relative GT mask paths are relative to.
    """

    def __init__(self, spec: TaskSpec | str, num_classes: int = AVSS_CLASSES, root: str | Path | None = None):
        self.spec = get_task(spec)
        self.num_classes = int(num_classes)
        self.root = root
        self.accs = accumulators(self.spec, self.num_classes)
        self.count = 0

    def load(self, gt: Mapping[str, Any], size: int | None = None) -> dict[str, Any]:
        """:func:`load_gt` with this scorer's root and classes."""
        return load_gt(self.spec, gt, root=self.root, size=size, num_classes=self.num_classes)

    def update(self, result: Answer, gt: Mapping[str, Any]) -> None:
        """Add one answer; ``gt`` raw (mask paths are loaded) or already loaded."""
        if not self.accs:
            return
        score(self.spec, result, self.load(gt), self.accs)
        self.count += 1

    def compute(self) -> dict[str, dict[str, float]]:
        """``{metric: {key: value}}`` of every accumulator that received data."""
        return {name: acc.compute() for name, acc in self.accs.items() if has_data(acc)}

    def flat(self) -> dict[str, float]:
        """``{"<metric>.<key>": value}`` of :meth:`compute`."""
        return {f"{n}.{k}": float(v) for n, vals in self.compute().items() for k, v in vals.items()}


def has_data(acc) -> bool:
    """Whether an accumulator received at least one sample."""
    for attr in ("total", "hits", "per_video", "ious", "values", "count"):
        if hasattr(acc, attr):
            v = getattr(acc, attr)
            return bool(np.sum(v)) if isinstance(v, np.ndarray) else bool(v)
    return True


__all__ = [
    "Answer",
    "CLASS_MASK_FORMATS",
    "Generated",
    "MASK_METRIC",
    "MAX_MASK_SIDE",
    "TaskScorer",
    "accumulators",
    "avss_classes",
    "has_data",
    "load_gt",
    "mask_loader_kind",
    "mask_side",
    "pred_logits",
    "score",
]
