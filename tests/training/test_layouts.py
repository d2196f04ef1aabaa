"""The ``seconds`` AVVP layout: same events for the parser and the metrics, one tag per second."""

from __future__ import annotations

import numpy as np
import pytest

from crab_core.errors import ConfigError
from crab_core.metrics.avvp import avvp_matrices
from crab_core.synthav.annotate import build_target
from crab_core.tasks.parsers import parse_avvp
from crab_core.training.data import RawItem
from crab_core.training.layouts import apply_avvp_layout, audio_seconds_tags, avvp_seconds_output


def _targets(n: int = 30):
    rng = np.random.default_rng(5)
    return [build_target(rng, "avvp", "train", k / n) for k in range(n)]


def test_seconds_layout_parses_to_the_same_matrices_as_the_reference_layout():
    seen_multi_run = False
    for t in _targets():
        new = avvp_seconds_output(t.output, t.gt)
        ref, got = parse_avvp(t.output), parse_avvp(new)
        assert ref.parse_error is None and got.parse_error is None
        for a, b in zip(avvp_matrices(ref, t.gt), avvp_matrices(got, t.gt)):
            np.testing.assert_array_equal(a, b)
        # the visual part and the seen sentence are kept verbatim
        seen = new.split(" The sounds are ")[0].split(" The only sound is ")[0]
        assert seen == t.output.split(" I hear ")[0]
        assert new.endswith(t.output[t.output.index(", and the visual events are ") :])
        seen_multi_run |= any(len(ev["ranges"]) > 1 for ev in t.gt["audio"])
    assert seen_multi_run  # the sample covers classes that sound in several runs


def test_one_tag_per_audible_second_in_time_order():
    audio = [{"event": "dog", "ranges": [[0, 2], [5, 6]]}, {"event": "bell", "ranges": [[1, 3]]}]
    assert audio_seconds_tags(audio) == (
        "<audio_event>dog,(0 1)</audio_event> <audio_event>dog,(1 2)</audio_event> "
        "<audio_event>bell,(1 2)</audio_event> <audio_event>bell,(2 3)</audio_event> "
        "<audio_event>dog,(5 6)</audio_event>"
    )
    assert audio_seconds_tags([]) == ""


def test_silent_clip_and_class_list():
    out = (
        "I see a dog on the left. I hear only background noise, while the dog stays silent. "
        "The audio events are , and the visual events are <visual_event>dog,(0 10)</visual_event>."
    )
    new = avvp_seconds_output(out, {"audio": [], "visual": [{"event": "dog", "ranges": [[0, 10]]}]})
    assert new.startswith("I see a dog on the left. Nothing sounds. The audio events are , and")
    one = avvp_seconds_output(out, {"audio": [{"event": "bell", "ranges": [[3, 4]]}]})
    assert "The only sound is bell. The audio events are <audio_event>bell,(3 4)</audio_event>," in one


def test_layout_applies_to_synthav_avvp_only_and_rejects_unknown():
    t = _targets(1)[0]
    raws = [
        RawItem(id="synthav-1-avvp", task="avvp", prompt="p", output=t.output, gt=t.gt),
        RawItem(id="synthav-1-ave", task="ave", prompt="p", output="x", gt={}),
        RawItem(id="user-avvp", task="avvp", prompt="p", output="x", gt={}),
    ]
    assert apply_avvp_layout(raws, "ranges") is raws
    out = apply_avvp_layout(raws, "seconds")
    assert out[0].output == avvp_seconds_output(t.output, t.gt) and out[1:] == raws[1:]
    with pytest.raises(ConfigError, match="unknown AVVP layout"):
        apply_avvp_layout(raws, "runs")
    with pytest.raises(ConfigError, match="not a SynthAV AVVP answer"):
        avvp_seconds_output("<audio_event>dog,(0 1)</audio_event>", {"audio": []})
