"""Sentence templates shared by the SynthAV task annotators (reasoning sentences, captions, tags).

The tag layouts follow Crab (crab-reference.md section 4); the reasoning sentences never contain
``(x,y)`` pairs or tags, so Crab's parsers read only the tagged result. The sentences used by seg
tasks never contain the word ``is`` (the seg parser reads the object from the first sentence with
``... is X``) nor an ``at the {nth} second`` other than the target second's; the AVQA-only ones
(:func:`sounds_sentence`, :func:`objects_sentence`) may, as the AVQA parser reads only the tag.
"""

from __future__ import annotations

from crab_core.tasks.prompts import MASK_SPAN, ORDINALS  # noqa: F401 - ORDINALS re-exported

from .world import NUM_SECONDS, Scene, SceneObject, runs

#: the answer's seg span and the ordinal words: the task prompts' own (one definition)
SEG_TOKENS = MASK_SPAN
WHERE = {"left": "on the left", "middle": "in the middle", "right": "on the right"}
NUMBERS: tuple[str, ...] = ("zero", "one", "two", "three", "four")
_VERBS = {
    "guitar": "is played",
    "violin": "is played",
    "flute": "is played",
    "drum": "is beaten",
    "piano": "is played",
    "trumpet": "is blown",
    "bell": "rings",
    "dog": "barks",
    "car": "rumbles",
    "bird": "chirps",
}


def article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


def join(items: list[str]) -> str:
    """``['a']`` -> ``a``; ``['a', 'b', 'c']`` -> ``a, b and c``."""
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def span(flags) -> str:
    """``from second 2 to 6 and from second 8 to 10`` for the runs of a boolean sequence."""
    return " and ".join(f"from second {s} to {e}" for s, e in runs(flags))


def seen_sentence(scene: Scene) -> str:
    """What is on screen, where and (when it is not the whole clip) when."""
    parts = []
    for o in scene.onscreen:
        when = "" if all(o.visible) else f" {span(o.visible)}"
        parts.append(f"{article(o.cls)} {o.cls} {WHERE[o.slot]}{when}")
    return f"I see {join(parts)}." if parts else "I see nothing."


def heard_sentence(scene: Scene) -> str:
    """What is heard and when, which sources are off-screen, and which visible objects are silent."""
    heard = [
        f"the {o.cls} {span(o.sounding)}"
        if o.onscreen
        else f"{article(o.cls)} {o.cls} off-screen {span(o.sounding)}"
        for o in scene.audible
    ]
    silent = [f"the {o.cls}" for o in scene.onscreen if not o.sounds]
    text = f"I hear {join(heard)}" if heard else "I hear only background noise"
    if silent:
        text += f", while {join(silent)} {'stays' if len(silent) == 1 else 'stay'} silent"
    return text + "."


def listing(names: list[str], plural: str, singular: str, none: str) -> str:
    """``The {plural} are a and b.``, ``The only {singular} is a.`` or ``{none}`` (no names)."""
    if not names:
        return none
    return f"The {plural} are {join(names)}." if len(names) > 1 else f"The only {singular} is {names[0]}."


def sounds_sentence(scene: Scene) -> str:
    """``The sounds are piano and drum.`` (every audible class, off-screen ones included)."""
    return listing([o.cls for o in scene.audible], "sounds", "sound", "Nothing sounds.")


def objects_sentence(scene: Scene) -> str:
    """``The objects seen are piano and drum.`` (every on-screen class, left to right)."""
    return listing([o.cls for o in scene.onscreen], "objects seen", "object seen", "Nothing is seen.")


def scene_sentences(scene: Scene) -> str:
    return f"{seen_sentence(scene)} {heard_sentence(scene)}"


def at_second_sentence(scene: Scene, t: int) -> str:
    """What sounds at second ``t`` (ordinal), and which visible objects stay silent then."""
    loud = [o for o in scene.objects if o.sounding[t]]
    quiet = [o for o in scene.onscreen if o.visible[t] and not o.sounding[t]]
    names = [
        f"the {o.cls} {WHERE[o.slot]}" if o.onscreen else f"{article(o.cls)} {o.cls} off-screen" for o in loud
    ]
    text = (
        f"At the {ORDINALS[t]} second I hear {join(names)}"
        if names
        else f"At the {ORDINALS[t]} second nothing sounds"
    )
    if quiet:
        text += (
            f", while {join([f'the {o.cls}' for o in quiet])} {'stays' if len(quiet) == 1 else 'stay'} silent"
        )
    return text + "."


def loudness_word(obj: SceneObject) -> str:
    return "loudly" if obj.gain_db >= -6 else ("softly" if obj.gain_db < -12 else "")


def caption(scene: Scene) -> str:
    """One or two sentences: what is on screen and whether it sounds; what is heard off-screen."""
    parts = []
    for o in scene.onscreen:
        if o.sounds:
            how = loudness_word(o)
            parts.append(
                f"{article(o.cls)} {o.cls} {WHERE[o.slot]} {_VERBS[o.cls]}{' ' + how if how else ''}"
            )
        else:
            parts.append(f"{article(o.cls)} silent {o.cls} stands {WHERE[o.slot]}")
    first = join(parts)
    text = first[0].upper() + first[1:] + "."
    off = [o for o in scene.objects if not o.onscreen and o.sounds]
    if off:
        o = off[0]
        text += f" {article(o.cls).capitalize()} {o.cls} {_VERBS[o.cls]} off-screen."
    return text


def onset_sentence(objs: list[SceneObject]) -> str:
    """``The guitar starts sounding at second 1 and the drum at second 4.``"""
    objs = sorted(objs, key=lambda o: o.onset)
    parts = [f"the {o.cls} at second {o.onset}" for o in objs]
    first = parts[0].replace(" at second", " starts sounding at second", 1)
    return "T" + join([first] + parts[1:])[1:] + "."


def segments(cls: str, start: int, end: int) -> list[str]:
    """AVE per-second labels: ``cls`` on ``[start, end)``, ``background`` elsewhere."""
    return [cls if start <= t < end else "background" for t in range(NUM_SECONDS)]
