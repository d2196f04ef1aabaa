"""LLM membership benchmark (benchmarks/llm_membership.py): sequences, training loop, report."""

from __future__ import annotations

import json
import random
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks"))

import llm_membership as lm  # noqa: E402


@pytest.mark.parametrize("layout", lm.LAYOUTS)
def test_sequences_answer_membership_and_balance(layout):
    rng = random.Random(0)
    yes = 0
    for _ in range(400):
        toks, ans = lm.sequence(rng, layout)
        listed = toks[toks.index(lm.LIST) + 1 : toks.index(lm.STOP, toks.index(lm.LIST))]
        q = toks[toks.index(lm.ASK) + 1]
        if layout == "per-item-sep":
            assert listed[1::3] == [lm.SEP] * (len(listed) // 3)
            listed = [t for t in listed if t != lm.SEP]
        if layout.startswith("per-item"):
            listed, flags = listed[::2], listed[1::2]
            assert flags == [lm.MATCH if c == q else lm.OTHER for c in listed]
        assert 1 <= len(listed) <= 3 and ans == (lm.YES if q in listed else lm.NO)
        yes += ans == lm.YES
    assert 150 < yes < 250
    if layout in ("question-first", "per-item", "per-item-sep"):
        assert toks[:2] == [lm.ASK, q] and toks[-1] == lm.STOP
    else:
        assert toks[-2:] == [lm.ASK, q]
    with pytest.raises(ValueError, match="unknown layout"):
        lm.sequence(rng, "sideways")


def test_batch_pads_and_points_at_the_last_token():
    x, y, last = lm.batch(random.Random(1), "after", 6)
    assert x.shape[0] == 6 and y.shape == (6,) and last.shape == (6,)
    assert all(int(x[i, last[i] - 1]) == lm.ASK for i in range(6))
    assert all((x[i, last[i] + 1 :] == lm.PAD).all() for i in range(6))


def test_flag_targets_mark_only_the_flags():
    x, y, _ = lm.batch(random.Random(2), "per-item", 8)
    tgt = lm.flag_targets(x)
    keep = tgt != -100
    assert keep.any() and set(tgt[keep].tolist()) <= {lm.MATCH, lm.OTHER}
    assert (x[:, 1:][keep[:, :-1]] == tgt[:, :-1][keep[:, :-1]]).all()
    # a yes answer has exactly one MATCH flag, a no answer none
    assert ((tgt == lm.MATCH).sum(1) == (y == lm.YES).long()).all()


def test_run_learns_the_after_layout_quickly():
    """A few hundred steps at a low LR already beat chance clearly (the benchmark's easy case)."""
    out = lm.run("after", 5e-4, steps=300, every=300, batch_size=32)
    assert out["curve"][300] >= 0.75


def test_markdown_has_a_row_per_run():
    res = {
        "args": {"steps": 2, "lrs": "1e-3", "threads": 1},
        "runs": [
            {"layout": "after", "lr": 1e-3, "curve": {1: 0.5, 2: 0.75}, "seconds": 1.0},
            {"layout": "question-first", "lr": 1e-3, "curve": {1: 0.5, 2: 0.5}, "seconds": 1.0},
        ],
    }
    md = lm.markdown(json.loads(json.dumps(res)) | {"runs": res["runs"]})
    assert "| after | 0.001 | 0.500 | 0.750 | 1.0 |" in md and md.count("\n| ") == 3
    assert "--layouts" not in md and "--name" not in md
    res["args"] |= {"layouts": "per-item", "name": "x"}
    res["runs"] = [{"layout": "per-item", "lr": 1e-3, "curve": {1: 0.5}, "flags": {1: 0.9}, "seconds": 1.0}]
    md = lm.markdown(res)
    assert "--layouts per-item --name x" in md and "| per-item | 0.001 | 0.500 (0.900) | 1.0 |" in md


def test_prefix_puts_distractors_before_each_sequence():
    x, y, last = lm.batch(random.Random(3), "per-item", 5, prefix=7)
    assert all(int(v) in lm.DISTRACTORS for v in x[:, :7].flatten())
    assert (x[:, 7] == lm.ASK).all() and all(int(x[i, last[i]]) == lm.STOP for i in range(5))
    res = {
        "args": {"steps": 2, "lrs": "1e-3", "threads": 1, "prefix": 7, "batch_size": 8, "every": 1},
        "runs": [{"layout": "after", "lr": 1e-3, "curve": {1: 0.5}, "seconds": 1.0}],
    }
    md = lm.markdown(res)
    assert "--every 1 --batch-size 8 --prefix 7" in md and "batch 8, each sequence after 7 random" in md


def test_held_out_reads_flags_only_for_the_per_item_layouts():
    model = lm.fresh_llm(0).eval()
    dec, flags = lm.held_out(model, "per-item-sep", n=40)
    assert 0.0 <= dec <= 1.0 and 0.0 <= flags <= 1.0
    dec, flags = lm.held_out(model, "after", prefix=3, n=40)
    assert 0.0 <= dec <= 1.0 and flags is None


def test_lm_targets_supervise_every_text_token_but_padding_and_prefix():
    x, _, last = lm.batch(random.Random(4), "per-item-sep", 4, prefix=3)
    tgt = lm.lm_targets(x, prefix=3)
    assert (tgt[:, :2] == -100).all()  # predicting distractors is not a target
    for i in range(4):
        n = int(last[i])
        assert tgt[i, 2:n].tolist() == x[i, 3 : n + 1].tolist()  # next token from the last distractor on
        assert (tgt[i, n:] == -100).all()  # the decision is set by run(), the padding never


def test_run_with_every_token_supervised_trains_and_reports_it():
    out = lm.run("per-item-sep", 5e-4, steps=4, every=2, batch_size=4, supervise="all")
    assert set(out["curve"]) == {2, 4} and set(out["flags"]) == {2, 4}
    res = {
        "args": {"steps": 4, "lrs": "5e-4", "threads": 1, "supervise": "all", "layouts": "per-item-sep"},
        "runs": [{"layout": "per-item-sep", "lr": 5e-4, **out}],
    }
    md = lm.markdown(res)
    assert "--supervise all" in md and "one LM loss over every next token" in md
    assert "trained on the text" in md
