"""SynthAV outputs against the task parsers (the format contract): every ``output`` parses without
``parse_error`` and the parsed structure equals the sample's ``gt``."""

from __future__ import annotations

import pytest

from crab_core.synthav import TASKS, clip_seconds, render_sample, task_seed
from crab_core.tasks import get_task, normalize_label, parse

N = 12
SIZE = 32  # the parsed fields do not depend on the frame size (ARIG boxes are in 224-px coordinates)


def _samples(task: str, n: int = N):
    return [render_sample(task_seed("train", task, k, 3), task, SIZE) for k in range(n)]


def _events(gt_events: list[dict]) -> dict[str, list[tuple[int, int]]]:
    return {normalize_label(ev["event"]): [tuple(r) for r in ev["ranges"]] for ev in gt_events}


def _parsed_events(events) -> dict[str, list[tuple[int, int]]]:
    return {normalize_label(name): list(ranges) for name, ranges in events}


def _check(task: str, s, p) -> None:
    gt = s.gt
    if task == "ave":
        assert p.event == gt["event"] and list(p.range) == gt["range"]
        assert p.segments(len(gt["segments"])) == gt["segments"]
    elif task == "avvp":
        assert _parsed_events(p.audio) == _events(gt["audio"])
        assert _parsed_events(p.visual) == _events(gt["visual"])
    elif task == "avqa":
        assert p.answer == gt["answer"]
    elif task == "arig":
        assert normalize_label(p.object) == normalize_label(gt["object"])
        assert max(abs(a - b) for a, b in zip(p.box, gt["box"])) <= 1.0
    elif task == "caption":
        assert p.text == gt["caption"]
    else:  # seg tasks
        assert p.has_seg_tokens and p.num_seg_tokens == 6
        assert p.frame_index == s.frame_index
        if task in ("s4", "ms3") or (task == "ref-avs" and not gt["null"]):
            assert p.object == gt["object"]
        elif task == "ref-avs":
            assert p.object is None
        else:  # avss: the named objects
            assert p.object == (" and ".join(gt["objects"]) or None)


@pytest.mark.parametrize("task", TASKS)
def test_outputs_parse_to_gt(task):
    spec = get_task(task)
    for s in _samples(task):
        p = parse(task, s.output)
        assert p.parse_error is None, (task, s.output, p.parse_error)
        _check(task, s, p)
        if s.frame_index is not None:  # the target second is valid for the registry's clip length
            assert 0 <= s.frame_index < clip_seconds(task)
            assert s.frame_index < spec.num_frames


def test_clip_length_matches_registry():
    """Tasks the registry samples 5 frames for are exactly the 5-s SynthAV tasks."""
    for task in TASKS:
        assert get_task(task).num_frames == clip_seconds(task)
