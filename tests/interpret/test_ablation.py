"""Head forcing / removal changes answers and metrics; scoring with ground truth."""

from __future__ import annotations

import numpy as np
import pytest

from crab_core.interpret.ablation import Scorer, Variant, run_variants, single_head_variants
from crab_core.interpret.inputs import synthetic_input
from crab_core.metrics import AVEAccuracy
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
    for o in outs:  # each variant's accuracy is its own answer's, scored against the ground truth
        alone = AVEAccuracy()
        alone.update(o.result.text, gt)
        assert o.metrics["ave_accuracy.accuracy"] == pytest.approx(alone.compute()["accuracy"]), o.variant

    perfect = AVEAccuracy()
    perfect.update(ref, gt)
    assert perfect.compute()["accuracy"] == 1.0  # the scorer can tell a right answer from the variants'
    accs = {o.metrics["ave_accuracy.accuracy"] for o in outs}
    assert accs <= {i / 10 for i in range(11)}


def test_mix_equal_to_router_free_mix(tiny_pipe):
    raw = synthetic_input(tiny_pipe, "arig", frame_index=1, seed=3)
    a, b = run_variants(tiny_pipe, raw, [Variant.mix([1, 0, 0]), Variant.only(0, 3)], max_new_tokens=4)
    assert a.result.text == b.result.text
    assert Variant.normal().control() is None
    assert Variant.without(1, 3).head_mask == (1.0, 0.0, 1.0)


def test_seg_variant_and_scorer(tiny_pipe):
    raw = synthetic_input(tiny_pipe, "s4", frame_index=2, seed=4)
    mask = np.zeros((112, 112))
    mask[:56, :56] = 1  # the object in the top-left quarter
    gt = {"mask": mask, "object": "drum", "null": False}
    outs = run_variants(tiny_pipe, raw, [Variant.normal(), Variant.without(0, 3)], gt=gt, max_new_tokens=4)
    for o in outs:  # the variant's own predicted mask (logits > 0; none = empty) against the ground truth
        lg = o.result.mask_logits
        pred = np.zeros(mask.shape, bool) if lg is None else np.asarray(lg)[0] > 0
        assert pred.shape == mask.shape
        iou = (pred & (mask > 0)).sum() / (pred | (mask > 0)).sum()
        assert o.metrics["binary_seg.miou"] == pytest.approx(iou, abs=1e-6), o.variant.name


def test_scorer_tasks():
    s = Scorer("ref-avs")
    res = TaskResult("ref-avs", "", parse("ref-avs", ""), mask=np.zeros((8, 8), bool))
    s.update(res, {"mask": None, "null": True})
    assert s.compute() == {"null_s.s": 0.0}
    s = Scorer("ref-avs")
    logits = np.full((1, 8, 8), 5.0, np.float32)
    logits[0, :2] = -5.0  # 48 of 64 pixels segmented where nothing should be
    s.update(
        TaskResult("ref-avs", "", parse("ref-avs", ""), mask=logits[0] > 0, mask_logits=logits),
        {"mask": None, "null": True},
    )
    assert s.compute()["null_s.s"] == pytest.approx((48 / 64) ** 0.5)  # S = sqrt(segmented share)
    s = Scorer("avqa")
    q = {"answer": "yes", "question_type": "Audio/Existential"}
    s.update(TaskResult("avqa", "<answer> yes </answer>", None), q)
    assert s.compute()["avqa_accuracy.accuracy"] == 1.0
    s.update(TaskResult("avqa", "<answer> no </answer>", None), q)
    s.update(TaskResult("avqa", "no answer tags", None), q)
    got = s.compute()
    assert got["avqa_accuracy.accuracy"] == pytest.approx(1 / 3)
    assert got["avqa_accuracy.accuracy/type/Audio/Existential"] == pytest.approx(1 / 3)
    assert Scorer("caption").compute() == {}
