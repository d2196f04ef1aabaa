"""AVVP segment- and event-level F1 (HAN/LLP definitions) on hand-computed cases."""

from __future__ import annotations

import numpy as np
import pytest

from crab_core.metrics import AVVPMetric, event_level_f1, majority_baseline, segment_level_f1
from crab_core.metrics.avvp import event_counts, extract_events
from crab_core.tasks import AVVPPrediction


def _ev(name, *ranges):
    return {"event": name, "ranges": [list(r) for r in ranges]}


def test_extract_events_and_counts():
    assert extract_events([0, 1, 1, 0, 1]) == [(1, 3), (4, 5)]
    assert extract_events([1] * 10) == [(0, 10)]
    assert extract_events([0] * 3) == []
    assert event_counts([(0, 4)], [(0, 5)]) == (1, 0, 0)  # IoU 4/5
    assert event_counts([(3, 4)], [(3, 5)]) == (1, 0, 0)  # IoU 1/2, threshold is inclusive
    assert event_counts([(0, 2)], [(0, 5)]) == (0, 1, 1)  # IoU 2/5 < 0.5


def test_avvp_two_videos_hand_computed():
    m = AVVPMetric()
    # Video 1. GT audio dog [0,5), visual dog [3,10) -> GT av dog [3,5).
    #   Pred audio dog [0,4), visual dog [3,10) -> pred av dog [3,4).
    #   segment: a TP4 FN1 -> 8/9; v TP7 -> 1; av TP1 FN1 -> 2/3; pooled TP11 FN1 -> 22/23
    #   event:   a (0,4)vs(0,5) IoU .8 -> 1; v -> 1; av (3,4)vs(3,5) IoU .5 -> 1; pooled 1
    text1 = "<audio_event>dog,(0 4)</audio_event> <visual_event>Dog,(3 10)</visual_event>"
    gt1 = {"audio": [_ev("dog", (0, 5))], "visual": [_ev("dog", (3, 10))]}
    row = m.update(text1, gt1)
    assert row["segment_audio"] == pytest.approx(8 / 9)
    assert row["segment_audio_visual"] == pytest.approx(2 / 3)
    assert row["segment_event"] == pytest.approx(22 / 23)
    assert row["event_audio_visual"] == 1.0
    # Video 2. GT audio speech [0,2) and [6,8); no visual. Pred: visual car [0,10) only.
    #   segment: a speech FN4 -> 0; v car FP10 -> 0; av: nothing anywhere -> 1.0; pooled 0
    #   event: a 2 FN -> 0; v 1 FP -> 0; av -> 1.0; pooled 0
    pred2 = AVVPPrediction(visual=(("car", ((0, 10),)),))
    gt2 = {"audio": [_ev("speech", (0, 2), (6, 8))], "visual": []}
    m.update(pred2, gt2)
    out = m.compute()
    assert out["segment_audio"] == pytest.approx((8 / 9 + 0) / 2)
    assert out["segment_visual"] == pytest.approx(0.5)
    assert out["segment_audio_visual"] == pytest.approx((2 / 3 + 1) / 2)
    assert out["segment_type_av"] == pytest.approx((4 / 9 + 1 / 2 + 5 / 6) / 3)
    assert out["segment_event_av"] == pytest.approx(11 / 23)
    assert out["event_audio"] == pytest.approx(0.5)
    assert out["event_visual"] == pytest.approx(0.5)
    assert out["event_audio_visual"] == 1.0
    assert out["event_type_av"] == pytest.approx(2 / 3)
    assert out["event_event_av"] == pytest.approx(0.5)


def test_empty_video_counts_one_and_class_mean():
    z = np.zeros((2, 10))
    assert segment_level_f1(z, z, z, z) == {"audio": 1.0, "visual": 1.0, "audio_visual": 1.0, "event": 1.0}
    assert event_level_f1(z, z, z, z)["event"] == 1.0
    # two classes in audio: class 0 perfect (F=1), class 1 predicted 2 s but absent (F=0) -> mean 0.5
    pa = np.zeros((2, 10))
    pa[0, :3] = 1
    pa[1, 5:7] = 1  # noqa: E702
    ga = np.zeros((2, 10))
    ga[0, :3] = 1  # noqa: E702
    assert segment_level_f1(pa, z, ga, z)["audio"] == pytest.approx(0.5)
    assert segment_level_f1(pa, z, ga, z)["visual"] == 1.0


def test_avvp_majority_baseline():
    gts = [
        {"audio": [_ev("dog", (0, 10))], "visual": [_ev("dog", (0, 10))]},
        {"audio": [_ev("dog", (0, 5))], "visual": []},
    ]
    # "dog everywhere" beats "nothing": video 1 all 1.0; video 2 a TP5 FP5 -> 2/3, v FP -> 0, av FP -> 0
    out = majority_baseline("avvp", gts)
    assert out["segment_audio"] == pytest.approx((1 + 2 / 3) / 2)
    assert out["segment_type_av"] == pytest.approx(((1 + 2 / 3) / 2 + 0.5 + 0.5) / 3)
