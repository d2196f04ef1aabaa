"""AVQA probe benchmark (benchmarks/avqa_probe.py): asked classes, probe answers, summary, report."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks"))

import avqa_probe as ap  # noqa: E402

CLASSES = ["guitar", "dog", "drum", "bird"]


def test_asked_classes_in_question_order():
    assert ap.asked_classes("Is the dog louder than the guitar?", CLASSES) == ("dog", "guitar")
    assert ap.asked_classes("Does the drum start sounding before the bird?", CLASSES) == ("drum", "bird")
    assert ap.asked_classes("How many sound sources can be heard?", CLASSES) is None
    assert ap.question_of("<s>[INST] x Please answer this question: Is the dog louder? [/INST]") == (
        "Is the dog louder?"
    )


def test_probe_answer_loudness_over_sounding_seconds_and_first_heard_second():
    t, c = 5, len(CLASSES)
    gt = np.zeros((t, c), bool)
    gt[0:2, 0] = True  # guitar sounds at 0-1
    gt[3:5, 1] = True  # dog sounds at 3-4
    loud = np.zeros((t, c), np.float32)
    loud[:, 0] = [-1.0, -1.0, 5.0, 5.0, 5.0]  # loud only where the guitar is silent: must not count
    loud[:, 1] = [9.0, 9.0, 9.0, -0.5, -0.5]
    logit = np.where(gt, 2.0, -2.0).astype(np.float32)
    assert ap.probe_answer("Audio/Comparative", 0, 1, logit, loud, gt) == "no"  # -1 vs -0.5
    assert ap.probe_answer("Audio/Comparative", 1, 0, logit, loud, gt) == "yes"
    assert ap.probe_answer("Audio/Temporal", 0, 1, logit, loud, gt) == "yes"  # guitar heard first
    assert ap.probe_answer("Audio/Temporal", 1, 0, logit, loud, gt) == "no"
    never = np.full((t, c), -2.0, np.float32)
    assert ap.probe_answer("Audio/Temporal", 0, 1, never, loud, gt) == "no"  # neither heard: not before


def test_summarise_and_markdown():
    rows = [
        {"type": "Audio/Comparative", "probe": True, "answer": False, "truth": "yes"},
        {"type": "Audio/Comparative", "probe": True, "answer": True, "truth": "no"},
        {"type": "Audio/Comparative", "probe": False, "answer": True, "truth": "no"},
    ]
    s = ap.summarise(rows)
    assert s["Audio/Comparative"] == {"probe": 0.667, "answer": 0.667, "majority": 0.667, "n": 3}
    assert s["Audio/Temporal"] == {"probe": None, "answer": None, "majority": None, "n": 0}
    res = {"args": {"runs": "v5=a:b:c", "per_task": 3, "seed": 1, "threads": 1}, "runs": {"v5": s}}
    md = ap.markdown(res)
    assert "| v5 | Audio/Comparative | 3 | 0.667 | 0.667 | 0.667 |" in md
    assert "| v5 | Audio/Temporal | 0 | - | - | - |" in md
