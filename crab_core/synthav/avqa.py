"""SynthAV AVQA: MUSIC-AVQA-style questions with closed-vocabulary, balanced answers.

A sample's stratum (a number in [0, 1), a low-discrepancy sequence over a split) picks a question
kind and a target answer from the kind's answer set, so kinds and answers are spread evenly (yes/no
is 50/50 and no class, number or side dominates a question type by construction); scenes are then
rejection-sampled until the kind can ask a question whose true answer is the target.

Question types (``{modality}/{kind}``) and templates:

- Audio/Existential ``Can you hear a {c}?``; Visual/Existential ``Is there a {c} in the video?``;
  Audio-Visual/Existential ``Is there a visible {c} making sound?``
- Audio/Counting ``How many sound sources can be heard?``; Visual/Counting ``How many objects can
  be seen in the video?``; Audio-Visual/Counting ``How many visible objects are making sound?``
- Visual/Location ``Where is the {c}?``; Audio-Visual/Location ``Where is the loudest sounding
  object?`` / ``Where is the object that sounds first?``
- Audio-Visual/Temporal ``Which object sounds first?`` / ``... last?`` and ``What is the object to the
  left of the first sounding object?``; Audio/Temporal ``Does the {a} start sounding before the {b}?``
- Audio/Comparative ``Is the {a} louder than the {b}?``; Audio-Visual/Comparative ``Is the object
  {on the left} louder than the object {in the middle}?`` (gains differ by >= 6 dB).

Answers end with ``So the answer is <answer> {answer} </answer>.``
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from crab_core.errors import TaskError

from . import text as T
from .annotate import Target
from .world import CLASSES, LOUDNESS_MARGIN_DB, SLOTS, Scene, SceneObject, sample_scene

YES_NO = ("yes", "no")
Asked = tuple[str, str] | None  # (question, reasoning) or None when the scene cannot ask it


def _pick(rng: np.random.Generator, items):
    return items[int(rng.integers(len(items)))] if items else None


def _exist(scene: Scene, rng: np.random.Generator, ans: str, has: list[str], hard: list[str],
           template: str, why: str) -> Asked:
    """Existential helper: yes -> a class in ``has``; no -> a hard negative (half the time) or absent."""
    if ans == "yes":
        c = _pick(rng, has)
    else:
        pool = hard if hard and rng.random() < 0.5 else [c for c in CLASSES if c not in has]
        c = _pick(rng, pool)
    return (template.format(a=T.article(c), c=c), why) if c else None


def _hear(scene, rng, ans) -> Asked:
    has = [o.cls for o in scene.audible]
    hard = [o.cls for o in scene.onscreen if not o.sounds]
    return _exist(scene, rng, ans, has, hard, "Can you hear {a} {c}?", T.heard_sentence(scene))


def _see(scene, rng, ans) -> Asked:
    has = [o.cls for o in scene.onscreen]
    hard = [o.cls for o in scene.objects if not o.onscreen]
    return _exist(scene, rng, ans, has, hard, "Is there {a} {c} in the video?", T.seen_sentence(scene))


def _see_hear(scene, rng, ans) -> Asked:
    yes = [o.cls for o in scene.onscreen if o.sounds]
    no = [o.cls for o in scene.objects if o.onscreen != o.sounds]
    c = _pick(rng, yes if ans == "yes" else no)
    return (f"Is there a visible {c} making sound?", T.scene_sentences(scene)) if c else None


def _counter(question: str, count: Callable[[Scene], int], why: Callable[[Scene], str]):
    def ask(scene, rng, ans) -> Asked:
        return (question, why(scene)) if T.NUMBERS[count(scene)] == ans else None
    return ask


def _where(scene, rng, ans) -> Asked:
    o = scene.at_slot(ans)
    return (f"Where is the {o.cls}?", f"The {o.cls} is {T.WHERE[ans]}.") if o else None


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


def _where_av(scene, rng, ans) -> Asked:
    if rng.random() < 0.5:
        o = _loudest(scene)
        if o is None or o.slot != ans:
            return None
        return "Where is the loudest sounding object?", f"The loudest sound comes from the {o.cls} {T.WHERE[ans]}."
    order = _order(scene)
    if order is None or order[0].slot != ans:
        return None
    return ("Where is the object that sounds first?",
            f"{T.onset_sentence(order)} The {order[0].cls} is {T.WHERE[ans]}.")


def _first_last(scene, rng, ans) -> Asked:
    order = _order(scene)
    if order is None:
        return None
    first = rng.random() < 0.5
    o = order[0] if first else order[-1]
    return (f"Which object sounds {'first' if first else 'last'}?", T.onset_sentence(order)) if o.cls == ans else None


def _left_of_first(scene, rng, ans) -> Asked:
    order = _order(scene)
    if order is None or not order[0].onscreen:
        return None
    idx = SLOTS.index(order[0].slot)
    left = [o for o in scene.onscreen if SLOTS.index(o.slot) < idx]
    if not left or left[-1].cls != ans:
        return None
    why = f"{T.onset_sentence(order)} The {left[-1].cls} is to the left of the {order[0].cls}."
    return "What is the object to the left of the first sounding object?", why


def _pair(scene, rng, ans, objs: list[SceneObject], ok: Callable, key: Callable) -> tuple | None:
    """A pair (a, b) from ``objs`` with ``ok(a, b)``, ordered so that ``key(a) > key(b)`` iff yes."""
    pairs = [(a, b) for i, a in enumerate(objs) for b in objs[i + 1:] if ok(a, b)]
    pair = _pick(rng, pairs)
    if pair is None:
        return None
    hi, lo = sorted(pair, key=key, reverse=True)
    return (hi, lo) if ans == "yes" else (lo, hi)


def _margin(a: SceneObject, b: SceneObject) -> bool:
    return abs(a.gain_db - b.gain_db) >= LOUDNESS_MARGIN_DB


def _louder(scene, rng, ans) -> Asked:
    p = _pair(scene, rng, ans, scene.audible, _margin, lambda o: o.gain_db)
    if p is None:
        return None
    hi, lo = sorted(p, key=lambda o: -o.gain_db)
    return f"Is the {p[0].cls} louder than the {p[1].cls}?", f"The {hi.cls} sounds louder than the {lo.cls}."


def _louder_av(scene, rng, ans) -> Asked:
    objs = [o for o in scene.onscreen if o.sounds]
    p = _pair(scene, rng, ans, objs, _margin, lambda o: o.gain_db)
    if p is None:
        return None
    hi, lo = sorted(p, key=lambda o: -o.gain_db)
    q = f"Is the object {T.WHERE[p[0].slot]} louder than the object {T.WHERE[p[1].slot]}?"
    return q, f"The {hi.cls} {T.WHERE[hi.slot]} sounds louder than the {lo.cls} {T.WHERE[lo.slot]}."


def _before(scene, rng, ans) -> Asked:
    p = _pair(scene, rng, ans, scene.audible, lambda a, b: a.onset != b.onset, lambda o: -o.onset)
    if p is None:
        return None
    return f"Does the {p[0].cls} start sounding before the {p[1].cls}?", T.onset_sentence(list(p))


_NUM3 = T.NUMBERS[1:4]
#: (question_type, answer vocabulary, asker, whether the answer is a class to put on screen)
KINDS: tuple[tuple[str, tuple[str, ...], Callable, bool], ...] = (
    ("Audio/Existential", YES_NO, _hear, False),
    ("Visual/Existential", YES_NO, _see, False),
    ("Audio-Visual/Existential", YES_NO, _see_hear, False),
    ("Audio/Counting", _NUM3, _counter("How many sound sources can be heard?", lambda s: len(s.audible),
                                       T.heard_sentence), False),
    ("Visual/Counting", _NUM3, _counter("How many objects can be seen in the video?",
                                        lambda s: len(s.onscreen), T.seen_sentence), False),
    ("Audio-Visual/Counting", T.NUMBERS[:4], _counter(
        "How many visible objects are making sound?", lambda s: sum(o.sounds for o in s.onscreen),
        T.scene_sentences), False),
    ("Visual/Location", SLOTS, _where, False),
    ("Audio-Visual/Location", SLOTS, _where_av, False),
    ("Audio-Visual/Temporal", CLASSES, _first_last, True),
    ("Audio-Visual/Temporal", CLASSES, _left_of_first, True),
    ("Audio/Temporal", YES_NO, _before, False),
    ("Audio/Comparative", YES_NO, _louder, False),
    ("Audio-Visual/Comparative", YES_NO, _louder_av, False),
)


def build_avqa(rng: np.random.Generator, split: str, stratum: float, max_tries: int = 2000) -> Target:
    """Pick a question kind and a target answer from ``stratum`` in [0, 1) (kind = which 13th,
    answer = where inside it), then rejection-sample a scene whose true answer is the target."""
    x = stratum * len(KINDS)
    qtype, answers, ask, class_answer = KINDS[min(int(x), len(KINDS) - 1)]
    ans = answers[min(int((x - int(x)) * len(answers)), len(answers) - 1)]
    for _ in range(max_tries):
        scene = sample_scene(rng, split, include=ans if class_answer else None)
        asked = ask(scene, rng, ans)
        if asked is not None:
            question, why = asked
            out = f"{why} So the answer is <answer> {ans} </answer>."
            return Target(scene, out, {"answer": ans, "question_type": qtype}, question=question)
    raise TaskError(f"could not build an AVQA {qtype} sample with answer {ans!r} in {max_tries} tries")
