"""AVQA decision-probe benchmark (benchmarks/avqa_decision_probe.py): positions, items, probe, report."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks"))

import avqa_decision_probe as dp  # noqa: E402


def test_sentence_end_counts_full_stops_once():
    pieces = ["The", "The q", "The q.", "The q. ", "The q. A", "The q. A.", "The q. A. So"]
    assert dp.sentence_end(pieces, 1) == 2
    assert dp.sentence_end(pieces, 2) == 5
    with pytest.raises(ValueError, match="fewer than 3"):
        dp.sentence_end(pieces, 3)


def test_decision_position_follows_the_list_except_audio_visual():
    assert dp.POSITIONS["decision"]("Audio-Visual/Existential") == 1
    assert dp.POSITIONS["decision"]("Visual/Existential") == 2
    assert dp.POSITIONS["restatement"]("Audio/Existential") == 1


def test_existential_seeds_give_each_type_its_count():
    from crab_core.synthav.avqa import planned
    from crab_core.synthav.generate import stratum

    seeds = dp.existential_seeds(3, seed=7)
    kinds = [planned(stratum(s))[0] for s, _ in seeds]
    assert len(seeds) == 9 and all(kinds.count(t) == 3 for t in dp.TYPES)
    assert seeds == dp.existential_seeds(3, seed=7)


def test_probe_reads_a_separable_label_and_not_noise():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(200, 8, generator=g)
    y = (x[:, 3] > 0).long()
    assert dp.probe_accuracy(x, y, folds=4) >= 0.9
    noise = torch.randint(0, 2, (200,), generator=g)
    assert dp.probe_accuracy(x, noise, folds=4) < 0.7


def test_markdown_has_a_row_per_model_type_and_position():
    r = {"n": 4, "majority": 0.5, "restatement": [0.5, 0.6], "decision": [0.5, 0.75]}
    res = {
        "args": {"models": "v5=m", "per_type": 2, "seed": 5, "folds": 2, "threads": 1},
        "models": {"v5": {"Audio/Existential": r, "all": r}},
    }
    md = dp.markdown(res)
    assert md.count("\n| v5 |") == 4 and "| v5 | all | decision | 4 | 0.500 | 0.500 | 0.750 |" in md
    assert "--avqa-layout" not in md
    res["args"] |= {"avqa_layout": "checked", "name": "p"}
    assert "--per-type 2 --avqa-layout checked --name p" in dp.markdown(res)


def test_checked_layout_keeps_the_decision_after_the_flagged_list():
    """The teacher-forced decision position of a checked reference is still the list sentence's end."""
    from crab_core.training.layouts import avqa_checked_output

    ref = (
        "The question asks whether a dog is heard. The sounds are bell and piano. No dog is heard. "
        "So the answer is <answer> no </answer>."
    )
    new = avqa_checked_output(ref, "Audio/Existential")
    words = new.split(" ")
    pieces = [" ".join(words[: k + 1]) for k in range(len(words))]
    k = dp.sentence_end(pieces, dp.POSITIONS["decision"]("Audio/Existential"))
    assert pieces[k].endswith("bell (no) and piano (no).")
