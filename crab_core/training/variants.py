"""More training questions on the same rendered clip (SynthAV AVQA).

A SynthAV AVQA sample is a clip built for one question. Training on it alone lets a small LLM
answer from the clip and ignore the question: crab-tiny v5 often restates a wrong entity ("The
question asks whether a dog is seen" to "Is there a trumpet in the video?"), usually one of the
clip's objects (``benchmarks/results/avqa_binding.md``). Each variant here asks
the same clip another question type (:func:`crab_core.synthav.avqa.scene_questions`), so the same
media come with different questions and different answers. (Used by the ``crab-tiny-v6`` recipe;
it did not make v6 restate the question better: docs/crab-tiny.md, "v6: tried, not shipped".)

Variants share the media arrays of their clip (no rendering, no extra memory) and name it in
:attr:`~crab_core.training.data.RawItem.media_of`, so the frozen-tower features are computed once.
"""

from __future__ import annotations

import numpy as np

from ..errors import ConfigError
from ..tasks import get_task
from ..tasks.prompts import build_prompt
from .data import RawItem

#: values of :attr:`~crab_core.training.recipe.DataSpec.avqa_variant_types`; ``checked`` is also the
#: type of :attr:`~crab_core.training.recipe.DataSpec.avqa_checked_questions`
VARIANT_TYPES = ("other", "any", "checked")
#: per variant type: the id letter of its items (``{clip id}-{letter}{k}``) and its generator stream
_STREAM = {"other": ("q", 1), "any": ("q", 1), "checked": ("c", 2)}


def question_variants(raw: RawItem, seed: int, count: int, types: str = "other") -> list[RawItem]:
    """Up to ``count`` more AVQA items on the clip of SynthAV AVQA sample ``seed`` (``raw`` = its item).

    ``types``: ``other`` (distinct question types, not the clip's own), ``any`` (types drawn with
    replacement, the clip's own included; never the clip's own question) or ``checked`` (drawn with
    replacement among the Audio / Visual existential types whose reasoning lists the clip's classes,
    :data:`~crab_core.training.layouts.CHECKED_TYPES`: the ``checked`` layout flags each listed
    class, so these items carry the flags' loss; ids ``{clip id}-c{k}``). Deterministic in ``seed``.
    The scene is rebuilt as :func:`crab_core.synthav.render_sample` builds it (same generator), so
    the questions are about exactly the rendered clip.
    """
    from ..synthav.annotate import TASKS as SYNTH_TASKS
    from ..synthav.annotate import build_target
    from ..synthav.avqa import scene_questions
    from ..synthav.generate import stratum
    from ..synthav.world import split_of_seed
    from .layouts import CHECKED_TYPES

    if types not in VARIANT_TYPES:
        raise ConfigError(f"AVQA variant types must be one of {VARIANT_TYPES}, got {types!r}")
    if raw.task != "avqa" or count <= 0:
        return []
    target = build_target(
        np.random.default_rng([seed, SYNTH_TASKS.index("avqa")]), "avqa", split_of_seed(seed), stratum(seed)
    )
    if target.output != raw.output:
        raise ConfigError(f"{raw.id}: the rebuilt AVQA scene does not match the rendered sample")
    letter, stream = _STREAM[types]
    rng = np.random.default_rng([seed, SYNTH_TASKS.index("avqa"), stream])
    spec = get_task("avqa")
    out = []
    other = types == "other"
    asked = scene_questions(
        target.scene,
        rng,
        count + (not other),
        exclude=raw.gt.get("question_type"),
        distinct_types=other,
        only=CHECKED_TYPES if types == "checked" else None,
    )
    asked = [q for q in asked if q[0] != target.question][:count]
    for k, (question, output, gt) in enumerate(asked):
        out.append(
            RawItem(
                id=f"{raw.id}-{letter}{k + 1}",
                task="avqa",
                prompt=build_prompt(spec, question=question),
                output=output,
                video=raw.video,
                audio=raw.audio,
                image=raw.image,
                mask=raw.mask,
                gt=gt,
                labels=raw.labels,
                media_of=raw.media_of or raw.id,
            )
        )
    return out


def add_question_variants(raws: list[RawItem], count: int, types: str = "other") -> list[RawItem]:
    """``count`` more questions per SynthAV AVQA item of ``raws`` (ids ``synthav-{seed}-avqa``), in order
    (``types``: see :func:`question_variants`); none that repeats a question ``raws`` already asks of
    the same clip (an earlier call's variants included)."""
    asked = {(r.media_of or r.id, r.prompt) for r in raws if r.task == "avqa"}
    out: list[RawItem] = []
    for raw in raws:
        if raw.task == "avqa" and count > 0 and raw.media_of is None and raw.id.startswith("synthav-"):
            seed = int(raw.id[len("synthav-") : -len("-avqa")])
            out += [v for v in question_variants(raw, seed, count, types) if (raw.id, v.prompt) not in asked]
    return out
