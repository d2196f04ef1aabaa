"""AVQA stage benchmark (benchmarks/avqa_stages.py): stages of an answer's tokens, exactness, report."""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks"))

import avqa_stages as st  # noqa: E402


def test_stage_of_tokens_first_sentence_restates_last_is_the_verdict():
    text = "The question asks X. The sounds are a. No X. So the answer is <answer> no </answer>."
    words = text.split(" ")
    pieces = [" ".join(words[:k]) + (" " if k else "") for k in range(len(words))]
    stages = st.stage_of_tokens(pieces)
    assert stages[:4] == ["restatement"] * 4  # "The question asks X."
    assert stages[4:10] == ["evidence"] * 6  # "The sounds are a. No X."
    assert (
        stages[-1] == "verdict" and stages.count("verdict") == 7
    )  # "So the answer is <answer> no </answer>."
    assert st.stage_of_tokens([]) == []


def test_exact_by_stage_needs_every_token_of_the_stage():
    stages = ["restatement", "restatement", "evidence", "verdict"]
    assert st.exact_by_stage(stages, [True, True, False, True]) == {
        "restatement": True,
        "evidence": False,
        "verdict": True,
    }
    assert st.exact_by_stage(stages[:2], [True, False]) == {"restatement": False}


def test_summarise_and_markdown_per_type_absent_class_and_overall():
    gts = [
        {"question_type": "Audio/Existential", "answer": "no"},
        {"question_type": "Audio/Existential", "answer": "yes"},
        {"question_type": "Visual/Counting", "answer": "two"},
    ]
    assert st.groups_of(gts[0]) == ["all", "Audio/Existential", st.ABSENT]
    assert st.groups_of(gts[1]) == ["all", "Audio/Existential"]
    exact = [
        {"restatement": False, "evidence": False, "verdict": True},
        {"restatement": True, "evidence": True, "verdict": True},
        {"restatement": True, "verdict": True},
    ]
    s = st.summarise([st.groups_of(g) for g in gts], exact)
    assert s["all"]["restatement"] == {"value": 0.667, "n": 3}
    assert s["all"]["evidence"] == {"value": 0.5, "n": 2}
    assert s[st.ABSENT]["restatement"] == {"value": 0.0, "n": 1}
    assert s["Visual/Counting"]["evidence"] == {"value": None, "n": 0}
    res = {"args": {"models": "v5=m", "per_task": 3, "seed": 1, "threads": 1}, "models": {"v5": s}}
    md = st.markdown(res)
    assert "| all | 0.67 (3) | 0.50 (2) | 1.00 (3) |" in md
    assert f"| {st.ABSENT} | 0.00 (1) | 0.00 (1) | 1.00 (1) |" in md
    assert md.index(st.ABSENT) < md.index("| Audio/Existential")  # right under "all"
    assert "| Visual/Counting | 1.00 (1) | - | 1.00 (1) |" in md
    assert "--name" not in md
    res["args"]["name"] = "avqa_stages_v8"
    assert "--seed 1 --name avqa_stages_v8`" in st.markdown(res)
