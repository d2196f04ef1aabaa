"""Counterfactual-prompt mask loss: the mask must follow the object the seg tokens name (issue #13).

crab-tiny's mask decoder learned to segment the salient object whatever its prompt said (prompt-swap
IoU 0.93-1.00 even with the prompt-token decoder, I-LoRA trained by the mask loss and a seg-token
class probe; ``benchmarks/seg_selection.py``). Training-only remedy, from SynthAV's labels: for two
S4 / MS3 items ``i`` and ``j`` of a batch, the seg tokens of ``j`` (which name the sounding classes
of ``j``) are decoded on the frame of ``i``, and the target is what that prompt asks for there: the
pixels of ``i``'s frame painted with the classes inside ``j``'s target mask (empty when those classes
are not in ``i``'s frame). Items need ``labels["seg_map"]`` (the frame's class map, 0 = background,
``c + 1`` = class ``c``) and ``labels["seg_classes"]`` (:func:`crab_core.training.data.seg_classes`).
Inference is unchanged.
"""

from __future__ import annotations

import numpy as np
import torch

SWAP_TASKS = ("s4", "ms3")


def swap_target(seg_map: np.ndarray, classes: np.ndarray) -> torch.Tensor:
    """``(S, S)`` class map + ``(K,)`` multi-hot classes -> ``(1, S, S)`` float {0, 1} mask of those
    classes."""
    wanted = np.flatnonzero(classes) + 1
    return torch.from_numpy(np.isin(seg_map, wanted).astype(np.float32))[None]


def prompt_swap_loss(model, batch, media, out, max_pairs: int = 16) -> torch.Tensor:
    """Mask loss of every ordered pair ``(i, j)`` (``i != j``) of eligible seg rows, at most ``max_pairs``.

    Args:
        model: the :class:`~crab_core.model.crab.CrabModel` (its ``seg_module`` decodes).
        batch: the :class:`~crab_core.training.collate.Batch` (items carry the SynthAV labels).
        media: per item :class:`~crab_core.model.crab.EncodedMedia` (seg features and frame).
        out: the model's :class:`CrabOutput` with ``seg_embeddings`` ``(R, 6, D)`` and ``seg_rows``.

    Returns:
        Scalar loss; an attached zero when fewer than two rows are eligible.
    """
    seg = model.seg_module
    zero = sum(p.sum() * 0 for p in seg.parameters())
    if out.seg_embeddings is None or not out.seg_rows:
        return zero
    rows = []
    for k, i in enumerate(out.seg_rows):
        lab = batch.items[i].raw.labels
        if (
            batch.items[i].task in SWAP_TASKS
            and "seg_map" in lab
            and "seg_classes" in lab
            and media[i].seg_features is not None
            and media[i].seg_frame is not None
        ):
            rows.append((k, i))
    pairs = [(a, b) for a in rows for b in rows if a[1] != b[1]][:max_pairs]
    if not pairs:
        return zero
    dev = out.seg_embeddings.device
    emb = torch.stack([out.seg_embeddings[kb] for _, (kb, _) in pairs])
    feats = [torch.stack([media[ia].seg_features[s] for (_, ia), _ in pairs]) for s in range(2)]
    frames = torch.stack([media[ia].seg_frame for (_, ia), _ in pairs])
    gt = torch.stack(
        [
            swap_target(batch.items[ia].raw.labels["seg_map"], batch.items[ib].raw.labels["seg_classes"])
            for (_, ia), (_, ib) in pairs
        ]
    ).to(dev)
    tasks = [batch.items[ib].task for _, (_, ib) in pairs]
    return seg(emb, feats, tasks, gt, frames=frames).mask_loss
