"""crab-tiny candidate recipes: trained from scratch and measured for issue #13 against the shipped
one (:func:`crab_core.training.recipe.crab_tiny_recipe`), each written up in docs/crab-tiny.md.
``python -m crab_core train --recipe NAME`` runs any of them.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from ..presets import crab_tiny
from .recipe import DataSpec, Recipe, _tiny_phases


def crab_tiny_v6_recipe() -> Recipe:
    """crab-tiny v6, trained and measured for issue #13 and not shipped (it did not beat v5:
    ``benchmarks/results/v6-candidate/``, docs/crab-tiny.md "v6: tried, not shipped").

    From v5's recipe: the image grid for ARIG's frame (``QFormerConfig.image_grid=4``) with its box
    probe; three more AVQA questions per clip (``DataSpec.avqa_questions``); steps moved into
    ``align`` (2000 / 2200 / 2600 instead of 1600 / 2400 / 3000: v5's learning curves still rose at
    the end of ``align`` and were flat late in ``instruct`` and ``seg``); MS3 at twice the share of
    S4 in ``seg`` (v5's MS3 peaked early in ``seg`` and then fell).
    """
    tiny = crab_tiny()
    return Recipe(
        name="crab-tiny-v6",
        model=tiny.replace(vl_qformer=dataclasses.replace(tiny.vl_qformer, image_grid=4)),
        data=DataSpec(synth_per_task=1000, workers=2, avqa_questions=3),
        phases=_tiny_phases(align=2000, instruct=2200, seg=2600, ms3_seg=2.0),
        eval_every=0,
        checkpoint_every=50,
    )


def crab_tiny_v7_recipe() -> Recipe:
    """crab-tiny v7 (issue #13): v5's recipe with AVVP's audio events written one second per tag
    (``DataSpec.avvp_layout="seconds"``, :mod:`crab_core.training.layouts`; measured in
    ``benchmarks/results/avvp_layout.md``) and MS3 at twice the share of S4 in ``seg`` (the one v6
    change its learning curves kept: MS3 no longer fell in ``seg``); AVVP at twice its share in
    ``instruct`` and 1000 more training clips of AVE, AVVP and AVQA (``DataSpec.extra_per_task``):
    400 more AVVP steps raised v5's fresh audio F1 0.61 -> 0.67 in either layout while its seen
    F1 reached 0.75 / 0.80, so these tasks overfit their 1000 clips."""
    return Recipe(
        name="crab-tiny-v7",
        model=crab_tiny(),
        data=DataSpec(
            synth_per_task=1000,
            workers=2,
            avvp_layout="seconds",
            extra_per_task={"ave": 1000, "avvp": 1000, "avqa": 1000},
        ),
        phases=_tiny_phases(ms3_seg=2.0, avvp_instruct=2.0),
        eval_every=0,
        checkpoint_every=50,
    )


def crab_tiny_v8_recipe() -> Recipe:
    """crab-tiny v8 (issue #13): v5's recipe with six more questions per AVQA training clip whose types
    are drawn with replacement (``DataSpec.avqa_variant_types="any"``), so one clip is asked one type
    about several entities with different answers. v5 never copies the asked class when it is absent
    from the clip (it restates one of the clip's objects) and memorises each training clip's class:
    300 AVQA-only steps from v5 took the restatement to 0.98 on training items and 0.76 on fresh ones,
    and to 0.89 on fresh ones with these variants (``benchmarks/avqa_restate.py``)."""
    return Recipe(
        name="crab-tiny-v8",
        model=crab_tiny(),
        data=DataSpec(synth_per_task=1000, workers=2, avqa_questions=6, avqa_variant_types="any"),
        phases=_tiny_phases(),
        eval_every=0,
        checkpoint_every=50,
    )


#: v9: the LLM's learning rate per phase, as a multiplier of the phase's LR (2e-3 in every phase)
V9_LLM_LR_SCALE = {
    "align": {"llm_base": 0.25, "embed_tokens": 0.25, "lm_head": 0.25},
    "instruct": {"lora": 0.25},
}


def crab_tiny_v9_recipe() -> Recipe:
    """crab-tiny v9 (issue #13): v8's recipe (six more any-type AVQA questions per clip) with the LLM
    trained at a quarter of the phase LR (5e-4 instead of 2e-3) in ``align`` (its base, embeddings and
    head) and ``instruct`` (I-LoRA); the projectors and probes keep theirs. v5 answers "yes" to most
    existential questions whose class is absent and its states at the decision do not hold the answer
    (``benchmarks/results/avqa_capacity.md``, ``avqa_decision_probe.md``); a fresh LLM of the same
    geometry learns that membership test (the asked class named before the list, as in AVQA) within
    1000 steps at 5e-4 and stays far from it at 2e-3 (``benchmarks/results/llm_membership.md``)."""
    phases = tuple(
        dataclasses.replace(p, lr_scale={**p.lr_scale, **V9_LLM_LR_SCALE.get(p.name, {})})
        for p in _tiny_phases()
    )
    return crab_tiny_v8_recipe().replace(name="crab-tiny-v9", phases=phases)


def crab_tiny_v10_recipe() -> Recipe:
    """crab-tiny v10 (issue #13): v8's recipe with the Audio / Visual existential AVQA answers in the
    ``checked`` layout (``DataSpec.avqa_layout``, :mod:`crab_core.training.layouts`): each listed
    class is flagged ``(yes)`` / ``(no)`` (is it the asked one?) before the verdict. A fresh LLM of
    crab-tiny's geometry learns that per-item form at 2e-3 (the recipe's LR) within 250 steps, where
    the whole-list test stays near 0.7 (``benchmarks/results/llm_membership_layouts.md``), so v10
    keeps v8's rates; v8 is its control (one change)."""
    v8 = crab_tiny_v8_recipe()
    return v8.replace(name="crab-tiny-v10", data=dataclasses.replace(v8.data, avqa_layout="checked"))


def crab_tiny_v11_recipe() -> Recipe:
    """crab-tiny v11 (issue #13, trained and measured, not shipped: ``benchmarks/results/v11-candidate/``,
    docs/crab-tiny.md "v11"): v10's data (the ``checked`` AVQA layout)
    with v9's rates (the LLM at a quarter of the phase LR in ``align`` and ``instruct``). v10 wrote
    ``(no)`` after nearly every listed class, the asked one included (``avqa_types_v10.md``); a fresh LLM
    of its geometry, with a separator between class and flag as crab-tiny's tokenizer writes ``car
    (no)``, stays at that prior over 3000 steps at the recipe's 2e-3 and learns the flags at 1e-3 and
    5e-4 (``llm_membership_sep.md``, ``llm_membership_sep_lr.md``)."""
    v10, v9 = crab_tiny_v10_recipe(), crab_tiny_v9_recipe()
    return v10.replace(name="crab-tiny-v11", phases=v9.phases)


#: v12: weight of the checked flags' own loss in every phase that trains the LLM
V12_FLAG_WEIGHT = 1.0


def crab_tiny_v12_recipe() -> Recipe:
    """crab-tiny v12 (issue #13; one run stopped after ``instruct``, its flags still at the prior there:
    ``benchmarks/results/avqa_flag_probe_v12.md``, docs/crab-tiny.md "v12"): v10 (v8's rates, the
    ``checked`` AVQA layout) with the flags' own loss (:mod:`crab_core.training.flags`) added at weight
    :data:`V12_FLAG_WEIGHT` in ``align``, ``instruct`` and ``seg``. v10 and v11 (a quarter of the LLM's
    rate) never flag the asked class ``(yes)``, and no probe reads "is this class the asked one?" from
    v11's states at a flag (``avqa_flag_probe_v11.md``). Continued from v11 with the flags' loss added,
    I-LoRA learns the flags at 5e-4 and at 2e-3; with the LM loss alone it does not
    (``avqa_flag_train*.md``): the rate is not what decides, the flags' share of the loss is."""
    v10 = crab_tiny_v10_recipe()
    phases = tuple(
        dataclasses.replace(p, flag_weight=V12_FLAG_WEIGHT) if p.name in ("align", "instruct", "seg") else p
        for p in v10.phases
    )
    return v10.replace(name="crab-tiny-v12", phases=phases)


#: v13: existential (``checked``) questions per AVQA training clip, on top of v8's six any-type ones
V13_CHECKED_QUESTIONS = 4


def crab_tiny_v13_recipe() -> Recipe:
    """crab-tiny v13 (issue #13): v12 (v10's ``checked`` AVQA layout with the flags' own loss) with
    :data:`V13_CHECKED_QUESTIONS` more Audio / Visual existential questions per AVQA training clip
    (``DataSpec.avqa_checked_questions``), so about half of the AVQA items carry flags instead of a
    sixth. v12's flags stayed at the prior through ``instruct`` (``avqa_flag_probe_v12.md``) after
    about 1900 flagged answers; the continuation from v11 that learned them (``avqa_flag_train_
    weighted.md``) saw about 4800, all flagged. The other question types keep v12's items."""
    v12 = crab_tiny_v12_recipe()
    data = dataclasses.replace(v12.data, avqa_checked_questions=V13_CHECKED_QUESTIONS)
    return v12.replace(name="crab-tiny-v13", data=data)


CANDIDATES: dict[str, Callable[[], Recipe]] = {
    "crab-tiny-v6": crab_tiny_v6_recipe,
    "crab-tiny-v7": crab_tiny_v7_recipe,
    "crab-tiny-v8": crab_tiny_v8_recipe,
    "crab-tiny-v9": crab_tiny_v9_recipe,
    "crab-tiny-v10": crab_tiny_v10_recipe,
    "crab-tiny-v11": crab_tiny_v11_recipe,
    "crab-tiny-v12": crab_tiny_v12_recipe,
    "crab-tiny-v13": crab_tiny_v13_recipe,
}
