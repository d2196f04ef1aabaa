"""Head forcing / removal changes answers and metrics; scoring with ground truth."""

from __future__ import annotations

import numpy as np

from crab_core.interpret.ablation import Scorer, Variant, run_variants, single_head_variants
from crab_core.interpret.inputs import synthetic_input
from crab_core.pipeline import TaskResult
from crab_core.tasks import parse


def test_variants_change_answers_and_nll(tiny_pipe, ave_raw):
    gt = {
        "event": "drum",
        "range": [2, 5],
        "segments": ["background"] * 2 + ["drum"] * 3 + ["background"] * 5,
    }
    ref = "I see a drum. <event> drum </event> <range> 2,5 </range>"
    outs = run_variants(tiny_pipe, ave_raw, gt=gt, max_new_tokens=6, reference=ref)
    names = [o.variant.name for o in outs]
    assert names == [v.name for v in single_head_variants(3)]
    texts = {o.variant.name: o.result.text for o in outs}
    assert len(set(texts.values())) >= 3, texts
    nll = np.array([o.metrics["reference_nll"] for o in outs])
    assert np.ptp(nll) > 0.05, nll  # forcing / removing heads moves the score measurably
    assert all("ave_accuracy.accuracy" in o.metrics for o in outs)


def test_mix_equal_to_router_free_mix(tiny_pipe):
    raw = synthetic_input(tiny_pipe, "arig", frame_index=1, seed=3)
    a, b = run_variants(tiny_pipe, raw, [Variant.mix([1, 0, 0]), Variant.only(0, 3)], max_new_tokens=4)
    assert a.result.text == b.result.text
    assert Variant.normal().control() is None
    assert Variant.without(1, 3).head_mask == (1.0, 0.0, 1.0)


def test_seg_variant_and_scorer(tiny_pipe):
    raw = synthetic_input(tiny_pipe, "s4", frame_index=2, seed=4)
    gt = {"mask": np.zeros((112, 112)), "object": "drum", "null": False}
    outs = run_variants(tiny_pipe, raw, [Variant.normal(), Variant.without(0, 3)], gt=gt, max_new_tokens=4)
    assert all("binary_seg.miou" in o.metrics for o in outs)


def test_scorer_tasks():
    s = Scorer("ref-avs")
    res = TaskResult("ref-avs", "", parse("ref-avs", ""), mask=np.zeros((8, 8), bool))
    s.update(res, {"mask": None, "null": True})
    assert s.compute() == {"null_s.s": 0.0}
    s = Scorer("avqa")
    s.update(
        TaskResult("avqa", "<answer> yes </answer>", None),
        {"answer": "yes", "question_type": "Audio/Existential"},
    )
    assert s.compute()["avqa_accuracy.accuracy"] == 1.0
    assert Scorer("caption").compute() == {}
