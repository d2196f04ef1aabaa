"""S4/MS3/Ref-AVS mIoU + F-score, Ref-AVS null S and AVSS class-mean metrics on hand-computed cases."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from crab_core.errors import TaskError
from crab_core.metrics import (
    AVSSMetric,
    BinarySegMetric,
    NullSMetric,
    frame_fscore,
    majority_baseline,
    mask_iou,
    metrics_for_task,
)

# Frame A: GT one pixel; P = {(0,0),(0,1)} -> IoU 1/2. F: at t in (.6,.9] only (0,0) is on -> P=R=1 -> F=1.
PRED_A, GT_A = [[0.9, 0.6], [0.2, 0.1]], [[1, 0], [0, 0]]
# Frame B: empty GT; P = {(0,0)} -> IoU = |notP & notG| / HW = 3/4. F = 0 (empty GT, still counted).
PRED_B, GT_B = [[0.7, 0.2], [0.3, 0.1]], [[0, 0], [0, 0]]
# Frame C: P empty -> IoU 0/2 = 0. F: at t in (.1,.4] exactly the two GT pixels are on -> F = 1.
PRED_C, GT_C = [[0.4, 0.45], [0.1, 0.0]], [[1, 1], [0, 0]]


def test_mask_iou_and_fscore_hand_computed():
    pred, gt = np.array([PRED_A, PRED_B, PRED_C]), np.array([GT_A, GT_B, GT_C])
    np.testing.assert_allclose(mask_iou(pred, gt), [0.5, 0.75, 0.0], atol=1e-6)
    np.testing.assert_allclose(frame_fscore(pred, gt), [1.0, 0.0, 1.0], atol=1e-9)
    m = BinarySegMetric()
    m.update(PRED_A, GT_A)
    m.update(np.array([PRED_B, PRED_C]), np.array([GT_B, GT_C]))
    out = m.compute()
    assert out["miou"] == pytest.approx((0.5 + 0.75 + 0) / 3, abs=1e-6)
    assert out["fscore"] == pytest.approx(2 / 3)


def test_fscore_max_below_one():
    # GT {(0,0),(0,1)}; probs .9 (pos), .3 (pos), .6 (neg), 0 (neg); beta^2 = .3
    #   t = 0:       P=2/4, R=1  -> 1.3*.5/(.15+1)      = .5652
    #   t in (0,.3]: P=2/3, R=1  -> 1.3*(2/3)/(.2+1)    = .7222
    #   t in (.3,.6]: P=1/2, R=1/2 -> 1.3*.25/(.15+.5)  = .5
    #   t in (.6,.9]: P=1, R=1/2 -> 1.3*.5/(.3+.5)      = .8125  <- max
    f = frame_fscore([[0.9, 0.3], [0.6, 0.0]], [[1, 1], [0, 0]])
    assert f[0] == pytest.approx(0.8125)


def test_logits_and_booleans():
    logits = np.log(np.array(PRED_A) / (1 - np.array(PRED_A) + 1e-12) + 1e-12)
    np.testing.assert_allclose(mask_iou(logits, GT_A, from_logits=True), [0.5], atol=1e-6)
    assert mask_iou(np.array(GT_A, dtype=bool), GT_A)[0] == pytest.approx(1.0)


def test_null_s():
    # frame B: 1 of 4 pixels > .5 -> sqrt(1/4) = .5; all-zero frame -> 0; mean .25
    m = NullSMetric()
    m.update(PRED_B)
    m.update(np.zeros((2, 2)))
    assert m.compute() == {"s": pytest.approx(0.25)}


def test_avss_hand_computed():
    m = AVSSMetric(num_classes=4)
    # Frame 1: GT [[0,0],[1,1]], pred [[0,1],[1,1]]
    #   class 0: pred 1, GT 2, inter 1 -> IoU 1/2; P=1, R=1/2 -> F = 1.3*.5/(.3+.5) = .8125
    #   class 1: pred 3, GT 2, inter 2 -> IoU 2/3; P=2/3, R=1 -> F = 1.3*(2/3)/1.2
    m.update(np.array([[0, 1], [1, 1]]), np.array([[0, 0], [1, 1]]))
    # Frame 2: GT [[0,0],[2,2]], pred all 0 (given as scores, argmax over C)
    #   class 0: pred 4, GT 2, inter 2 -> IoU 1/2; P=1/2, R=1 -> F = .65/1.15
    #   class 2: pred 0, GT 2 -> IoU 0, F 0 (NaN -> 0), counted as present
    scores = np.zeros((4, 2, 2))
    scores[0] = 1.0
    m.update(scores, np.array([[0, 0], [2, 2]]))
    f0 = (0.8125 + 0.65 / 1.15) / 2
    f1 = 1.3 * (2 / 3) / 1.2
    out = m.compute()
    assert out["miou"] == pytest.approx((0.5 + 2 / 3 + 0 + 0) / 4)  # class 3 absent counts 0
    assert out["miou_present"] == pytest.approx((0.5 + 2 / 3 + 0) / 3)
    assert out["fscore"] == pytest.approx((f0 + f1) / 4)
    assert out["fscore_present"] == pytest.approx((f0 + f1) / 3)


def test_seg_majority_baselines():
    one_px = np.array([[1, 0], [0, 0]])
    # empty mask: IoU 0 on each frame; full mask: 1/4 -> full wins
    assert majority_baseline("s4", [{"mask": one_px}, one_px])["miou"] == pytest.approx(0.25, abs=1e-6)
    # all-empty GT: empty prediction scores |notP & notG|/HW = 1
    assert majority_baseline("ref-avs", [np.zeros((2, 2))])["miou"] == pytest.approx(1.0, abs=1e-6)
    # AVSS: GT [[0,1],[1,1]] twice; all-background -> class0 .25, class1 0; full class 1 -> class1 .75
    avss = majority_baseline("avss", [np.array([[0, 1], [1, 1]])] * 2)
    assert avss["miou"] == pytest.approx(0.75 / 71)
    assert avss["miou_present"] == pytest.approx(0.75 / 2)
    with pytest.raises(TaskError):
        majority_baseline("s4", [{"mask": "a.png"}])
    with pytest.raises(TaskError):
        majority_baseline("caption", [])


def test_metrics_for_task():
    assert set(metrics_for_task("ref-avs")) == {"binary_seg", "null_s"}
    assert metrics_for_task("caption") == {}


def _ref_style_fmeasure(prob: torch.Tensor, gt: torch.Tensor) -> float:
    """Per-frame F as the AVSBench ``Eval_Fmeasure`` loop computes it (one frame per call)."""
    if gt.mean() == 0:
        return 0.0
    th = torch.linspace(0, 1 - 1e-10, 255, dtype=torch.float64)
    prec, rec = torch.zeros(255, dtype=torch.float64), torch.zeros(255, dtype=torch.float64)
    for i in range(255):
        on = (prob >= th[i]).double()
        tp = (on * gt).sum()
        prec[i], rec[i] = tp / (on.sum() + 1e-20), tp / (gt.sum() + 1e-20)
    f = 1.3 * prec * rec / (0.3 * prec + rec)
    f[f != f] = 0
    return f.max().item()


def test_binary_metrics_match_reference_loops_on_random_data():
    rng = np.random.default_rng(0)
    prob = rng.random((4, 16, 16))
    gt = (rng.random((4, 16, 16)) > 0.6).astype(float)
    gt[3] = 0
    pt, gtt = torch.from_numpy(prob), torch.from_numpy(gt)
    ref_f = [_ref_style_fmeasure(pt[i], gtt[i]) for i in range(4)]
    np.testing.assert_allclose(frame_fscore(prob, gt), ref_f, atol=1e-12)
    p = (pt > 0.5).double()
    inter, union = (p * gtt).sum((1, 2)), torch.maximum(p, gtt).sum((1, 2))
    inter[3], union[3] = ((1 - p[3]) * (1 - gtt[3])).sum(), 256
    np.testing.assert_allclose(mask_iou(prob, gt), (inter / (union + 1e-7)).numpy(), atol=1e-12)


def test_avss_matches_histc_accumulation_on_random_data():
    rng = np.random.default_rng(1)
    n_cls = 6
    pred = rng.integers(0, n_cls, (5, 8, 8))
    gt = rng.integers(0, 3, (5, 8, 8))  # classes 3..5 never in GT
    ious, fs, cnt = torch.zeros(n_cls), torch.zeros(n_cls), torch.zeros(n_cls)
    for p, g in zip(torch.from_numpy(pred).float() + 1, torch.from_numpy(gt).float() + 1):
        inter = p * (p == g).float()
        a_i, a_p, a_l = (torch.histc(x, bins=n_cls, min=1, max=n_cls) for x in (inter, p, g))
        union = a_p + a_l - a_i
        ious += a_i / (2.220446049250313e-16 + union)
        cnt[torch.nonzero(union).squeeze(-1)] += 1
        pr, rc = a_i / a_p, a_i / a_l
        f = 1.3 * pr * rc / (0.3 * pr + rc)
        f[f != f] = 0
        fs += f
    miou_pc, f_pc = ious / cnt, fs / cnt
    miou_pc[torch.isnan(miou_pc)], f_pc[torch.isnan(f_pc)] = 0, 0
    m = AVSSMetric(num_classes=n_cls)
    m.update(pred, gt)
    out = m.compute()
    assert out["miou"] == pytest.approx(miou_pc.mean().item(), abs=1e-6)
    assert out["fscore"] == pytest.approx(f_pc.mean().item(), abs=1e-6)
