"""SynthAV task targets: Crab tags in `output`, and `gt` consistent with the per-second truth."""

from __future__ import annotations

import re
from collections import Counter

import numpy as np
import pytest

from crab_core.synthav import CLASSES, render_sample, sample_seed
from crab_core.synthav.annotate import build_target
from crab_core.synthav.avqa import KINDS
from crab_core.synthav.generate import task_seed
from crab_core.synthav.render_video import mask_box, render_video
from crab_core.synthav.text import SEG_TOKENS

N = 30


def _samples(task, n=N, size=64):
    return [render_sample(task_seed("train", task, i, 1), task, size) for i in range(n)]


def _flags(ranges, n=10):
    out = [False] * n
    for s, e in ranges:
        out[s:e] = [True] * (e - s)
    return out


def test_ave_range_matches_truth():
    for s in _samples("ave"):
        m = re.search(
            r"<event> (\w+) </event>, and the time range is <range> (\d+),(\d+) </range>\.$", s.output
        )
        assert m, s.output
        cls, a, b = m.group(1), int(m.group(2)), int(m.group(3))
        assert s.gt["event"] == cls and s.gt["range"] == [a, b] and 0 <= a < b <= 10
        assert s.gt["segments"] == [cls if a <= t < b else "background" for t in range(10)]
        for t in range(10):  # exactly the range's seconds have an audio-visual class, and it is `cls`
            av = [
                o["class"] for o in s.meta["objects"] if _flags(o["visible"])[t] and _flags(o["sounding"])[t]
            ]
            assert av == ([cls] if a <= t < b else [])


def test_avvp_blocks_match_gt_and_truth():
    for s in _samples("avvp"):
        for tag, key, field in (("audio_event", "audio", "sounding"), ("visual_event", "visual", "visible")):
            blocks = re.findall(rf"<{tag}>(\w+),((?:\(\d+ \d+\))+)</{tag}>", s.output)
            parsed = [
                {"event": c, "ranges": [[int(x), int(y)] for x, y in re.findall(r"\((\d+) (\d+)\)", r)]}
                for c, r in blocks
            ]
            assert parsed == s.gt[key]
            truth = [{"event": o["class"], "ranges": o[field]} for o in s.meta["objects"] if o[field]]
            assert parsed == truth
        assert s.gt["num_segments"] == 10


def test_avqa_answers_and_balance():
    samples = _samples("avqa", n=130)
    vocab = {a for _, answers, _, _ in KINDS for a in answers}
    types = Counter()
    for s in samples:
        m = re.search(r"So the answer is <answer> ([\w-]+) </answer>\.$", s.output)
        assert m and m.group(1) == s.gt["answer"] and s.gt["answer"] in vocab, s.output
        assert s.question and s.question.endswith("?")
        types[s.gt["question_type"]] += 1
        objs = s.meta["objects"]
        qt, ans = s.gt["question_type"], s.gt["answer"]
        if qt == "Audio/Counting":
            assert ["zero", "one", "two", "three", "four"][sum(bool(o["sounding"]) for o in objs)] == ans
        if qt == "Visual/Counting":
            assert ["zero", "one", "two", "three"][sum(o["slot"] is not None for o in objs)] == ans
        if qt == "Visual/Location":
            cls = re.match(r"Where is the (\w+)\?", s.question).group(1)
            assert next(o["slot"] for o in objs if o["class"] == cls) == ans
        if qt == "Audio/Existential":
            cls = s.question.split()[-1].rstrip("?")
            assert (ans == "yes") == any(o["class"] == cls and o["sounding"] for o in objs)
    assert len(types) == 12 and max(types.values()) <= 130 // 12 + 2  # types spread evenly
    yes_no = Counter(s.gt["answer"] for s in samples if s.gt["answer"] in ("yes", "no"))
    assert abs(yes_no["yes"] - yes_no["no"]) <= 4


def test_arig_box_and_sole_source():
    for s in _samples("arig", size=224):
        m = re.search(
            r"The sounding object is (\w+)\. Its coordinate of top left corner is \((\d+),(\d+)\) and "
            r"coordinate of bottom right corner is \((\d+),(\d+)\)$",
            s.output,
        )
        assert m, s.output
        assert m.group(1) == s.gt["object"] and [int(m.group(k)) for k in range(2, 6)] == s.gt["box"]
        t = s.frame_index
        assert s.frames.shape[0] == 5 and 0 <= t < 5
        loud = [o for o in s.meta["objects"] if _flags(o["sounding"], 5)[t]]
        assert [o["class"] for o in loud] == [s.gt["object"]] and loud[0]["slot"] is not None
    # the box is the object's mask box at 224 px
    rng = np.random.default_rng([sample_seed("train", 0, 1), 3])
    target = build_target(rng, "arig", "train")
    video = render_video(target.scene, 224)
    assert mask_box(video.masks[target.mask_objects[0]]) == target.gt["box"]


def test_s4_mask_nonempty_exactly_when_sounding():
    empty = 0
    for s in _samples("s4", n=40):
        assert s.output.endswith(SEG_TOKENS) and s.gt["null"] is False
        obj = next(o for o in s.meta["objects"] if o["class"] == s.gt["object"])
        sounding = [o for o in s.meta["objects"] if o["sounding"]]
        assert sounding == [obj] and all(o["slot"] is not None for o in s.meta["objects"])
        assert s.frames.shape[0] == 5 and 0 <= s.frame_index < 5
        assert bool(s.mask.any()) == _flags(obj["sounding"], 5)[s.frame_index]
        assert all(e <= 5 for o in s.meta["objects"] for key in ("visible", "sounding") for _, e in o[key])
        assert set(np.unique(s.mask)) <= {0, 1}
        empty += not s.mask.any()
    assert 0 < empty < 20


@pytest.mark.parametrize("task", ["ms3", "avss"])
def test_multi_source_masks(task):
    for s in _samples(task):
        assert s.output.endswith(SEG_TOKENS)
        t, n = s.frame_index, (5 if task == "ms3" else 10)
        assert s.frames.shape[0] == n and 0 <= t < n
        names = [
            o["class"] for o in s.meta["objects"] if o["slot"] is not None and _flags(o["sounding"], n)[t]
        ]
        assert s.gt["objects"] == names and names
        values = set(np.unique(s.mask).tolist()) - {0}
        if task == "avss":
            assert s.gt["mask_format"] == "index"
            assert values == {CLASSES.index(c) + 1 for c in names}
        else:
            assert values == {1} and s.gt["object"] == " and ".join(names)


def test_ref_avs_null_and_positive():
    samples = _samples("ref-avs", n=60)
    nulls = [s for s in samples if s.gt["null"]]
    assert 5 <= len(nulls) <= 30
    for s in samples:
        assert s.question and s.output.endswith(f"Its mask is {SEG_TOKENS}")
        if s.gt["null"]:
            assert s.gt["object"] is None and not s.mask.any()
        else:
            assert s.mask.any() and f" is {s.gt['object']}. Its mask" in s.output


def test_caption():
    for s in _samples("caption", n=10):
        assert s.gt["caption"] == s.output
        assert 1 <= s.output.count(".") <= 2 and s.output[0].isupper()
