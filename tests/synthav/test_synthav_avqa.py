"""SynthAV AVQA answers are bound to the question and balanced.

Every reasoning restates the asked entity first, states the evidence about that entity (checked
against the scene's truth) and concludes from it; question types are equally likely, answers within
a type are balanced, and so are the question forms of a type.
"""

from __future__ import annotations

import re
from collections import Counter

import numpy as np
import pytest

from crab_core.synthav import CLASSES
from crab_core.synthav.avqa import KINDS, QUESTION_TYPES, build_avqa
from crab_core.synthav.generate import stratum, task_seed
from crab_core.synthav.text import WHERE
from crab_core.tasks import parse

N_BALANCE = 2000
TAIL = re.compile(r" So the answer is <answer> ([\w-]+) </answer>\.$")


def _targets_of_type(qtype: str, n: int = 40):
    """``n`` targets of one question type, its answers cycled (strata inside the type's twelfth)."""
    i = QUESTION_TYPES.index(qtype)
    return [
        build_avqa(np.random.default_rng([k, 7]), "train", (i + (k + 0.5) / n) / len(KINDS)) for k in range(n)
    ]


@pytest.fixture(scope="module")
def balanced():
    """The first ``N_BALANCE`` AVQA targets of a train split, as the generator draws them."""
    out = []
    for k in range(N_BALANCE):
        seed = task_seed("train", "avqa", k, 1)
        out.append(build_avqa(np.random.default_rng([seed, 2]), "train", stratum(seed)))
    return out


def _sentences(text: str) -> list[str]:
    return [s for s in re.split(r"(?<=\.) ", TAIL.sub("", text)) if s]


def _asked(question: str) -> list[str]:
    """The entities a question names: classes, or slot phrases (``on the left``), or nothing (counts)."""
    slots = [w for w in WHERE.values() if w in question]
    return slots or [w for w in re.findall(r"\w+", question) if w in CLASSES]


@pytest.mark.parametrize("qtype", QUESTION_TYPES)
def test_reasoning_restates_and_concludes_about_asked_entity(qtype):
    for t in _targets_of_type(qtype):
        out, ans = t.output, t.gt["answer"]
        m = TAIL.search(out)
        assert m and m.group(1) == ans and parse("avqa", out).answer == ans, out
        first, *evidence = _sentences(out)
        assert first.startswith("The question asks "), out
        assert evidence, out
        for entity in _asked(t.question):
            assert entity in first, (t.question, out)
            assert entity in " ".join(evidence), (t.question, out)
        if (
            qtype.endswith("Counting")
            or qtype.endswith("Temporal")
            and t.question.startswith(("Which", "What"))
        ):
            assert ans in evidence[-1], out  # the conclusion names the answer it derives
        assert len(out) <= 340, out  # short: crab-tiny has 1024 positions for prompt, media and answer


def _obj(scene, cls):
    return next((o for o in scene.objects if o.cls == cls), None)


@pytest.mark.parametrize("qtype", ["Audio/Existential", "Visual/Existential", "Audio-Visual/Existential"])
def test_existential_evidence_matches_truth(qtype):
    for t in _targets_of_type(qtype):
        cls = _asked(t.question)[0]
        o = _obj(t.scene, cls)
        last = _sentences(t.output)[-1]
        heard, seen = bool(o and o.sounds), bool(o and o.onscreen)
        truth = {
            "Audio/Existential": heard,
            "Visual/Existential": seen,
            "Audio-Visual/Existential": heard and seen,
        }[qtype]
        assert (t.gt["answer"] == "yes") == truth
        if o is None:
            assert last.startswith(f"No {cls} is"), t.output
        else:
            assert last.startswith(f"The {cls} is"), t.output
            if seen and qtype != "Audio/Existential":
                assert WHERE[o.slot] in last, t.output


def test_where_and_comparisons_state_the_asked_objects():
    for t in _targets_of_type("Visual/Location"):
        cls = _asked(t.question)[0]
        assert _sentences(t.output)[-1] == f"The {cls} is {WHERE[_obj(t.scene, cls).slot]}."
    for t in _targets_of_type("Audio/Comparative"):
        a, b = _asked(t.question)
        louder = _obj(t.scene, a).gain_db > _obj(t.scene, b).gain_db
        assert _sentences(t.output)[-1] == f"The {a} sounds {'louder' if louder else 'softer'} than the {b}."
        assert (t.gt["answer"] == "yes") == louder
    for t in _targets_of_type("Audio/Temporal"):
        a, b = _asked(t.question)
        before = _obj(t.scene, a).onset < _obj(t.scene, b).onset
        assert _sentences(t.output)[-1] == f"The {a} starts {'before' if before else 'after'} the {b}."
        assert (t.gt["answer"] == "yes") == before


def test_question_types_and_answers_balanced(balanced):
    types = Counter(t.gt["question_type"] for t in balanced)
    assert set(types) == set(QUESTION_TYPES)
    per_type = N_BALANCE / len(QUESTION_TYPES)
    assert all(abs(n - per_type) <= 0.05 * per_type for n in types.values()), types
    for qtype, answers, _, _ in KINDS:
        got = Counter(t.gt["answer"] for t in balanced if t.gt["question_type"] == qtype)
        assert set(got) == set(answers), (qtype, got)
        expect = types[qtype] / len(answers)
        tol = 0.1 * expect if len(answers) <= 4 else 0.3 * expect
        assert all(abs(got[a] - expect) <= tol for a in answers), (qtype, got)


def test_question_forms_and_hard_negatives_balanced(balanced):
    """Forms of a type and existential hard negatives are drawn once per sample: no form wins
    because the rejection sampler accepts it more often."""

    def share(qtype, pred, where=lambda t: True):
        sel = [t for t in balanced if t.gt["question_type"] == qtype and where(t)]
        return sum(pred(t) for t in sel) / len(sel)

    assert share("Audio-Visual/Location", lambda t: "loudest" in t.question) == pytest.approx(0.5, abs=0.08)
    for form in ("first?", "last?", "left of"):
        assert share("Audio-Visual/Temporal", lambda t, f=form: f in t.question) == pytest.approx(
            1 / 3, abs=0.08
        )
    for qtype in ("Audio/Existential", "Visual/Existential", "Audio-Visual/Existential"):
        hard = share(
            qtype,
            lambda t: _obj(t.scene, _asked(t.question)[0]) is not None,
            where=lambda t: t.gt["answer"] == "no",
        )
        assert hard == pytest.approx(0.5, abs=0.1), qtype


def test_quality_benchmark_reports_each_question_type():
    """benchmarks/crab_tiny_quality.py: per-type accuracy with its n, counted from the manifest rows."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[2] / "benchmarks" / "crab_tiny_quality.py"
    spec = importlib.util.spec_from_file_location("crab_tiny_quality", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    rows = [{"task": "avqa", "gt": {"answer": "yes", "question_type": "Audio/Existential"}}] * 3
    rows += [{"task": "avqa", "gt": {"answer": "left", "question_type": ["Visual", "Location"]}}]
    rows += [{"task": "ave", "gt": {"event": "drum"}}]
    counts = bench.avqa_type_counts(rows)
    assert counts == {"Audio/Existential": 3, "Visual/Location": 1}
    metrics = {
        "accuracy": 0.5,
        "accuracy/type/Audio/Existential": 2 / 3,
        "accuracy/type/Visual/Location": 0.0,
    }
    base = {"accuracy": 0.75, "accuracy/type/Audio/Existential": 1.0, "accuracy/type/Visual/Location": 1.0}
    results = {
        "test": {"metrics": {"avqa": metrics}, "baselines": {"avqa": base}, "avqa_type_counts": counts}
    }
    md = bench.avqa_type_table(results)
    assert "| Audio/Existential | 0.667 (1.000), n=3 |" in md
    assert "| Visual/Location | 0.000 (1.000), n=1 |" in md
    assert bench.avqa_type_table({"test": {"metrics": {"ave": {}}, "baselines": {}}}) == ""


def test_scene_questions_ask_other_types_with_the_scenes_answers():
    """More questions on one scene: distinct types other than the excluded one, each answer the one
    its asker gives for that scene (a type's question builder returns None for a wrong answer)."""
    from crab_core.synthav.avqa import scene_questions

    answers = Counter()
    for k in range(60):
        t = build_avqa(np.random.default_rng([k, 9]), "train", (k + 0.5) / 60)
        qtype = t.gt["question_type"]
        more = scene_questions(t.scene, np.random.default_rng([k, 10]), 3, exclude=qtype)
        again = scene_questions(t.scene, np.random.default_rng([k, 10]), 3, exclude=qtype)
        assert more == again  # deterministic in the generator
        types = [gt["question_type"] for _, _, gt in more]
        assert 1 <= len(more) <= 3 and len(set(types)) == len(types) and qtype not in types
        for question, output, gt in more:
            assert question.endswith("?") and TAIL.search(output).group(1) == gt["answer"]
            assert output.startswith("The question asks")
            answers[gt["answer"]] += 1
            kind = next(k for k in KINDS if k[0] == gt["question_type"])
            wrong = [a for a in kind[1] if a != gt["answer"]]
            # the scene supports the stated answer: no other count fits (the other types build their
            # question from the answer, so several answers can be asked about one scene)
            if gt["question_type"].endswith("Counting"):
                assert all(kind[2](t.scene, np.random.default_rng(0), a, 0.9) is None for a in wrong)
    assert abs(answers["yes"] - answers["no"]) <= 0.3 * (answers["yes"] + answers["no"])


def test_scene_questions_with_repeated_types_ask_other_entities():
    """``distinct_types=False``: types drawn with replacement, so one scene is asked the same type about
    other entities with other answers; never one question twice; answers the scene's."""
    from crab_core.synthav.avqa import scene_questions

    repeats, existential_answers = 0, Counter()
    for k in range(40):
        t = build_avqa(np.random.default_rng([k, 9]), "train", (k + 0.5) / 40)
        more = scene_questions(t.scene, np.random.default_rng([k, 11]), 6, distinct_types=False)
        assert more == scene_questions(t.scene, np.random.default_rng([k, 11]), 6, distinct_types=False)
        questions = [q for q, _, _ in more]
        assert len(set(questions)) == len(questions) and 1 <= len(more) <= 6
        types = [gt["question_type"] for _, _, gt in more]
        repeats += len(types) - len(set(types))
        for _, output, gt in more:
            assert TAIL.search(output).group(1) == gt["answer"] and output.startswith("The question asks")
            if gt["question_type"].endswith("Existential"):
                existential_answers[gt["answer"]] += 1
    assert repeats > 0  # some clip is asked one type twice (about another entity)
    assert existential_answers["yes"] > 0 and existential_answers["no"] > 0
