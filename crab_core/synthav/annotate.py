"""Per-task targets (question, Crab-format answer text, structured ``gt``) built from a scene's truth.

Each builder samples a scene suited to its task (through :func:`world.sample_scene`, so the split's
compositional rule always holds), then derives every label from the per-second ground truth. Mask
targets are returned as a list of object indices plus a format; the pixels are drawn by the
renderer at the requested image size (see ``generate.render_sample``).

Clip lengths come from :data:`world.CLIP_SECONDS`: S4, MS3 and ARIG scenes last 5 s (target second
``frame_index`` in 0..4, named ``first`` .. ``fifth``), all other tasks 10 s.

Answer layouts (the tag formats of crab-reference.md section 4, each after a reasoning sentence):

- AVE: ``... the audible and visible event in the video is <event> drum </event>, and the time range
  is <range> 2,6 </range>.`` (``[start, end)`` seconds)
- AVVP: ``<audio_event>dog,(0 3)(5 10)</audio_event>`` and ``<visual_event>...</visual_event>`` blocks.
- ARIG: ``The sounding object is X. Its coordinate of top left corner is (x1,y1) and coordinate of
  bottom right corner is (x2,y2)`` in 224-pixel coordinates.
- S4 / MS3 / AVSS: ``The object making the sound in the video is X. The mask of the object that
  makes the sound at the {nth} second is <mask_start><mask_0>...<mask_5><mask_end>`` (several
  objects: ``X and Y``).
- Ref-AVS: ``At the {nth} second in the video, {exp} is X. Its mask is <mask_start>...<mask_end>``
  (``X`` = ``nothing`` for a null expression).

Every output parses with :func:`crab_core.tasks.parse` (the contract;
``tests/synthav/test_synthav_parsers.py``).
- AVQA: see :mod:`crab_core.synthav.avqa`; caption: one or two plain sentences.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from crab_core.errors import TaskError

from . import text as T
from .render_video import object_box
from .world import (
    CLASSES,
    LOUDNESS_MARGIN_DB,
    SLOTS,
    Scene,
    clip_seconds,
    random_runs,
    runs,
    sample_scene,
)

TASKS: tuple[str, ...] = ("ave", "avvp", "avqa", "arig", "s4", "ms3", "avss", "ref-avs", "caption")
_MAX_TRIES = 500


@dataclass
class Target:
    """A task sample without pixels.

    Attributes:
        scene: the sampled scene.
        output: answer text in Crab's format.
        gt: structured ground truth (``docs/manifest.md``); seg tasks leave ``mask`` to the writer.
        question: AVQA question or Ref-AVS expression.
        frame_index: target second of ARIG / seg tasks.
        mask_objects: indices (into ``scene.objects``) of the objects in the target mask.
        mask_format: ``'binary'`` or ``'index'`` (class k -> pixel k + 1) for seg tasks.
    """

    scene: Scene
    output: str
    gt: dict
    question: str | None = None
    frame_index: int | None = None
    mask_objects: list[int] = field(default_factory=list)
    mask_format: str | None = None


def _retry(build: Callable[[], Target | None]) -> Target:
    for _ in range(_MAX_TRIES):
        target = build()
        if target is not None:
            return target
    raise TaskError(f"could not build a sample in {_MAX_TRIES} tries")


def _pick(rng: np.random.Generator, items):
    return items[int(rng.integers(len(items)))]


def _set_sounding(scene: Scene, i: int, sounding) -> Scene:
    objs = list(scene.objects)
    objs[i] = dataclasses.replace(objs[i], sounding=tuple(bool(x) for x in sounding))
    return dataclasses.replace(scene, objects=tuple(objs))


def build_ave(rng: np.random.Generator, split: str, stratum: float) -> Target:
    """One audio-visual event (a visible object sounding over one run); other on-screen objects
    are silent, an off-screen source may sound at any time."""
    cls = CLASSES[int(stratum * len(CLASSES))]
    scene = sample_scene(rng, split, include=cls, silent_prob=1.0, require_audible=False)
    i = next(k for k, o in enumerate(scene.objects) if o.cls == cls)
    lo = scene.objects[i].visible.index(True)
    hi = lo + sum(scene.objects[i].visible)
    s = int(rng.integers(lo, hi - 1)) if hi - lo >= 2 else lo
    e = int(rng.integers(s + min(2, hi - s), hi + 1))
    scene = _set_sounding(scene, i, [s <= t < e for t in range(scene.num_seconds)])
    out = (
        f"{T.scene_sentences(scene)} So the audible and visible event in the video is "
        f"<event> {cls} </event>, "
        f"and the time range is <range> {s},{e} </range>."
    )
    return Target(scene, out, {"event": cls, "range": [s, e], "segments": T.segments(cls, s, e)})


def build_avvp(rng: np.random.Generator, split: str, stratum: float) -> Target:
    """Every audio event (sounding runs, off-screen included) and visual event (visible runs)."""
    scene = sample_scene(rng, split)
    audio = [{"event": o.cls, "ranges": runs(o.sounding)} for o in scene.audible]
    visual = [{"event": o.cls, "ranges": runs(o.visible)} for o in scene.onscreen]

    def blocks(tag: str, events: list[dict]) -> str:
        return " ".join(
            f"<{tag}>{ev['event']}," + "".join(f"({s} {e})" for s, e in ev["ranges"]) + f"</{tag}>"
            for ev in events
        )

    out = (
        f"{T.scene_sentences(scene)} The audio events are {blocks('audio_event', audio)}, "
        f"and the visual events are {blocks('visual_event', visual)}."
    )
    return Target(scene, out, {"audio": audio, "visual": visual, "num_segments": scene.num_seconds})


def build_arig(rng: np.random.Generator, split: str, stratum: float) -> Target:
    """A second (0..4 of a 5-s clip) at which exactly one source sounds, and it is on screen: its class
    and box (the object is static, so its box is the same in every frame it is visible in)."""
    cls = CLASSES[int(stratum * len(CLASSES))]

    def once() -> Target | None:
        scene = sample_scene(rng, split, include=cls, num_seconds=clip_seconds("arig"))
        i = next(k for k, o in enumerate(scene.objects) if o.cls == cls)
        alone = [
            t
            for t in range(scene.num_seconds)
            if scene.objects[i].sounding[t] and sum(o.sounding[t] for o in scene.objects) == 1
        ]
        if not alone:
            return None
        t = _pick(rng, alone)
        x1, y1, x2, y2 = box = object_box(scene.objects[i])
        out = (
            f"{T.at_second_sentence(scene, t)} The sounding object is {cls}. Its coordinate of top left "
            f"corner is ({x1},{y1}) and coordinate of bottom right corner is ({x2},{y2})"
        )
        return Target(scene, out, {"object": cls, "box": box}, frame_index=t, mask_objects=[i])

    return _retry(once)


def _seg_text(names: list[str], t: int) -> str:
    """The reference's S4 / MS3 answer layout (``tasks.render_target``); several objects are joined
    with ``and`` (the ``gt['object']`` of MS3), nothing is written ``nothing``."""
    subject = f"The object making the sound in the video is {' and '.join(names) if names else 'nothing'}."
    return (
        f"{subject} The mask of the object that makes the sound at the {T.ORDINALS[t]} second is "
        f"{T.SEG_TOKENS}"
    )


def build_s4(rng: np.random.Generator, split: str, stratum: float) -> Target:
    """One sounding object (other on-screen objects silent, nothing off-screen); the mask at a
    second is the object where it sounds then, empty otherwise (15 % of samples when possible)."""
    cls = CLASSES[int(stratum * len(CLASSES))]
    n = clip_seconds("s4")
    scene = sample_scene(
        rng, split, include=cls, offscreen_prob=0.0, silent_prob=1.0, require_audible=False, num_seconds=n
    )
    i = next(k for k, o in enumerate(scene.objects) if o.cls == cls)
    lo = scene.objects[i].visible.index(True)
    scene = _set_sounding(scene, i, random_runs(rng, lo, lo + sum(scene.objects[i].visible), num_seconds=n))
    on = [t for t in range(n) if scene.objects[i].sounding[t]]
    off = [t for t in range(n) if not scene.objects[i].sounding[t]]
    t = _pick(rng, off) if off and rng.random() < 0.15 else _pick(rng, on)
    objs = [i] if scene.objects[i].sounding[t] else []
    out = f"{T.at_second_sentence(scene, t)} {_seg_text([cls], t)}"
    return Target(
        scene,
        out,
        {"mask": None, "object": cls, "null": False},
        frame_index=t,
        mask_objects=objs,
        mask_format="binary",
    )


def _multi_seg(rng: np.random.Generator, split: str, task: str) -> Target:
    """MS3 (2-3 objects, at least two sound) or AVSS (1-3 objects, off-screen sources allowed)."""
    ms3 = task == "ms3"

    def once() -> Target | None:
        scene = sample_scene(
            rng,
            split,
            n_visible=(2, 3) if ms3 else (1, 3),
            offscreen_prob=0.0 if ms3 else 0.3,
            silent_prob=0.15 if ms3 else 0.25,
            num_seconds=clip_seconds(task),
        )
        if ms3 and sum(o.sounds for o in scene.onscreen) < 2:
            return None
        counts = [sum(o.sounding[t] for o in scene.onscreen) for t in range(scene.num_seconds)]
        good = [t for t in range(scene.num_seconds) if counts[t] >= 1]
        many = [t for t in good if counts[t] >= 2]
        if not good:
            return None
        t = _pick(rng, many if many and rng.random() < 0.7 else good)
        objs = [k for k, o in enumerate(scene.objects) if o.onscreen and o.sounding[t]]
        names = [scene.objects[k].cls for k in objs]
        gt = {"mask": None, "object": " and ".join(names), "null": False, "objects": names}
        if not ms3:
            gt = {"mask": None, "mask_format": "index", "objects": names}
        out = f"{T.at_second_sentence(scene, t)} {_seg_text(names, t)}"
        return Target(
            scene, out, gt, frame_index=t, mask_objects=objs, mask_format="binary" if ms3 else "index"
        )

    return _retry(once)


def _ref_positive(scene: Scene, rng: np.random.Generator, kind: str) -> tuple[str, int] | None:
    objs = list(scene.objects)
    vis = [k for k, o in enumerate(objs) if o.onscreen]
    loud = [k for k in vis if objs[k].sounds]
    if kind in ("class", "slot"):
        if not loud:
            return None
        k = _pick(rng, loud)
        name = (
            f"the {objs[k].cls} that is making sound"
            if kind == "class"
            else f"the sounding object {T.WHERE[objs[k].slot]}"
        )
        return name, k
    if kind in ("leftmost", "rightmost"):
        if len(vis) < 2 or not loud:
            return None
        return f"the {kind} sounding object", (loud[0] if kind == "leftmost" else loud[-1])
    if kind == "silent":
        quiet = [k for k in vis if not objs[k].sounds]
        return ("the silent object", quiet[0]) if len(quiet) == 1 and len(vis) >= 2 else None
    gains = sorted(((o.gain_db, k) for k, o in enumerate(objs) if o.sounds), reverse=True)
    if kind == "loudest":
        ok = (
            len(gains) >= 2 and gains[0][0] - gains[1][0] >= LOUDNESS_MARGIN_DB and objs[gains[0][1]].onscreen
        )
        return ("the object making the loudest sound", gains[0][1]) if ok else None
    order = sorted((o.onset, k) for k, o in enumerate(objs) if o.sounds)
    onsets = [s for s, _ in order]
    if len(order) < 2 or len(set(onsets)) != len(onsets):
        return None
    if kind == "first":
        return ("the object that sounds first", order[0][1]) if objs[order[0][1]].onscreen else None
    j = int(rng.integers(0, len(order) - 1))
    k = order[j + 1][1]
    return (
        (f"the object that starts sounding after the {objs[order[j][1]].cls}", k)
        if objs[k].onscreen
        else None
    )


def _ref_null(scene: Scene, rng: np.random.Generator, kind: str) -> str | None:
    objs = list(scene.objects)
    if kind == "class":
        absent = [c for c in CLASSES if not any(o.cls == c and o.onscreen for o in objs)]
        return f"the {_pick(rng, absent)} that is making sound"
    if kind == "slot":
        slots = [s for s in SLOTS if not any(o.slot == s and o.sounds for o in objs)]
        return f"the sounding object {T.WHERE[_pick(rng, slots)]}" if slots else None
    order = sorted((o.onset, k) for k, o in enumerate(objs) if o.sounds)
    if len(order) < 2 or order[-1][0] == order[-2][0]:
        return None
    return f"the object that starts sounding after the {objs[order[-1][1]].cls}"


_REF_KINDS = ("class", "slot", "leftmost", "rightmost", "silent", "loudest", "first", "after")
_NULL_KINDS = ("class", "slot", "after")


def build_ref_avs(rng: np.random.Generator, split: str, stratum: float) -> Target:
    """A referring expression that needs sound to resolve; 25 % null expressions (empty mask)."""
    null = bool(rng.random() < 0.25)
    kind = _pick(rng, _NULL_KINDS if null else _REF_KINDS)

    def once() -> Target | None:
        scene = sample_scene(rng, split, n_visible=(2, 3))
        if null:
            exp = _ref_null(scene, rng, kind)
            if exp is None:
                return None
            t = int(rng.integers(scene.num_seconds))
            out = (
                f"{T.scene_sentences(scene)} No object in the video fits. "
                f"At the {T.ORDINALS[t]} second in the "
                f"video, {exp} is nothing. Its mask is {T.SEG_TOKENS}"
            )
            return Target(
                scene,
                out,
                {"mask": None, "object": None, "null": True},
                question=exp,
                frame_index=t,
                mask_format="binary",
            )
        hit = _ref_positive(scene, rng, kind)
        if hit is None:
            return None
        exp, k = hit
        obj = scene.objects[k]
        t = _pick(rng, [s for s in range(scene.num_seconds) if obj.visible[s]])
        out = (
            f"{T.scene_sentences(scene)} At the {T.ORDINALS[t]} second in the video, {exp} is {obj.cls}. "
            f"Its mask is {T.SEG_TOKENS}"
        )
        return Target(
            scene,
            out,
            {"mask": None, "object": obj.cls, "null": False},
            question=exp,
            frame_index=t,
            mask_objects=[k],
            mask_format="binary",
        )

    return _retry(once)


def build_caption(rng: np.random.Generator, split: str, stratum: float) -> Target:
    scene = sample_scene(rng, split)
    cap = T.caption(scene)
    return Target(scene, cap, {"caption": cap})


def build_target(rng: np.random.Generator, task: str, split: str, stratum: float | None = None) -> Target:
    """Sample a scene and its target for ``task`` (one of :data:`TASKS`) in ``split``.

    ``stratum`` in [0, 1) picks the balanced choice of the sample (the target class of AVE / ARIG /
    S4, the AVQA question kind and answer); a low-discrepancy sequence of strata over a split makes
    those histograms near-uniform. ``None`` draws it from ``rng``.
    """
    from .avqa import build_avqa

    if stratum is None:
        stratum = float(rng.random())

    builders = {
        "ave": build_ave,
        "avvp": build_avvp,
        "avqa": build_avqa,
        "arig": build_arig,
        "s4": build_s4,
        "ms3": lambda r, s, _: _multi_seg(r, s, "ms3"),
        "avss": lambda r, s, _: _multi_seg(r, s, "avss"),
        "ref-avs": build_ref_avs,
        "caption": build_caption,
    }
    if task not in builders:
        raise TaskError(f"unknown SynthAV task {task!r}; known: {list(TASKS)}")
    return builders[task](rng, split, stratum)
