"""ARIG box IoU, cIoU, AUC and mean IoU on hand-computed cases."""

from __future__ import annotations

import pytest

from crab_core.metrics import ARIGMetric, box_iou, grounding_summary, majority_baseline
from crab_core.tasks import render_target


def test_box_iou():
    assert box_iou((0, 0, 10, 10), (0, 0, 10, 10)) == 1.0
    assert box_iou((0, 0, 10, 5), (0, 0, 10, 10)) == pytest.approx(0.5)
    assert box_iou((5, 5, 15, 15), (0, 0, 10, 10)) == pytest.approx(25 / 175)
    assert box_iou((20, 20, 30, 30), (0, 0, 10, 10)) == 0.0
    assert box_iou(None, (0, 0, 1, 1)) == 0.0
    assert box_iou((1, 1, 1, 1), (1, 1, 1, 1)) == 0.0  # empty union


def test_arig_metric_hand_computed():
    gt = {"object": "drum", "box": [0, 0, 10, 10]}
    m = ARIGMetric()
    m.update(render_target("arig", gt), gt)  # IoU 1
    m.update(render_target("arig", {"object": "drum", "box": [0, 0, 10, 5]}, variant="train"), gt)  # IoU .5
    m.update((5, 5, 15, 15), gt)  # IoU 1/7
    m.update("I cannot tell", gt)  # IoU 0
    out = m.compute()
    assert out["ciou"] == pytest.approx(2 / 4)
    assert out["miou"] == pytest.approx((1 + 0.5 + 1 / 7) / 4)
    # success curve at t = 0, .05, ..., 1: 1 (t=0), .75 (t=.05,.1), .5 (t=.15..0.5), .25 (t=.55..1)
    # trapezoid: .05 * (1/2 + .75*2 + .5*8 + .25*9 + .25/2) = .05 * 8.375
    assert out["auc"] == pytest.approx(0.41875)
    assert out["object_accuracy"] == pytest.approx(2 / 4)


def test_grounding_summary_edges():
    assert grounding_summary([]) == {"ciou": 0.0, "auc": 0.0, "miou": 0.0}
    assert grounding_summary([1.0, 1.0])["auc"] == pytest.approx(1.0)


def test_arig_majority_baseline_mean_box():
    gts = [{"object": "a", "box": [0, 0, 10, 10]}, {"object": "b", "box": [10, 10, 20, 20]}]
    out = majority_baseline("arig", gts)  # mean box (5,5,15,15): IoU 1/7 with both
    assert out["miou"] == pytest.approx(1 / 7) and out["ciou"] == 0.0
