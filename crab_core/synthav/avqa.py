"""SynthAV AVQA: MUSIC-AVQA-style questions with closed-vocabulary, balanced answers.

Balance. A sample's stratum (a number in [0, 1), a low-discrepancy sequence over a split) picks a
question *type* (each of the 12 types of :data:`QUESTION_TYPES` equally likely) and a target answer
from the type's answer set (yes/no 50/50, slots / numbers / classes uniform). Types with several
question forms (Audio-Visual/Location, Audio-Visual/Temporal) and existential hard negatives pick
their variant from the stratum too (once per sample, before the scene is rejection-sampled), so a
variant that is easier to satisfy is not over-represented.

Answers are bound to the question. Every reasoning first restates the question's entity
(``The question asks whether a violin is heard.``), then gives the evidence about THAT entity
(present / absent, its slot, its loudness, its onset), then concludes from it; the answer ends
with ``So the answer is <answer> {answer} </answer>.``. For example (Audio/Existential)::

    The question asks whether a violin is heard. The sounds are piano and drum. No violin is heard.
    So the answer is <answer> no </answer>.

Question types (``{modality}/{kind}``) and templates:

- Audio/Existential ``Can you hear a {c}?``; Visual/Existential ``Is there a {c} in the video?``;
  Audio-Visual/Existential ``Is there a visible {c} making sound?``
- Audio/Counting ``How many sound sources can be heard?``; Visual/Counting ``How many objects can
  be seen in the video?``; Audio-Visual/Counting ``How many visible objects are making sound?``
- Visual/Location ``Where is the {c}?``; Audio-Visual/Location ``Where is the loudest sounding
  object?`` / ``Where is the object that sounds first?``
- Audio-Visual/Temporal ``Which object sounds first?`` / ``... last?`` / ``What is the object to the
  left of the first sounding object?``; Audio/Temporal ``Does the {a} start sounding before the {b}?``
- Audio/Comparative ``Is the {a} louder than the {b}?``; Audio-Visual/Comparative ``Is the object
  {on the left} louder than the object {in the middle}?`` (gains differ by >= 6 dB).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from crab_core.errors import TaskError

from . import text as T
from .annotate import Target
from .world import CLASSES, LOUDNESS_MARGIN_DB, SLOTS, Scene, SceneObject, sample_scene

YES_NO = ("yes", "no")
#: (question, reasoning) or None when the scene cannot ask the question with the target answer
Asked = tuple[str, str] | None
#: ``ask(scene, rng, answer, u)``: ``u`` in [0, 1) is the sample's variant draw (fixed per sample)
Asker = Callable[[Scene, np.random.Generator, str, float], Asked]


def _pick(rng: np.random.Generator, items):
    return items[int(rng.integers(len(items)))] if items else None


def _where(o: SceneObject) -> str:
    return T.WHERE[o.slot] if o.onscreen else "off-screen"


def _exist_class(rng, ans: str, u: float, has: list[str], hard: list[str]) -> str | None:
    """Yes -> a class in ``has``; no -> a hard negative in ``hard`` (when ``u < 0.5``; None when the
    scene has none, so the sample is redrawn) or else a class absent from the scene."""
    if ans == "yes":
        return _pick(rng, has)
    present = set(has) | set(hard)
    return _pick(rng, hard if u < 0.5 else [c for c in CLASSES if c not in present])


def _hear(scene, rng, ans, u) -> Asked:
    has = [o.cls for o in scene.audible]
    c = _exist_class(rng, ans, u, has, [o.cls for o in scene.onscreen if not o.sounds])
    if c is None:
        return None
    o = scene.find(c)
    if ans == "yes":
        verdict = f"The {c} is heard."
    elif o is not None:
        verdict = f"The {c} is seen {_where(o)} but silent, so no {c} is heard."
    else:
        verdict = f"No {c} is heard."
    why = f"The question asks whether {T.article(c)} {c} is heard. {T.sounds_sentence(scene)} {verdict}"
    return f"Can you hear {T.article(c)} {c}?", why


def _see(scene, rng, ans, u) -> Asked:
    has = [o.cls for o in scene.onscreen]
    c = _exist_class(rng, ans, u, has, [o.cls for o in scene.objects if not o.onscreen])
    if c is None:
        return None
    o = scene.find(c)
    if ans == "yes":
        verdict = f"The {c} is seen {_where(o)}."
    elif o is not None:
        verdict = f"The {c} is only heard off-screen, so no {c} is seen."
    else:
        verdict = f"No {c} is seen."
    why = f"The question asks whether {T.article(c)} {c} is seen. {T.objects_sentence(scene)} {verdict}"
    return f"Is there {T.article(c)} {c} in the video?", why


def _see_hear(scene, rng, ans, u) -> Asked:
    yes = [o.cls for o in scene.onscreen if o.sounds]
    c = _exist_class(rng, ans, u, yes, [o.cls for o in scene.objects if o.onscreen != o.sounds])
    if c is None:
        return None
    o = scene.find(c)
    if o is None:
        verdict = f"No {c} is seen or heard."
    elif o.onscreen and o.sounds:
        verdict = f"The {c} is seen {_where(o)} and heard."
    elif o.onscreen:
        verdict = f"The {c} is seen {_where(o)} but silent."
    else:
        verdict = f"The {c} is heard off-screen but not seen."
    return (
        f"Is there a visible {c} making sound?",
        f"The question asks whether {T.article(c)} {c} is seen and heard. {verdict}",
    )


def _counter(
    question: str, asks: str, members: Callable[[Scene], list[SceneObject]], what: str, one: str
) -> Asker:
    """Counting: restate, list the counted objects' classes (``The {what} are ...``), conclude with
    the number."""

    def ask(scene, rng, ans, u) -> Asked:
        objs = members(scene)
        if T.NUMBERS[len(objs)] != ans:
            return None
        listed = T.listing([o.cls for o in objs], what, one, f"There are no {what}.")
        return question, f"The question asks how many {asks}. {listed} That makes {ans}."

    return ask


def _where_q(scene, rng, ans, u) -> Asked:
    o = scene.at_slot(ans)
    if o is None:
        return None
    return f"Where is the {o.cls}?", f"The question asks where the {o.cls} is. The {o.cls} is {T.WHERE[ans]}."


def _loudest(scene: Scene) -> SceneObject | None:
    objs = sorted(scene.audible, key=lambda o: -o.gain_db)
    if len(objs) >= 2 and objs[0].gain_db - objs[1].gain_db >= LOUDNESS_MARGIN_DB:
        return objs[0]
    return None


def _order(scene: Scene) -> list[SceneObject] | None:
    """Audible sources by onset, or None when fewer than two or two start together."""
    objs = sorted(scene.audible, key=lambda o: o.onset)
    onsets = [o.onset for o in objs]
    return objs if len(objs) >= 2 and len(set(onsets)) == len(onsets) else None


def _where_av(scene, rng, ans, u) -> Asked:
    if u < 0.5:
        o = _loudest(scene)
        if o is None or o.slot != ans:
            return None
        return "Where is the loudest sounding object?", (
            "The question asks where the loudest sounding object is. "
            f"The loudest sound comes from the {o.cls}. "
            f"The {o.cls} is {T.WHERE[ans]}."
        )
    order = _order(scene)
    if order is None or order[0].slot != ans:
        return None
    o = order[0]
    return "Where is the object that sounds first?", (
        f"The question asks where the object that sounds first is. {T.onset_sentence(order)} "
        f"The {o.cls} sounds first. The {o.cls} is {T.WHERE[ans]}."
    )


def _first_last(order: list[SceneObject], ans: str, first: bool) -> Asked:
    o = order[0] if first else order[-1]
    if o.cls != ans:
        return None
    word = "first" if first else "last"
    return (
        f"Which object sounds {word}?",
        f"The question asks which object sounds {word}. {T.onset_sentence(order)} The {o.cls} sounds {word}.",
    )


def _left_of_first(scene: Scene, order: list[SceneObject], ans: str) -> Asked:
    first = order[0]
    if not first.onscreen:
        return None
    idx = SLOTS.index(first.slot)
    left = [o for o in scene.onscreen if SLOTS.index(o.slot) < idx]
    if not left or left[-1].cls != ans:
        return None
    why = (
        "The question asks which object is to the left of the first sounding object. "
        f"{T.onset_sentence(order)} "
        f"The {first.cls} sounds first and is {T.WHERE[first.slot]}. "
        f"The {ans} is to the left of the {first.cls}."
    )
    return "What is the object to the left of the first sounding object?", why


def _temporal_av(scene, rng, ans, u) -> Asked:
    """Three forms, a third each: which sounds first / last, what is left of the first sounding."""
    order = _order(scene)
    if order is None:
        return None
    return _left_of_first(scene, order, ans) if u >= 2 / 3 else _first_last(order, ans, first=u < 1 / 3)


def _pair(scene, rng, ans, objs: list[SceneObject], ok: Callable, key: Callable) -> tuple | None:
    """A pair (a, b) from ``objs`` with ``ok(a, b)``, ordered so that ``key(a) > key(b)`` iff yes."""
    pairs = [(a, b) for i, a in enumerate(objs) for b in objs[i + 1 :] if ok(a, b)]
    pair = _pick(rng, pairs)
    if pair is None:
        return None
    hi, lo = sorted(pair, key=key, reverse=True)
    return (hi, lo) if ans == "yes" else (lo, hi)


def _margin(a: SceneObject, b: SceneObject) -> bool:
    return abs(a.gain_db - b.gain_db) >= LOUDNESS_MARGIN_DB


def _compare(a: SceneObject, b: SceneObject) -> str:
    return f"The {a.cls} sounds {'louder' if a.gain_db > b.gain_db else 'softer'} than the {b.cls}."


def _louder(scene, rng, ans, u) -> Asked:
    p = _pair(scene, rng, ans, scene.audible, _margin, lambda o: o.gain_db)
    if p is None:
        return None
    a, b = p
    return (
        f"Is the {a.cls} louder than the {b.cls}?",
        f"The question asks whether the {a.cls} is louder than the {b.cls}. {_compare(a, b)}",
    )


def _louder_av(scene, rng, ans, u) -> Asked:
    objs = [o for o in scene.onscreen if o.sounds]
    p = _pair(scene, rng, ans, objs, _margin, lambda o: o.gain_db)
    if p is None:
        return None
    a, b = p
    wa, wb = T.WHERE[a.slot], T.WHERE[b.slot]
    why = (
        f"The question asks whether the object {wa} is louder than the object {wb}. The object {wa} is the "
        f"{a.cls} and the object {wb} is the {b.cls}. {_compare(a, b)}"
    )
    return f"Is the object {wa} louder than the object {wb}?", why


def _before(scene, rng, ans, u) -> Asked:
    p = _pair(scene, rng, ans, scene.audible, lambda a, b: a.onset != b.onset, lambda o: -o.onset)
    if p is None:
        return None
    a, b = p
    when = "before" if a.onset < b.onset else "after"
    why = (
        f"The question asks whether the {a.cls} starts sounding before the {b.cls}. The {a.cls} starts "
        f"sounding at second {a.onset} and the {b.cls} at second {b.onset}. The {a.cls} starts {when} the "
        f"{b.cls}."
    )
    return f"Does the {a.cls} start sounding before the {b.cls}?", why


_NUM3 = T.NUMBERS[1:4]
#: (question_type, answer vocabulary, asker, whether the answer is a class to put on screen)
KINDS: tuple[tuple[str, tuple[str, ...], Asker, bool], ...] = (
    ("Audio/Existential", YES_NO, _hear, False),
    ("Visual/Existential", YES_NO, _see, False),
    ("Audio-Visual/Existential", YES_NO, _see_hear, False),
    (
        "Audio/Counting",
        _NUM3,
        _counter(
            "How many sound sources can be heard?",
            "sound sources are heard",
            lambda s: s.audible,
            "sounds",
            "sound",
        ),
        False,
    ),
    (
        "Visual/Counting",
        _NUM3,
        _counter(
            "How many objects can be seen in the video?",
            "objects are seen",
            lambda s: s.onscreen,
            "objects seen",
            "object seen",
        ),
        False,
    ),
    (
        "Audio-Visual/Counting",
        T.NUMBERS[:4],
        _counter(
            "How many visible objects are making sound?",
            "visible objects make sound",
            lambda s: [o for o in s.onscreen if o.sounds],
            "visible objects making sound",
            "visible object making sound",
        ),
        False,
    ),
    ("Visual/Location", SLOTS, _where_q, False),
    ("Audio-Visual/Location", SLOTS, _where_av, False),
    ("Audio-Visual/Temporal", CLASSES, _temporal_av, True),
    ("Audio/Temporal", YES_NO, _before, False),
    ("Audio/Comparative", YES_NO, _louder, False),
    ("Audio-Visual/Comparative", YES_NO, _louder_av, False),
)
QUESTION_TYPES: tuple[str, ...] = tuple(k[0] for k in KINDS)


def planned(stratum: float) -> tuple[str, str, float]:
    """``(question_type, answer, u)`` that a sample of ``stratum`` in [0, 1) asks (nothing is
    rendered): the type is which 12th, the answer which part of it, ``u`` in [0, 1) where inside that
    part (the type's variant: equidistributed too over a low-discrepancy sequence of strata)."""
    x = stratum * len(KINDS)
    qtype, answers = KINDS[min(int(x), len(KINDS) - 1)][:2]
    y = (x - int(x)) * len(answers)
    return qtype, answers[min(int(y), len(answers) - 1)], y - int(y)


def build_avqa(rng: np.random.Generator, split: str, stratum: float, max_tries: int = 2000) -> Target:
    """Pick a question type, a target answer and the type's variant from ``stratum`` in [0, 1)
    (type = which 12th, answer = which part of it, variant = where inside that part), then
    rejection-sample a scene whose true answer is the target.

    Raises:
        TaskError: no scene gave the target answer in ``max_tries`` tries.
    """
    qtype, ans, u = planned(stratum)
    _, _, ask, class_answer = KINDS[QUESTION_TYPES.index(qtype)]
    for _ in range(max_tries):
        scene = sample_scene(rng, split, include=ans if class_answer else None)
        asked = ask(scene, rng, ans, u)
        if asked is not None:
            question, why = asked
            out = f"{why} So the answer is <answer> {ans} </answer>."
            return Target(scene, out, {"answer": ans, "question_type": qtype}, question=question)
    raise TaskError(f"could not build an AVQA {qtype} sample with answer {ans!r} in {max_tries} tries")


def scene_questions(
    scene: Scene,
    rng: np.random.Generator,
    count: int,
    exclude: str | None = None,
    distinct_types: bool = True,
    only: tuple[str, ...] | None = None,
) -> list[tuple[str, str, dict]]:
    """More questions about one scene: ``count`` question types (distinct and not ``exclude``, or,
    with ``distinct_types=False``, drawn with replacement among all types), each with an answer the
    scene supports; never the same question twice.

    Several questions on the same clip with different answers make the answer depend on the
    question and not on the clip alone (crab-tiny v5 often restates a wrong entity:
    ``benchmarks/results/avqa_binding.md``). ``only``: draw among these question types alone. A
    yes / no type draws its answer first (50 / 50) and is skipped when the scene cannot give it; the
    other types take the answer the scene gives.

    Returns:
        ``[(question, output, gt)]`` with ``gt = {"answer", "question_type"}``; fewer than ``count``
        when the scene cannot ask enough types.
    """
    pool = [k for k in KINDS if only is None or k[0] in only]
    kinds = [k for k in pool if k[0] != exclude] if distinct_types else pool
    order = rng.permutation(len(kinds)) if distinct_types else rng.integers(len(kinds), size=4 * count)
    out: list[tuple[str, str, dict]] = []
    for i in order:
        qtype, answers, ask, _ = kinds[int(i)]
        if answers == YES_NO:  # the answer first (50/50), then up to 4 variant draws; else skip the type
            ans = answers[int(rng.integers(2))]
            tries = [(ans, float(rng.random())) for _ in range(4)]
        else:  # the scene decides the answer: try each in random order
            u = float(rng.random())
            tries = [(answers[int(j)], u) for j in rng.permutation(len(answers))]
        for ans, u in tries:
            asked = ask(scene, rng, ans, u)
            if asked is not None and all(asked[0] != q for q, _, _ in out):
                question, why = asked
                output = f"{why} So the answer is <answer> {ans} </answer>."
                out.append((question, output, {"answer": ans, "question_type": qtype}))
                break
        if len(out) == count:
            break
    return out
