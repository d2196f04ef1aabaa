"""AVQA binding report (benchmarks/avqa_binding.py): restated entity vs answer, per item."""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks"))

import avqa_binding as ab  # noqa: E402

REF = (
    "The question asks whether a trumpet is seen. The objects seen are flute and dog. "
    "So the answer is <answer> no </answer>."
)


def test_first_sentence_and_binding_row():
    assert ab.first_sentence("  The question asks where the bell is.  The bell is left.") == (
        "The question asks where the bell is."
    )
    wrong = REF.replace("a trumpet", "a dog").replace("> no <", "> yes <")
    assert ab.binding_row(REF, REF, "no") == {"restated": True, "correct": True}
    assert ab.binding_row(wrong, REF, "no") == {"restated": False, "correct": False}
    lucky = wrong.replace("yes", "no")
    assert ab.binding_row(lucky, REF, "no") == {"restated": False, "correct": True}
    assert ab.binding_row("garbled", REF, "no") == {"restated": False, "correct": False}


def test_summarise_splits_accuracy_by_restatement():
    rows = [
        {"restated": True, "correct": True},
        {"restated": True, "correct": False},
        {"restated": False, "correct": True},
        {"restated": False, "correct": False},
        {"restated": False, "correct": False},
    ]
    s = ab.summarise(rows)
    assert s == {
        "n": 5,
        "accuracy": 0.4,
        "restated": 0.4,
        "restated_n": 2,
        "accuracy_restated": 0.5,
        "accuracy_not_restated": 0.333,
    }
    assert ab.summarise([])["accuracy"] is None
    md = ab.table({"models": {"v": {"test (seed 1)": s}}})
    assert "| v | test (seed 1) | 5 | 0.400 | 0.400 | 0.500 | 0.333 |" in md
