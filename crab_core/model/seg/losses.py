"""Mask losses of the segmentation module (crab-reference.md section 1.5 "Losses").

Tasks with ``TaskSpec.mask_kind == "binary"`` (``ms3``, ``s4``, ``ref-avs``): BCE-with-logits averaged
over pixels plus Dice on the /1000 scale. ``mask_kind == "classes"`` (``avss``): cross-entropy over the
classes, averaged over pixels (mean over W, then H). Other task names get no loss.

``avss_balance`` (our option: 0 in the reference, 0.5 in crab-tiny): the AVSS cross-entropy becomes
``(1 - b) * pixel-mean CE + b * class-mean CE``, the class mean being the mean over the classes
present in the target of each class's pixel-mean CE, so small objects weigh more (docs/deviations.md).
With the plain pixel mean crab-tiny v2's decoder learned "background everywhere" (AVSS mIoU 0.091 =
the baseline); an exploratory run with ``b = 1`` over-segmented.

Reduction (``reduction``):

* ``"sum"`` (reference, bug 11): per-sample losses are summed over the batch, then each group is
  multiplied by its share of the AVS samples: ``(BCE + 0.5 Dice) * n_bin / n + CE * n_avss / n``.
* ``"mean"`` (corrected): each group's *mean* weighted by its share, i.e. the plain average over the
  ``n`` AVS samples of ``BCE + 0.5 Dice`` (binary) or ``CE`` (avss).

The weights 1.0 / 0.5 / 1.0 are the reference's hard-coded values.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from ...tasks import seg_tasks

#: Tasks by ``TaskSpec.mask_kind``: ``binary`` (BCE + Dice) and ``classes`` (cross-entropy).
BINARY_TASKS = frozenset(seg_tasks("binary"))
CLASS_TASKS = frozenset(seg_tasks("classes"))
BCE_WEIGHT = 1.0
DICE_WEIGHT = 0.5
CE_WEIGHT = 1.0
DICE_SCALE = 1000.0
DICE_EPS = 1e-6


def sigmoid_bce(logits: Tensor, target: Tensor) -> Tensor:
    """Pixel-mean BCE of ``logits`` ``(N, H, W)`` against ``target`` ``(N, H, W)``, summed over N."""
    loss = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
    return loss.flatten(1, 2).mean(1).sum() / (logits.shape[0] + 1e-8) * logits.shape[0]


def dice(logits: Tensor, target: Tensor) -> Tensor:
    """Dice loss ``1 - (2 sum(p t)/s + eps) / (sum(p)/s + sum(t)/s + eps)``, p = sigmoid, s = 1000.

    Args:
        logits: ``(N, H, W)``.
        target: ``(N, H, W)`` in {0, 1}.

    Returns:
        Scalar: the per-mask losses summed over N.
    """
    n = logits.shape[0]
    p = logits.sigmoid().flatten(1, 2)
    t = target.flatten(1, 2)
    num = 2 * (p / DICE_SCALE * t).sum(-1)
    den = (p / DICE_SCALE).sum(-1) + (t / DICE_SCALE).sum(-1)
    loss = 1 - (num + DICE_EPS) / (den + DICE_EPS)
    return loss.sum() / (n + 1e-8) * n


def avss_ce(logits: Tensor, target: Tensor, balance: float = 0.0) -> Tensor:
    """Cross-entropy of ``logits`` ``(C, H, W)`` against class ids ``target`` ``(1, H, W)`` (float ok).

    ``balance`` ``b``: ``(1 - b) * pixel mean + b * mean over the present classes of their pixel mean``.
    """
    tgt = target.to(torch.long)
    loss = F.cross_entropy(logits.unsqueeze(0), tgt, reduction="none")  # (1, H, W)
    pixel_mean = loss.mean(-1).mean(-1).sum()
    if not balance:
        return pixel_mean
    flat, lab = loss.flatten(), tgt.flatten()
    classes, inverse = lab.unique(return_inverse=True)
    per_class = torch.zeros(len(classes), dtype=flat.dtype, device=flat.device).index_add_(0, inverse, flat)
    counts = torch.bincount(inverse, minlength=len(classes)).to(flat.dtype)
    return (1.0 - balance) * pixel_mean + balance * (per_class / counts).mean()


def mask_loss(
    pred_masks: Sequence[Tensor],
    gt_mask: Tensor,
    task_names: Sequence[str],
    reduction: str = "sum",
    avss_balance: float = 0.0,
) -> Tensor:
    """Total mask loss of a batch.

    Args:
        pred_masks: Per-sample ``(C, H, W)`` logits.
        gt_mask: ``(B, 1, H, W)``: {0, 1} for binary tasks, class ids (as float) for avss.
        task_names: Per-sample task names.
        reduction: ``"sum"`` (reference) or ``"mean"`` (corrected); see the module docstring.
        avss_balance: share of the class-balanced AVSS cross-entropy (see the module docstring).

    Returns:
        Scalar loss. With no AVS sample it is a zero that stays attached to ``pred_masks``.
    """
    if reduction not in ("sum", "mean"):
        raise ValueError(f"loss reduction must be 'sum' or 'mean', got {reduction!r}")
    bce_sum: Tensor | float = 0.0
    dice_sum: Tensor | float = 0.0
    ce_sum: Tensor | float = 0.0
    n_bin = n_avss = 0
    for pred, gt, task in zip(pred_masks, gt_mask, task_names):
        if task in BINARY_TASKS:
            bce_sum = bce_sum + sigmoid_bce(pred, gt)
            dice_sum = dice_sum + dice(pred, gt)
            n_bin += 1
        elif task in CLASS_TASKS:
            ce_sum = ce_sum + avss_ce(pred, gt, avss_balance)
            n_avss += 1
    n = n_bin + n_avss
    if n == 0:
        return sum((p.sum() * 0.0 for p in pred_masks), torch.zeros((), device=gt_mask.device))
    total: Tensor | float = 0.0
    if n_bin:
        share = n_bin / n if reduction == "sum" else 1.0 / n
        total = total + BCE_WEIGHT * bce_sum * share + DICE_WEIGHT * dice_sum * share
    if n_avss:
        share = n_avss / n if reduction == "sum" else 1.0 / n
        total = total + CE_WEIGHT * ce_sum * share
    return total  # type: ignore[return-value]
