"""AVQA capacity benchmark (benchmarks/avqa_capacity.py): the deepened LLM, summaries and report."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks"))

import avqa_capacity as cap  # noqa: E402


def test_capacity_deeper_arm_starts_as_the_trained_model():
    """The deepened LLM loads the shallower weights and its new layers are the identity."""
    from crab_core.model.builder import build_model
    from crab_core.training.recipe import micro_config

    cfg = micro_config()
    small = build_model(cfg, seed=0).eval()
    deeper_cfg = cap.deepen(type("R", (), {"model": cfg, "replace": lambda self, model: model})(), 2)
    assert deeper_cfg.llm.num_hidden_layers == cfg.llm.num_hidden_layers + 2
    big = build_model(deeper_cfg, seed=1).eval()
    zeroed = cap.load_deepened(big, small.state_dict(), cfg.llm.num_hidden_layers)
    assert zeroed == 2 * len(cap.ZEROED)
    x = torch.randn(2, 7, cfg.llm.hidden_size)
    with torch.no_grad():
        want = small.llm(inputs_embeds=x).logits
        got = big.llm(inputs_embeds=x).logits
    assert torch.allclose(want, got, atol=1e-5)
    with pytest.raises(ValueError, match="does not fit"):
        cap.load_deepened(small, big.state_dict(), cfg.llm.num_hidden_layers)


def test_capacity_summary_counts_yes_bias_and_types():
    rows = [
        {"type": "Audio/Existential", "answer": "no", "said": "yes", "correct": False, "restated": True},
        {"type": "Audio/Existential", "answer": "yes", "said": "yes", "correct": True, "restated": True},
        {"type": "Visual/Location", "answer": "left", "said": "left", "correct": True, "restated": False},
    ]
    s = cap.summarise(rows)
    assert s["accuracy"] == {"value": 0.667, "n": 3}
    assert s["said_yes"] == {"value": 1.0, "n": 2}
    assert s["absent_called_present"] == {"value": 1.0, "n": 1}
    assert s["type:Audio/Existential"] == {"value": 0.5, "n": 2}
    res = {
        "args": {
            "checkpoint": "ck",
            "steps": 3,
            "variants": 6,
            "lr": 0.001,
            "fresh": 3,
            "seen": 3,
            "seed": 5,
        },
        "layers": 4,
        "arms": {"start": {"test": s, "train": s}, "lora": {"test": s, "train": s, "train_s": 60.0}},
    }
    res["args"]["threads"] = 1
    md = cap.markdown(res)
    assert "| accuracy, Visual/Location | 1.000 (n=1) |" in md and '{"lora": 1.0}' in md
    assert md.count("\n| ") == 1 + len(s) and "--recipe" not in md
    res["args"]["recipe"] = "crab-tiny-v10"
    assert "--steps 3 --recipe crab-tiny-v10" in cap.markdown(res)


def test_types_report_has_a_column_per_model():
    import avqa_types as at

    s = cap.summarise(
        [{"type": "Audio/Existential", "answer": "no", "said": "yes", "correct": False, "restated": True}]
    )
    res = {
        "args": {"models": "a=x,b=y", "fresh": 1, "seed": 5, "name": "avqa_types", "threads": 1},
        "models": {"a": s, "b": s},
    }
    md = at.markdown(res)
    assert "| reading | a | b |" in md and md.count("\n| ") == 1 + len(s)
    assert "| asked class absent (existential, no) answered yes | 1.000 (n=1) | 1.000 (n=1) |" in md


def test_checked_flags_are_read_from_generated_answers():
    ask = "The question asks whether a dog is heard."
    ref = f"{ask} The sounds are bell. No dog is heard. So the answer is <answer> no </answer>."
    right = f"{ask} The sounds are bell (no). No dog is heard. So the answer is <answer> no </answer>."
    against = f"{ask} The sounds are bell (no). The dog is heard. So the answer is <answer> yes </answer>."
    wrong_flag = f"{ask} The sounds are dog (yes). The dog is heard. So the answer is <answer> yes </answer>."
    gt = {"question_type": "Audio/Existential", "answer": "no"}
    rows = [cap.item_row(gt, p, ref) for p in (right, against, wrong_flag, ref)]
    assert [r["flag"] for r in rows] == [False, False, True, None]  # no flags: not counted
    s = cap.summarise(rows)
    assert s["flags_right"] == {"value": 0.667, "n": 3}
    assert s["verdict_follows_flags"] == {"value": 0.667, "n": 3}
    loc = cap.item_row({"question_type": "Visual/Location", "answer": "left"}, "(yes) left", "left")
    assert cap.summarise([loc])["flags_right"] == {"value": None, "n": 0}  # only the listed types
