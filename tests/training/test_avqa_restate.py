"""AVQA restatement benchmark (benchmarks/avqa_restate.py): arms, summaries and report."""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks"))

import avqa_restate as ar  # noqa: E402


def test_absent_class_is_an_existential_no():
    assert ar.absent_class({"question_type": "Audio/Existential", "answer": "no"})
    assert not ar.absent_class({"question_type": "Audio/Existential", "answer": "yes"})
    assert not ar.absent_class({"question_type": "Audio/Comparative", "answer": "no"})


def test_summarise_splits_restatement_by_absent_class():
    ex_no = {"question_type": "Visual/Existential", "answer": "no"}
    other = {"question_type": "Visual/Location", "answer": "left"}
    rows = [
        (ex_no, {"restated": False, "correct": True}),
        (ex_no, {"restated": True, "correct": True}),
        (other, {"restated": True, "correct": False}),
    ]
    s = ar.summarise(rows)
    assert s["accuracy"] == {"value": 0.667, "n": 3}
    assert s["restated"] == {"value": 0.667, "n": 3}
    assert s["restated_absent"] == {"value": 0.5, "n": 2}
    assert s["restated_present"] == {"value": 1.0, "n": 1}
    assert ar.summarise([(other, {"restated": True, "correct": True})])["restated_absent"] == {
        "value": None,
        "n": 0,
    }


def test_arm_recipe_is_an_avqa_only_instruct_phase_with_any_type_variants():
    from crab_core.training.recipe import get_recipe

    base = get_recipe("crab-tiny")
    r = ar.arm_recipe(base, 7, 1e-3, 4)
    (phase,) = r.phases
    inst = next(p for p in base.phases if p.name == "instruct")
    assert phase.name == "instruct" and phase.steps == 7 and dict(phase.tasks) == {"avqa": 1.0}
    assert phase.trainable == inst.trainable and r.model == base.model
    assert r.data.avqa_questions == 4 and r.data.avqa_variant_types == "any"
    assert ar.arm_recipe(base, 7, 1e-3, 0).data.avqa_questions == 0
    (wide,) = ar.arm_recipe(base, 7, 1e-3, 4, extra=("llm_base", "lora")).phases
    assert wide.trainable == (*inst.trainable, "llm_base")


def test_markdown_has_a_row_per_reading_and_a_column_pair_per_arm():
    cell = {k: {"value": 0.5, "n": 10} for k, _ in ar.ROWS}
    cell["restated_absent"] = {"value": None, "n": 0}
    res = {
        "args": {
            "checkpoint": "ck",
            "steps": 3,
            "variants": 6,
            "lr": 0.001,
            "per_task": 10,
            "seed": 5,
            "threads": 1,
        },
        "arms": {
            "start": {"train": cell, "test": cell},
            "+6 any-type": {"train": cell, "test": cell, "avqa_items": 70},
        },
    }
    md = ar.markdown(res)
    assert "--steps 3 --variants 6" in md and "| start seen | start fresh | +6 any-type seen |" in md
    assert md.count("\n| ") == 1 + len(ar.ROWS)  # the header and one row per reading
    assert "| accuracy | 0.500 (n=10) |" in md and "| - |" in md
    assert '{"+6 any-type": 70}' in md
    res["args"]["extra_trainable"] = "llm_base"
    md = ar.markdown(res)
    assert "--extra-trainable llm_base" in md and "and also llm_base" in md
