"""AVE segment accuracy and AVQA accuracy on hand-computed cases."""

from __future__ import annotations

import pytest

from crab_core.metrics import AVEAccuracy, AVQAAccuracy, ave_segment_accuracy, majority_baseline
from crab_core.tasks import render_target


def test_ave_accuracy_hand_computed():
    m = AVEAccuracy()
    # video 1: GT drum on [2,6), prediction drum on [3,7): seconds 2 and 6 are wrong -> 8/10
    gt1 = {"event": "drum", "range": [2, 6]}
    assert m.update(render_target("ave", {"event": "Drum", "range": [3, 7]}), gt1) == pytest.approx(0.8)
    # video 2: GT dog everywhere, unparsable answer -> all background -> 0/10
    gt2 = {"event": "dog", "range": [0, 10], "segments": ["dog"] * 10}
    assert m.update("I do not know", gt2) == 0.0
    assert m.compute() == {"accuracy": pytest.approx(8 / 20)}


def test_ave_accuracy_pure_and_label_normalization():
    pred = [["background", "Frying (food)"], ["dog", "dog"]]
    gt = [["background", "Frying_(food)"], ["dog", "background"]]
    assert ave_segment_accuracy(pred, gt) == pytest.approx(3 / 4)
    with pytest.raises(ValueError):
        ave_segment_accuracy([["a"]], [["a", "b"]])


def test_avqa_accuracy_per_type_and_modality():
    m = AVQAAccuracy()
    m.update("So the answer is <answer> two </answer>.", {"answer": "two", "question_type": "Audio/Counting"})
    m.update("<answer> three </answer>", {"answer": "two", "question_type": "Audio/Counting"})
    m.update("<answer>Yes</answer>", {"answer": "yes", "question_type": "Visual/Existential"})
    m.update("garbage", {"answer": "no", "question_type": ["Audio-Visual", "Existential"]})
    out = m.compute()
    assert out["accuracy"] == pytest.approx(2 / 4)
    assert out["accuracy/type/Audio/Counting"] == pytest.approx(1 / 2)
    assert out["accuracy/type/Visual/Existential"] == 1.0
    assert out["accuracy/type/Audio-Visual/Existential"] == 0.0
    assert out["accuracy/modality/Audio"] == pytest.approx(0.5)
    assert out["accuracy/modality/Visual"] == 1.0
    assert out["accuracy/modality/Audio-Visual"] == 0.0


def test_majority_baselines_ave_avqa():
    gts = [
        {"event": "drum", "range": [2, 6]},
        {"event": "drum", "range": [2, 6]},
        {"event": "dog", "range": [0, 10]},
    ]
    # always "drum on [2,6)": 10/10 + 10/10 + 0/10 (dog video gets drum/background)
    assert majority_baseline("ave", gts) == {"accuracy": pytest.approx(20 / 30)}
    q = [
        {"answer": a, "question_type": t}
        for a, t in [("2", "A/C"), ("2", "A/C"), ("3", "A/C"), ("yes", "V/E"), ("no", "V/E"), ("no", "V/E")]
    ]
    out = majority_baseline("avqa", q)  # "2" for A/C and "no" for V/E: 2/3 each
    assert out["accuracy"] == pytest.approx(4 / 6)
    assert out["accuracy/type/A/C"] == pytest.approx(2 / 3)
