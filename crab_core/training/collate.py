"""Batching: mixed-task micro-batches grouped by media shape for one encoder pass per group.

A micro-batch mixes tasks (10- and 5-frame videos, 1-s and 2-s audio windows, with or without a
target image). :func:`collate` splits it into :class:`MediaGroup` s of equal shapes, each holding
either model-ready media tensors (``(B, T, 3, S, S)`` normalised frames, ``(B, T, F, 128)`` fbank,
``(B, 1, 3, S, S)`` image) or, when the towers are frozen, their cached outputs
(:mod:`crab_core.training.features`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from ..media.image import CLIP_MEAN, CLIP_STD
from .data import TrainItem

_MEAN = torch.tensor(CLIP_MEAN).view(1, 3, 1, 1)
_STD = torch.tensor(CLIP_STD).view(1, 3, 1, 1)


def normalise(frames: np.ndarray) -> torch.Tensor:
    """``(T, S, S, 3)`` uint8 -> ``(T, 3, S, S)`` CLIP-normalised float32 (as ``clip_preprocess``)."""
    x = torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2).float() * (1 / 255)
    return (x - _MEAN) / _STD


@dataclass
class MediaGroup:
    """Samples of one micro-batch that share media shapes.

    Attributes:
        index: positions of the samples in the micro-batch.
        video / audio / image: stacked media (see module docstring), or None.
        features: cached tower outputs ``{"video": (B, T*P, C), "image": [3 x (B, P, C)],
            "audio": (B, T, n, C)}`` used instead of the media when present.
    """

    index: list[int]
    video: torch.Tensor | None = None
    audio: torch.Tensor | None = None
    image: torch.Tensor | None = None
    features: dict = field(default_factory=dict)


@dataclass
class Batch:
    """A collated micro-batch: items (token ids, labels, masks) plus media groups."""

    items: list[TrainItem]
    groups: list[MediaGroup]
    gt_masks: list[torch.Tensor | None]

    @property
    def tasks(self) -> list[str]:
        return [it.task for it in self.items]

    def __len__(self) -> int:
        return len(self.items)


def _signature(item: TrainItem) -> tuple:
    r = item.raw
    return (
        None if r.video is None else r.video.shape,
        None if r.audio is None else r.audio.shape,
        r.image is not None,
    )


def gt_mask_tensor(item: TrainItem) -> torch.Tensor | None:
    """``(1, S, S)`` float GT mask: {0, 1} for binary tasks, class ids for AVSS (None without mask)."""
    m = item.raw.mask
    return None if m is None else torch.from_numpy(np.asarray(m, dtype=np.float32)).unsqueeze(0)


def collate(items: list[TrainItem], features: dict | None = None, media: bool = True) -> Batch:
    """Group ``items`` by media shape and stack their media (or cached tower features).

    Args:
        items: the micro-batch.
        features: optional ``{item id: tower outputs}`` (see :mod:`crab_core.training.features`).
        media: False for text-only steps (no media tensors are built).
    """
    if not media:
        return Batch(items=items, groups=[], gt_masks=[None] * len(items))
    by_sig: dict[tuple, list[int]] = {}
    for i, it in enumerate(items):
        by_sig.setdefault(_signature(it), []).append(i)
    groups = []
    for idx in by_sig.values():
        raws = [items[i].raw for i in idx]
        g = MediaGroup(index=idx)
        if features is not None and all(r.id in features for r in raws):
            feats = [features[r.id] for r in raws]
            for name in ("video", "audio"):
                if name in feats[0]:
                    g.features[name] = torch.stack([f[name] for f in feats])
            if "image" in feats[0]:
                g.features["image"] = [torch.stack([f["image"][k] for f in feats]) for k in range(3)]
                if (
                    raws[0].image is not None
                ):  # pixels for the prompt decoder's frame stem (cheap, not cached)
                    g.features["frame"] = torch.stack([normalise(r.image[None])[0] for r in raws])
        else:
            if raws[0].video is not None:
                g.video = torch.stack([normalise(r.video) for r in raws])
            if raws[0].audio is not None:
                g.audio = torch.stack([torch.from_numpy(r.audio.astype(np.float32)) for r in raws])
            if raws[0].image is not None:
                g.image = torch.stack([normalise(r.image[None]) for r in raws])
        groups.append(g)
    return Batch(items=items, groups=groups, gt_masks=[gt_mask_tensor(it) for it in items])
