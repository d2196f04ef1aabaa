"""Answer layouts for our own training targets (SynthAV AVVP and AVQA), all read by Crab's parsers.

SynthAV writes AVVP answers the reference way: a reasoning sentence per modality with every
event's time runs, then one tag per event with its runs (``<audio_event>dog,(0 3)(5 10)</audio_event>``).
For a small LLM that is two hard lookups per event: the first and the last second of each run of
a class. crab-tiny v5 reads an audio second's classes from its tokens at F1 0.96 (linear probe), yet
its audio tags reach 0.61 segment F1, 0.68 even on training items (``benchmarks/results/
signal_paths.md``, ``llm_side.md``): it copies one run to every class.

The ``seconds`` layout (``DataSpec.avvp_layout``) keeps the visual part and rewrites the audio
part as a scan in time order: the sentence ``I hear ...`` becomes the list of audible classes, and
each audible second of each class gets its own one-second tag, seconds in order, classes in the
scene's order within a second::

    ... The sounds are guitar and violin. The audio events are <audio_event>guitar,(5 6)</audio_event>
    <audio_event>violin,(5 6)</audio_event> <audio_event>guitar,(6 7)</audio_event> ...

Every decision is then local: which classes sound at second ``t``. The parser merges a class's
tags, so the segment- and event-level metrics read it as the merged runs (the scores of the
reference layout and of this one are equal for the same events).

The ``checked`` AVQA layout (``DataSpec.avqa_layout``) rewrites the Audio / Visual existential
answers, whose evidence is a list of the clip's classes, so that each listed class is followed by
whether it is the asked one::

    The question asks whether a violin is heard. The sounds are piano (no) and drum (no). No violin
    is heard. So the answer is <answer> no </answer>.

crab-tiny answers "yes" to most such questions whose class is absent, though it lists the clip's
classes right, and its states at the decision do not hold the answer (``benchmarks/results/
avqa_decision_probe.md``): the question names the class before the list, so "has this class been
seen?" is true at the decision whatever the list holds. A fresh LLM of crab-tiny's geometry learns
that whole-list test slowly or not at all at the recipe's LR, and the per-item form (each flag a
comparison of two words, the decision an "any flag says yes") at once (``benchmarks/results/
llm_membership_layouts.md``). Only the list sentence changes; the answer tag is the same.
"""

from __future__ import annotations

import dataclasses

from ..errors import ConfigError
from ..synthav.text import join, listing
from .data import RawItem

AVVP_LAYOUTS = ("ranges", "seconds")
AVQA_LAYOUTS = ("reference", "checked")
#: the existential types whose reasoning lists the clip's classes: (verb of the restatement, list forms)
_LISTED = {
    "Audio/Existential": ("heard", ("The sounds are ", "The only sound is ")),
    "Visual/Existential": ("seen", ("The objects seen are ", "The only object seen is ")),
}
#: the AVQA question types the ``checked`` layout flags
CHECKED_TYPES: tuple[str, ...] = tuple(_LISTED)
_AUDIO = " The audio events are "
_VISUAL = ", and the visual events are "


def audio_seconds_tags(audio: list[dict]) -> str:
    """``[{"event", "ranges"}]`` -> one ``<audio_event>cls,(t t+1)</audio_event>`` per audible second,
    seconds in order, the events' order within a second ("" when nothing sounds)."""
    seconds = sorted({t for ev in audio for s, e in ev["ranges"] for t in range(s, e)})
    tags = [
        f"<audio_event>{ev['event']},({t} {t + 1})</audio_event>"
        for t in seconds
        for ev in audio
        if any(s <= t < e for s, e in ev["ranges"])
    ]
    return " ".join(tags)


def avvp_seconds_output(output: str, gt: dict) -> str:
    """A SynthAV AVVP target (reference layout) rewritten in the ``seconds`` layout (module docstring).

    Raises:
        ConfigError: ``output`` is not a SynthAV AVVP target (no ``I hear`` sentence or no tags).
    """
    hear, audio_at, visual_at = output.find(" I hear "), output.find(_AUDIO), output.find(_VISUAL)
    if min(hear, audio_at, visual_at) < 0 or not hear < audio_at < visual_at:
        raise ConfigError(f"not a SynthAV AVVP answer: {output[:80]!r}")
    audio = gt.get("audio", [])
    sounds = listing([ev["event"] for ev in audio], "sounds", "sound", "Nothing sounds.")
    tags = audio_seconds_tags(audio)
    return f"{output[:hear]} {sounds}{_AUDIO}{tags}{output[visual_at:]}"


def apply_avvp_layout(raws: list[RawItem], layout: str) -> list[RawItem]:
    """``raws`` with every SynthAV AVVP target in ``layout`` (``ranges``: unchanged)."""
    if layout not in AVVP_LAYOUTS:
        raise ConfigError(f"unknown AVVP layout {layout!r}; choose one of {AVVP_LAYOUTS}")
    if layout == "ranges":
        return raws
    return [
        dataclasses.replace(r, output=avvp_seconds_output(r.output, r.gt))
        if r.task == "avvp" and r.id.startswith("synthav-")
        else r
        for r in raws
    ]


def avqa_checked_output(output: str, question_type: str) -> str:
    """A SynthAV AVQA target rewritten in the ``checked`` layout (module docstring); other question
    types and an empty list (``Nothing sounds.``) come back unchanged.

    Raises:
        ConfigError: an Audio / Visual existential ``output`` that is not a SynthAV answer.
    """
    if question_type not in _LISTED:
        return output
    verb, forms = _LISTED[question_type]
    first, _, rest = output.partition(". ")
    words = first.split()
    if words[:4] != ["The", "question", "asks", "whether"] or words[-2:] != ["is", verb] or len(words) != 8:
        raise ConfigError(f"not a SynthAV {question_type} answer: {output[:80]!r}")
    asked = words[5]
    form = next((f for f in forms if rest.startswith(f)), None)
    if form is None:
        return output
    listed, dot, tail = rest[len(form) :].partition(".")
    names = listed.replace(" and ", ", ").split(", ")
    if not dot or any(not n or " " in n for n in names):
        raise ConfigError(f"not a SynthAV {question_type} answer: {output[:80]!r}")
    flagged = join([f"{n} ({'yes' if n == asked else 'no'})" for n in names])
    return f"{first}. {form}{flagged}.{tail}"


def apply_layouts(raws: list[RawItem], avvp: str = "ranges", avqa: str = "reference") -> list[RawItem]:
    """``raws`` with every SynthAV AVVP target in the ``avvp`` layout and every SynthAV AVQA target in
    the ``avqa`` layout (``ranges`` / ``reference``: unchanged)."""
    if avqa not in AVQA_LAYOUTS:
        raise ConfigError(f"unknown AVQA layout {avqa!r}; choose one of {AVQA_LAYOUTS}")
    raws = apply_avvp_layout(raws, avvp)
    if avqa == "reference":
        return raws
    return [
        dataclasses.replace(r, output=avqa_checked_output(r.output, r.gt.get("question_type", "")))
        if r.task == "avqa" and r.id.startswith("synthav-")
        else r
        for r in raws
    ]
