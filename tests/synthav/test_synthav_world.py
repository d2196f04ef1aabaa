"""SynthAV world: seeds, splits, compositional hold-out, in-memory rendering determinism."""

from __future__ import annotations

import numpy as np
import pytest

from crab_core.errors import ConfigError
from crab_core.synthav import (
    CLIP_SECONDS,
    SPLITS,
    TASKS,
    clip_seconds,
    render_sample,
    sample_seed,
    split_of_seed,
)
from crab_core.synthav.annotate import build_target
from crab_core.synthav.generate import task_seed
from crab_core.synthav.world import CLASSES, NUM_SECONDS, SAMPLE_RATE, has_holdout, runs


def test_seed_ranges_are_disjoint_and_invertible():
    seen = set()
    for split in SPLITS:
        for user in (0, 1, 7):
            for i in range(50):
                s = sample_seed(split, i, user)
                assert split_of_seed(s) == split
                seen.add(s)
    assert len(seen) == len(SPLITS) * 3 * 50
    with pytest.raises(ConfigError):
        sample_seed("nope", 0, 0)
    with pytest.raises(ConfigError):
        sample_seed("train", 1 << 24, 0)


def test_runs():
    assert runs([0, 1, 1, 0, 1, 0, 0, 0, 1, 1]) == [[1, 3], [4, 5], [8, 10]]
    assert runs([False] * 10) == []


@pytest.mark.parametrize("task", TASKS)
def test_compositional_holdout_only_in_its_split(task):
    for i in range(25):
        for split in ("train", "val", "test"):
            rng = np.random.default_rng([sample_seed(split, i, 3), 0])
            assert not has_holdout(build_target(rng, task, split).scene)
        rng = np.random.default_rng([sample_seed("test-compositional", i, 3), 0])
        assert has_holdout(build_target(rng, task, "test-compositional").scene)


def test_scene_invariants():
    for i in range(60):
        scene = build_target(np.random.default_rng(i), TASKS[i % len(TASKS)], "train").scene
        slots = [o.slot for o in scene.onscreen]
        assert len(slots) == len(set(slots)) and 1 <= len(slots) <= 3
        assert len({o.cls for o in scene.objects}) == len(scene.objects) <= 4
        assert all(o.cls in CLASSES for o in scene.objects)
        n = clip_seconds(TASKS[i % len(TASKS)])
        assert scene.num_seconds == n
        assert max(sum(o.visible) for o in scene.onscreen) >= (8 * n) // 10
        for o in scene.objects:
            assert len(o.visible) == len(o.sounding) == n
            if o.onscreen:  # on-screen objects only sound while visible
                assert all(v for v, s in zip(o.visible, o.sounding) if s)
            else:
                assert not any(o.visible)


@pytest.mark.parametrize("task", TASKS)
def test_render_sample_is_deterministic(task):
    seed = sample_seed("train", 5, 11)
    a, b = render_sample(seed, task, 64), render_sample(seed, task, 64)
    assert np.array_equal(a.frames, b.frames) and np.array_equal(a.audio, b.audio)
    assert (a.output, a.question, a.gt, a.meta, a.frame_index) == (
        b.output,
        b.question,
        b.gt,
        b.meta,
        b.frame_index,
    )
    if a.mask is not None:
        assert np.array_equal(a.mask, b.mask)
    c = render_sample(sample_seed("train", 5, 12), task, 64)
    assert not np.array_equal(a.audio, c.audio) and a.meta != c.meta


def test_clip_seconds_table():
    assert CLIP_SECONDS == {"s4": 5, "ms3": 5, "arig": 5}
    assert [clip_seconds(t) for t in TASKS] == [
        5 if t in ("s4", "ms3", "arig") else NUM_SECONDS for t in TASKS
    ]


@pytest.mark.parametrize("task", TASKS)
def test_clip_length_per_task(task):
    n = clip_seconds(task)
    for k in range(3):
        s = render_sample(task_seed("train", task, k, 2), task, 32)
        assert s.frames.shape == (n, 32, 32, 3) and s.audio.shape == (n * SAMPLE_RATE,)
        assert s.frame_index is None or 0 <= s.frame_index < n


def test_render_sample_shapes():
    s = render_sample(sample_seed("val", 0, 0), "s4", 112)
    assert s.frames.shape == (5, 112, 112, 3) and s.frames.dtype == np.uint8
    assert s.audio.shape == (5 * SAMPLE_RATE,) and s.audio.dtype == np.float32
    assert 0 <= s.frame_index < 5
    a = render_sample(sample_seed("val", 0, 0), "ave", 32)
    assert a.frames.shape == (10, 32, 32, 3) and a.audio.shape == (NUM_SECONDS * SAMPLE_RATE,)
    q = s.audio * 32767
    assert np.abs(q - np.round(q)).max() < 1e-3 and np.abs(s.audio).max() <= 1.0
    assert s.mask.shape == (112, 112) and s.split == "val"
    with pytest.raises(ConfigError):
        render_sample(0, "nope")
    with pytest.raises(ConfigError):
        render_sample(0, "ave", image_size=33)


def test_sounds_differ_between_classes():
    """Each class's template has its own spectral centroid band: a cheap sanity check that the
    signatures are distinct."""
    from crab_core.synthav.render_audio import source_template
    from crab_core.synthav.world import make_object

    rng = np.random.default_rng(0)
    cents = {}
    for cls in CLASSES:
        x = source_template(make_object(rng, cls, "left", (True,) * 10, (True,) * 10))
        spec = np.abs(np.fft.rfft(x))
        cents[cls] = float((spec * np.arange(spec.size)).sum() / spec.sum())
        assert abs(float(np.sqrt(np.mean(x * x))) - 1.0) < 1e-3
    assert len({round(c, -1) for c in cents.values()}) == len(CLASSES)
