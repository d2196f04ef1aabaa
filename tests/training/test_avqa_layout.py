"""The ``checked`` AVQA layout: each listed class flagged against the asked one, same answer."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from crab_core.errors import ConfigError
from crab_core.synthav.annotate import build_target
from crab_core.synthav.avqa import QUESTION_TYPES
from crab_core.tasks.parsers import parse_avqa
from crab_core.training.data import RawItem
from crab_core.training.layouts import AVQA_LAYOUTS, apply_layouts, avqa_checked_output


def _targets(qtype: str, n: int = 24):
    """``n`` SynthAV AVQA targets of ``qtype`` (its 12th of the strata), both answers."""
    k = QUESTION_TYPES.index(qtype)
    rng = np.random.default_rng(9)
    return [build_target(rng, "avqa", "train", (k + (i + 0.5) / n) / len(QUESTION_TYPES)) for i in range(n)]


@pytest.mark.parametrize("qtype", ["Audio/Existential", "Visual/Existential"])
def test_checked_flags_each_listed_class_and_keeps_the_answer(qtype):
    kinds = set()
    for t in _targets(qtype):
        assert t.gt["question_type"] == qtype
        new = avqa_checked_output(t.output, qtype)
        assert parse_avqa(new).answer == parse_avqa(t.output).answer == t.gt["answer"]
        assert new.replace(" (yes)", "").replace(" (no)", "") == t.output  # only the flags are added
        asked = t.output.split(". ")[0].split()[5]
        yes, no = new.count(" (yes)"), new.count(" (no)")
        assert yes == (f"{asked} (yes)" in new) and yes <= 1
        if qtype == "Audio/Existential" or t.gt["answer"] == "yes":
            assert yes == (t.gt["answer"] == "yes")
        kinds.add((t.gt["answer"], yes + no > 1, yes + no == 0))
        # every listed class is flagged: no bare class left in the list sentence
        listed = new.split(". ")[1]
        assert listed.count("(") == yes + no
    assert {("yes", True, False), ("no", True, False)} <= kinds  # several classes, both answers


def test_other_types_and_empty_lists_are_unchanged():
    for qtype in QUESTION_TYPES[2:]:
        for t in _targets(qtype, 3):
            assert avqa_checked_output(t.output, qtype) == t.output
    ask, tag = "The question asks whether a dog is heard.", "So the answer is <answer> {} </answer>."
    empty = f"{ask} Nothing sounds. No dog is heard. {tag.format('no')}"
    assert avqa_checked_output(empty, "Audio/Existential") == empty
    one = f"{ask} The only sound is dog. The dog is heard. {tag.format('yes')}"
    assert "The only sound is dog (yes). The dog is heard." in avqa_checked_output(one, "Audio/Existential")


def test_malformed_existential_answers_are_refused():
    with pytest.raises(ConfigError, match="not a SynthAV"):
        avqa_checked_output("Yes. <answer> yes </answer>", "Audio/Existential")
    with pytest.raises(ConfigError, match="not a SynthAV"):
        avqa_checked_output(
            "The question asks whether a dog is heard. The sounds are a b and c", "Audio/Existential"
        )


def _raw(rid: str, task: str, output: str, qtype: str = "Audio/Existential") -> RawItem:
    return RawItem(id=rid, task=task, prompt="p", output=output, gt={"question_type": qtype})


def test_apply_layouts_touches_only_synthav_avqa():
    out = (
        "The question asks whether a dog is heard. The sounds are dog and bell. The dog is heard. "
        "So the answer is <answer> yes </answer>."
    )
    raws = [
        _raw("synthav-avqa-1", "avqa", out),
        _raw("user-1", "avqa", out),
        _raw("synthav-ave-1", "ave", out),
    ]
    assert apply_layouts(raws) == raws
    got = apply_layouts(raws, avqa="checked")
    assert got[0] == dataclasses.replace(
        raws[0], output=out.replace("dog and bell", "dog (yes) and bell (no)")
    )
    assert got[1:] == raws[1:]
    assert AVQA_LAYOUTS == ("reference", "checked")
    with pytest.raises(ConfigError, match="unknown AVQA layout"):
        apply_layouts(raws, avqa="sideways")


def test_crab_tiny_tokenizer_puts_a_separator_between_class_and_flag():
    """The fact the ``per-item-sep`` text test (benchmarks/llm_membership.py) stands for: crab-tiny's
    tokenizer (the shipped one; every recipe trains the same BPE on the same corpus) writes a listed
    class, then ``(``, then the flag; ``(yes)`` in two pieces."""
    from tokenizers import Tokenizer

    from tests._helpers import REPO

    path = REPO / "assets" / "crab-tiny" / "tokenizer" / "tokenizer.json"
    if not path.is_file():
        pytest.skip("no shipped crab-tiny tokenizer")
    tok = Tokenizer.from_file(str(path))
    pieces = [p.lstrip("\u2581") for p in tok.encode("The sounds are car (no) and piano (yes).").tokens]
    pieces = [p for p in pieces if p]
    assert pieces[pieces.index("car") :][:4] == ["car", "(", "no", ")"]
    after = pieces[pieces.index("piano") + 1 :]
    assert after[0] == "(" and after.index(")") > 2  # "yes" split into at least two pieces
