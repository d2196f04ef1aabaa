"""The SynthAV world: sound-source classes, scenes, seeds, splits and the compositional hold-out.

A :class:`Scene` is pure data (no arrays): every object's class, position, look parameters, visible
seconds, sounding seconds and gain, plus the clip's background and noise. Rendering
(:mod:`render_video`, :mod:`render_audio`) is a deterministic function of a scene, so everything
random happens here, from one ``numpy.random.Generator``.

World parameters (the values ``docs`` and the generator docstring refer to):

- 10 classes (:data:`CLASSES`), video at :data:`FPS` = 8, audio mono at :data:`SAMPLE_RATE` = 16 kHz.
- Clip length per task (:data:`CLIP_SECONDS`, :func:`clip_seconds`): 5 s for the AVSBench-object
  tasks (``s4``, ``ms3``, ``arig``, as in AVSBench), :data:`NUM_SECONDS` = 10 s for every other task.
- 1 to 3 on-screen objects, each in its own horizontal slot (left / middle / right, centres at
  1/6, 1/2, 5/6 of the width) with a vertical jitter of +-12 % of the height, plus with some
  probability one off-screen source (audible, never visible, a class not on screen): 1 to 4 sources.
  Objects never overlap (no occlusion), so every mask is exact.
- Looks: size 20-28 % of the frame (bird 13-17 %), shade x0.8-1.15, rotation +-15 degrees.
- Sounds: pitch +-3 semitones, tempo x0.8-1.25, gain -18..0 dB (RMS).
- Visible seconds (clip of n s): the whole clip (65 %) or one interval of 0.4 n .. n - 1 s (4-9 s
  of a 10-s clip, 2-4 s of a 5-s clip); at least one object is visible for >= 0.8 n s. Sounding
  seconds: 1 or 2 runs inside the visible interval (on-screen objects only sound while visible), or
  none (a silent object, 25 %).
- Background: a muted colour with one of 5 textures; white noise at an SNR of 10-30 dB.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from crab_core.errors import ConfigError

CLASSES: tuple[str, ...] = (
    "guitar",
    "violin",
    "flute",
    "drum",
    "piano",
    "trumpet",
    "bell",
    "dog",
    "car",
    "bird",
)
SLOTS: tuple[str, ...] = ("left", "middle", "right")
SPLITS: tuple[str, ...] = ("train", "val", "test", "test-compositional")
#: Default clip length in seconds (every task not in :data:`CLIP_SECONDS`).
NUM_SECONDS = 10
#: Per-task clip length in seconds, where it differs from :data:`NUM_SECONDS`: the AVSBench-object
#: tasks use AVSBench's 5-s clips (5 frames at one per second, ``frame_index`` in 0..4).
CLIP_SECONDS: dict[str, int] = {"s4": 5, "ms3": 5, "arig": 5}
FPS = 8
SAMPLE_RATE = 16000
#: Minimum gain difference (dB) for "louder" / "loudest" to have a true answer.
LOUDNESS_MARGIN_DB = 6.0

#: Compositional hold-out: (class, slot) pairs and class pairs (sources in the same clip) that
#: appear only in the ``test-compositional`` split.
HOLDOUT_CLASS_SLOT: tuple[tuple[str, str], ...] = (
    ("guitar", "right"),
    ("drum", "left"),
    ("piano", "middle"),
    ("trumpet", "left"),
    ("bird", "right"),
)
HOLDOUT_PAIRS: tuple[frozenset[str], ...] = (
    frozenset({"violin", "piano"}),
    frozenset({"dog", "car"}),
    frozenset({"flute", "bell"}),
)

_SPLIT_SHIFT = 48
_USER_SHIFT = 24
_INDEX_LIMIT = 1 << _USER_SHIFT


@dataclass(frozen=True)
class SceneObject:
    """One sound source.

    Attributes:
        cls: class name (one of :data:`CLASSES`).
        slot: ``'left'``/``'middle'``/``'right'``, or ``None`` for an off-screen source.
        visible: one boolean per second of the clip.
        sounding: one boolean per second of the clip.
        gain_db: loudness of the source (RMS, dB re the reference level).
        size: sprite side as a fraction of the frame side.
        shade: colour multiplier.
        angle: rotation in degrees.
        y: vertical centre as a fraction of the frame height.
        semitones: pitch shift of the sound.
        tempo: tempo multiplier of the sound.
        sound_seed: seed of the noise parts of the sound.
    """

    cls: str
    slot: str | None
    visible: tuple[bool, ...]
    sounding: tuple[bool, ...]
    gain_db: float
    size: float
    shade: float
    angle: float
    y: float
    semitones: float
    tempo: float
    sound_seed: int

    @property
    def onscreen(self) -> bool:
        return self.slot is not None

    @property
    def sounds(self) -> bool:
        return any(self.sounding)

    @property
    def onset(self) -> int | None:
        """First sounding second, or ``None`` for a silent object."""
        return self.sounding.index(True) if self.sounds else None


@dataclass(frozen=True)
class Background:
    """Clip background: RGB colour in [0, 1], texture kind (0-4) and its parameters, noise SNR."""

    color: tuple[float, float, float]
    texture: int
    freq: tuple[float, float]
    phase: float
    amount: float
    snr_db: float
    noise_seed: int


@dataclass(frozen=True)
class Scene:
    """A whole clip: its sources (on-screen ones first, left to right) and its background."""

    objects: tuple[SceneObject, ...]
    background: Background

    @property
    def num_seconds(self) -> int:
        """Clip length in seconds (the length of every object's per-second flags)."""
        return len(self.objects[0].visible) if self.objects else NUM_SECONDS

    @property
    def onscreen(self) -> list[SceneObject]:
        return [o for o in self.objects if o.onscreen]

    @property
    def audible(self) -> list[SceneObject]:
        return [o for o in self.objects if o.sounds]

    def find(self, cls: str) -> SceneObject | None:
        return next((o for o in self.objects if o.cls == cls), None)

    def at_slot(self, slot: str) -> SceneObject | None:
        return next((o for o in self.objects if o.slot == slot), None)

    def per_second(self) -> list[dict]:
        """Ground truth per second: visible classes (with slot) and audible classes (with gain)."""
        out = []
        for t in range(self.num_seconds):
            out.append(
                {
                    "visible": [o.cls for o in self.objects if o.visible[t]],
                    "audible": [
                        {"class": o.cls, "gain_db": round(o.gain_db, 2)}
                        for o in self.objects
                        if o.sounding[t]
                    ],
                }
            )
        return out

    def to_meta(self) -> dict:
        """JSON-ready description of the scene (for the manifest's ``meta``)."""
        return {
            "objects": [
                {
                    "class": o.cls,
                    "slot": o.slot,
                    "visible": runs(o.visible),
                    "sounding": runs(o.sounding),
                    "gain_db": round(o.gain_db, 2),
                }
                for o in self.objects
            ],
            "snr_db": round(self.background.snr_db, 2),
        }


def runs(flags) -> list[list[int]]:
    """Contiguous True runs of a boolean sequence as ``[start, end)`` pairs."""
    out: list[list[int]] = []
    for t, on in enumerate(flags):
        if on and (not out or out[-1][1] != t):
            out.append([t, t + 1])
        elif on:
            out[-1][1] = t + 1
    return out


def sample_seed(split: str, index: int, user_seed: int) -> int:
    """Per-sample seed: split ``k`` owns the range ``[k * 2**48, (k + 1) * 2**48)``.

    Inside it, ``user_seed`` and ``index`` (both < 2**24) are packed without hashing, so different
    user seeds (or indices) give disjoint seeds and the split can be read back from a seed.
    """
    if split not in SPLITS:
        raise ConfigError(f"unknown split {split!r}; known: {list(SPLITS)}")
    if not (0 <= index < _INDEX_LIMIT and 0 <= user_seed < _INDEX_LIMIT):
        raise ConfigError(f"index and seed must be in [0, 2**24), got {index}, {user_seed}")
    return (SPLITS.index(split) << _SPLIT_SHIFT) | (user_seed << _USER_SHIFT) | index


def split_of_seed(seed: int) -> str:
    """The split a per-sample seed belongs to (see :func:`sample_seed`)."""
    k = seed >> _SPLIT_SHIFT
    if not 0 <= k < len(SPLITS):
        raise ConfigError(f"seed {seed} is outside every split's range")
    return SPLITS[k]


def has_holdout(scene: Scene) -> bool:
    """Whether a scene contains a held-out (class, slot) or class pair."""
    if any((o.cls, o.slot) in HOLDOUT_CLASS_SLOT for o in scene.onscreen):
        return True
    names = {o.cls for o in scene.objects}
    return any(pair <= names for pair in HOLDOUT_PAIRS)


def split_ok(scene: Scene, split: str) -> bool:
    """Held-out combinations appear in ``test-compositional`` (always) and nowhere else."""
    return has_holdout(scene) == (split == "test-compositional")


def clip_seconds(task: str) -> int:
    """Clip length in seconds of a task's samples (:data:`CLIP_SECONDS`, else :data:`NUM_SECONDS`)."""
    return CLIP_SECONDS.get(task, NUM_SECONDS)


def random_runs(
    rng: np.random.Generator, lo: int, hi: int, max_runs: int = 2, num_seconds: int = NUM_SECONDS
) -> tuple[bool, ...]:
    """1..max_runs random non-empty runs inside ``[lo, hi)``, as ``num_seconds`` booleans."""
    flags = np.zeros(num_seconds, dtype=bool)
    n = int(rng.integers(1, max_runs + 1)) if hi - lo >= 4 else 1
    for _ in range(n):
        s = int(rng.integers(lo, hi))
        e = int(rng.integers(s + 1, hi + 1))
        flags[s:e] = True
    return tuple(bool(x) for x in flags)


def _interval(lo: int, hi: int, num_seconds: int) -> tuple[bool, ...]:
    return tuple(lo <= t < hi for t in range(num_seconds))


def _sample_visible(rng: np.random.Generator, num_seconds: int) -> tuple[bool, ...]:
    """The whole clip (65 %) or one interval of ``0.4 n .. n - 1`` seconds."""
    if rng.random() < 0.65:
        return _interval(0, num_seconds, num_seconds)
    length = int(rng.integers(max(1, (4 * num_seconds) // 10), num_seconds))
    start = int(rng.integers(0, num_seconds - length + 1))
    return _interval(start, start + length, num_seconds)


def make_object(
    rng: np.random.Generator,
    cls: str,
    slot: str | None,
    visible: tuple[bool, ...],
    sounding: tuple[bool, ...],
) -> SceneObject:
    """An object with random look/sound variation and gain."""
    small = cls == "bird"
    return SceneObject(
        cls=cls,
        slot=slot,
        visible=visible,
        sounding=sounding,
        gain_db=float(rng.uniform(-18.0, 0.0)),
        size=float(rng.uniform(0.13, 0.17) if small else rng.uniform(0.20, 0.28)),
        shade=float(rng.uniform(0.8, 1.15)),
        angle=float(rng.uniform(-15.0, 15.0)),
        y=float(0.5 + rng.uniform(-0.12, 0.12)),
        semitones=float(rng.uniform(-3.0, 3.0)),
        tempo=float(rng.uniform(0.8, 1.25)),
        sound_seed=int(rng.integers(0, 2**31)),
    )


def sample_background(rng: np.random.Generator) -> Background:
    hue, sat, val = rng.random(), rng.uniform(0.1, 0.6), rng.uniform(0.15, 0.5)
    i, f = int(hue * 6) % 6, hue * 6 - int(hue * 6)
    p, q, r = val * (1 - sat), val * (1 - sat * f), val * (1 - sat * (1 - f))
    rgb = [(val, r, p), (q, val, p), (p, val, r), (p, q, val), (r, p, val), (val, p, q)][i]
    return Background(
        color=tuple(float(c) for c in rgb),
        texture=int(rng.integers(0, 5)),
        freq=(float(rng.uniform(1.0, 6.0)), float(rng.uniform(1.0, 6.0))),
        phase=float(rng.uniform(0, 2 * np.pi)),
        amount=float(rng.uniform(0.04, 0.12)),
        snr_db=float(rng.uniform(10.0, 30.0)),
        noise_seed=int(rng.integers(0, 2**31)),
    )


def _one_scene(
    rng: np.random.Generator,
    n_visible: int,
    include: str | None,
    offscreen: bool,
    silent_prob: float,
    num_seconds: int,
) -> Scene:
    names = [c for c in CLASSES if c != include]
    picked = list(rng.choice(names, size=n_visible + 1, replace=False))
    if include is not None:
        picked[int(rng.integers(0, n_visible))] = include
    slots = sorted(rng.choice(len(SLOTS), size=n_visible, replace=False).tolist())
    objects = []
    for k, cls in enumerate(picked[:n_visible]):
        visible = _sample_visible(rng, num_seconds)
        lo = visible.index(True)
        hi = lo + sum(visible)
        sounding = (
            (False,) * num_seconds
            if rng.random() < silent_prob
            else random_runs(rng, lo, hi, num_seconds=num_seconds)
        )
        objects.append(make_object(rng, str(cls), SLOTS[slots[k]], visible, sounding))
    if max(sum(o.visible) for o in objects) < (8 * num_seconds) // 10:
        objects[0] = dataclasses.replace(objects[0], visible=_interval(0, num_seconds, num_seconds))
    if offscreen:
        objects.append(
            make_object(
                rng,
                str(picked[n_visible]),
                None,
                (False,) * num_seconds,
                random_runs(rng, 0, num_seconds, num_seconds=num_seconds),
            )
        )
    return Scene(objects=tuple(objects), background=sample_background(rng))


def sample_scene(
    rng: np.random.Generator,
    split: str,
    *,
    n_visible: tuple[int, int] = (1, 3),
    include: str | None = None,
    offscreen_prob: float = 0.3,
    silent_prob: float = 0.25,
    require_audible: bool = True,
    num_seconds: int = NUM_SECONDS,
    max_tries: int = 1000,
) -> Scene:
    """Sample a scene that respects the split's compositional rule.

    Args:
        rng: the sample's generator (all randomness comes from it).
        split: one of :data:`SPLITS`.
        n_visible: inclusive range of the number of on-screen objects (1..3).
        include: a class that must be on screen.
        offscreen_prob: probability of one extra off-screen source.
        silent_prob: probability that an on-screen object never sounds.
        require_audible: resample scenes in which nothing sounds.
        num_seconds: clip length in seconds (see :func:`clip_seconds`).
        max_tries: rejection-sampling budget.

    Returns:
        A :class:`Scene`.
    """
    for _ in range(max_tries):
        n = int(rng.integers(n_visible[0], n_visible[1] + 1))
        scene = _one_scene(rng, n, include, bool(rng.random() < offscreen_prob), silent_prob, num_seconds)
        if require_audible and not scene.audible:
            continue
        if split_ok(scene, split):
            return scene
    raise ConfigError(f"could not sample a {split} scene in {max_tries} tries")
