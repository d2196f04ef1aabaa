"""More AVQA questions on the same rendered clip (crab_core.training.variants)."""

from __future__ import annotations

import torch

from crab_core.training.data import render_synth, synth_seeds
from crab_core.training.variants import add_question_variants


def test_variants_share_the_clip_and_ask_other_questions():
    raws = render_synth(synth_seeds("train", ["avqa", "ave"], 3, 0), 32, workers=1, with_labels=True)
    more = add_question_variants(raws, 2)
    avqa = [r for r in raws if r.task == "avqa"]
    assert len(more) >= len(avqa) and all(v.task == "avqa" for v in more)
    assert add_question_variants(raws, 2)[0].output == more[0].output  # deterministic
    by_id = {r.id: r for r in raws}
    for v in more:
        base = by_id[v.media_of]
        assert v.id.startswith(base.id + "-q") and v.id != base.id
        assert v.video is base.video and v.audio is base.audio  # shared, not copied
        assert v.gt["question_type"] != base.gt["question_type"] and v.output != base.output
        question = v.prompt.split("Please answer this question: ")[1]
        assert question.split(" [/INST]")[0] not in base.prompt
    assert add_question_variants(raws, 0) == []


def test_features_computed_once_per_clip(monkeypatch):
    from crab_core.model.builder import build_model
    from crab_core.presets import crab_micro
    from crab_core.training import features as F

    raws = render_synth(synth_seeds("train", ["avqa"], 2, 0), 32, workers=1, with_labels=False)
    more = add_question_variants(raws, 2)
    model = build_model(crab_micro(), seed=0)
    seen = []
    real = F.tower_outputs
    monkeypatch.setattr(F, "tower_outputs", lambda m, rs: seen.extend(r.id for r in rs) or real(m, rs))
    feats = F.compute_features(model, raws + more)
    assert sorted(seen) == sorted(r.id for r in raws)  # the variants reuse their clip's tower outputs
    for v in more:
        assert torch.equal(feats[v.id]["audio"], feats[v.media_of]["audio"])


def test_any_type_variants_ask_other_entities_of_a_clip_never_its_own_question():
    import pytest

    from crab_core.errors import ConfigError

    raws = render_synth(synth_seeds("train", ["avqa"], 6, 0), 32, workers=1, with_labels=False)
    more = add_question_variants(raws, 5, "any")
    again = add_question_variants(raws, 5, "any")
    assert [(v.prompt, v.output) for v in more] == [(v.prompt, v.output) for v in again]  # deterministic
    by_id = {r.id: r for r in raws}
    same_type = 0
    for v in more:
        base = by_id[v.media_of]
        assert v.prompt != base.prompt  # never the clip's own question
        same_type += v.gt["question_type"] == base.gt["question_type"]
    assert len(more) > 3 * len(raws)
    per_clip = {}
    for v in more:
        per_clip.setdefault(v.media_of, []).append(v.prompt)
    assert all(len(set(p)) == len(p) for p in per_clip.values())
    repeated = sum(
        len(p) - len({v.gt["question_type"] for v in more if v.media_of == c}) for c, p in per_clip.items()
    )
    assert same_type + repeated > 0  # one type asked twice of a clip, about other entities
    with pytest.raises(ConfigError, match="variant types"):
        add_question_variants(raws, 2, "some")


def test_checked_variants_ask_existential_questions_the_clip_was_not_asked():
    """``checked`` variants are Audio / Visual existential questions (ids ``-c{k}``), with both answers,
    flagged in the ``checked`` layout, and never repeat a question already asked of their clip."""
    from crab_core.training.layouts import CHECKED_TYPES, apply_layouts

    raws = render_synth(synth_seeds("train", ["avqa"], 8, 0), 32, workers=1, with_labels=False)
    anys = add_question_variants(raws, 6, "any")
    checked = add_question_variants(raws + anys, 4, "checked")
    assert checked == add_question_variants(raws + anys, 4, "checked")  # deterministic
    assert len(checked) > 2 * len(raws)
    assert {v.gt["question_type"] for v in checked} == set(CHECKED_TYPES)
    assert {v.gt["answer"] for v in checked} == {"yes", "no"}
    asked = {}
    for r in raws + anys + checked:
        asked.setdefault(r.media_of or r.id, []).append(r.prompt)
    assert all(len(set(p)) == len(p) for p in asked.values())  # no question twice on one clip
    assert all("-c" in v.id.rsplit("-avqa", 1)[1] for v in checked)
    flagged = apply_layouts(checked, "ranges", "checked")
    assert all(" (yes)" in v.output or " (no)" in v.output for v in flagged)
    # v13's mix (6 any-type + 4 checked per clip): flags on about half of the AVQA items, not a sixth
    every = apply_layouts(raws + anys + checked, "ranges", "checked")
    share = sum(" (yes)" in v.output or " (no)" in v.output for v in every) / len(every)
    assert 0.35 < share < 0.7, share
