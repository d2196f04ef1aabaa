"""Answer parsers: examples, never-raise property tests and render -> parse round trips."""

from __future__ import annotations

import time

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from crab_core.tasks import (
    PARSERS,
    ARIGPrediction,
    AVEPrediction,
    AVQAPrediction,
    AVVPPrediction,
    CaptionPrediction,
    SegPrediction,
    normalize_label,
    parse,
    parse_arig,
    parse_ave,
    parse_avqa,
    parse_avvp,
    parse_caption,
    parse_seg,
    render_target,
)

RESULT_TYPES = {
    "parse_ave": AVEPrediction,
    "parse_avvp": AVVPPrediction,
    "parse_avqa": AVQAPrediction,
    "parse_arig": ARIGPrediction,
    "parse_seg": SegPrediction,
    "parse_caption": CaptionPrediction,
}
FRAGMENTS = [
    "<event>",
    "</event>",
    "<range>",
    "</range>",
    "<answer>",
    "</answer>",
    "<obj>",
    "</obj>",
    "<audio>",
    "</audio>",
    "<visual>",
    "</visual>",
    "<audio_event>",
    "</audio_event>",
    "<visual_event>",
    "</visual_event>",
    "<mask_start>",
    "<mask_end>",
    "<mask_0>",
    "<mask_5>",
    "<mask_99999>",
    "<s>",
    "</s>",
    "[/INST]",
    "(",
    ")",
    "(3 5)",
    "(1,2)",
    "(-4,7)",
    ",",
    " ",
    "\n",
    "drum",
    "is ",
    "answer is",
    "sounding object is",
    "at the third second",
    "event:",
    "start_time:",
    "end_time:",
    "99999999999999999999",
    "3.5",
    "\u2581",
    "\x00",
    "é",
    "🥁",
]
garbage = st.one_of(
    st.text(),
    st.lists(st.one_of(st.sampled_from(FRAGMENTS), st.text(max_size=5)), max_size=60).map("".join),
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=garbage)
def test_parsers_never_raise(text):
    for name, fn in PARSERS.items():
        out = fn(text)
        assert isinstance(out, RESULT_TYPES[name])
        assert out.raw == text
        assert out.parse_error is None or isinstance(out.parse_error, str)


def test_parsers_accept_non_strings_and_huge_inputs():
    for name, fn in PARSERS.items():
        assert isinstance(fn(None), RESULT_TYPES[name]) and isinstance(fn(12345), RESULT_TYPES[name])
    huge = ("<audio_event>Dog,(0 10)" * 20000) + ("<event>" * 20000) + ("(1," * 20000) + "x" * 200000
    huge += "<audio_event>(0 1)" + " " * 100000 + "x(2 3)</audio_event>" + "event: answer is " * 20000
    start = time.perf_counter()
    for fn in PARSERS.values():
        fn(huge)
    assert time.perf_counter() - start < 10.0


# ----------------------------------------------------------------------------------- examples
def test_ave_examples():
    text = (
        "<s> The dog barks while a man speaks... the audible and visible event in the video is "
        "<event> Male speech, man speaking </event>, and the time range is <range> 0,8 </range>.</s>"
    )
    p = parse_ave(text)
    assert (p.event, p.range, p.parse_error) == ("Male speech, man speaking", (0, 8), None)
    assert p.segments(10) == ["Male speech, man speaking"] * 8 + ["background"] * 2
    assert parse_ave("event:Church bell start_time:2 end_time:5").range == (2, 5)
    assert parse_ave("<event>drum</event> <range> 6 - 2 </range>").range == (2, 6)  # order fixed
    bad = parse_ave("no idea")
    assert bad.parse_error and bad.segments(3) == ["background"] * 3
    assert parse_ave("<event>drum</event>").segments(2) == ["drum", "drum"]  # no range -> whole clip


def test_avvp_examples():
    p = parse_avvp(
        "<visual_event>Chainsaw,(0 10)</visual_event> and <audio_event>Chainsaw,(0 10)</audio_event>"
    )
    assert p.audio == (("Chainsaw", ((0, 10),)),) and p.visual == (("Chainsaw", ((0, 10),)),)
    legacy = parse_avvp("<visual>Chainsaw,(0 10)</visual> and <audio>Speech,(0 3)(5,10)</audio>")
    assert legacy.audio == (("Speech", ((0, 3), (5, 10))),)
    # skip_special_tokens=True drops the special token <audio> but keeps </audio>
    orphan = parse_avvp("<s> The events are <visual>Dog,(0 4)</visual> and Dog,(2 6)</audio>")
    assert orphan.audio == (("Dog", ((2, 6),)),) and orphan.visual == (("Dog", ((0, 4),)),)
    multi = parse_avvp(
        "<audio_event>Speech,(0 3) and (5 10); Dog,(1-2)</audio_event><audio_event>speech,(0 3)</audio_event>"
    )
    assert multi.audio == (("Speech", ((0, 3), (5, 10))), ("Dog", ((1, 2),)))
    assert parse_avvp("There is no audio event. There is no visual event.").parse_error is None
    assert parse_avvp("I hear things").parse_error


def test_avqa_examples():
    assert parse_avqa("... So the answer is <answer> Saxophone </answer>.").answer == "saxophone"
    assert parse_avqa("The answer is two.").answer == "two"
    assert parse_avqa("yes</s>").answer == "yes"
    assert parse_avqa("a long rambling text without any tag at all").parse_error


def test_arig_examples():
    p = parse_arig(
        "The sounding object is dog. Its coordinate of top left corner is (12,30) and coordinate of "
        "bottom right corner is (100,200)"
    )
    assert (p.object, p.box) == ("dog", (12.0, 30.0, 100.0, 200.0))
    q = parse_arig("The sounding object is dog. Its coordinates are <obj>(300,-5)(10,20)</obj>.")
    assert q.box == (10.0, 0.0, 224.0, 20.0)  # clamped to [0, 224] and ordered
    assert parse_arig("dog (1,2)").parse_error == "no box"
    assert parse_arig("box (1,2,3,4)").box == (1.0, 2.0, 3.0, 4.0)


def test_seg_examples():
    full = parse_seg(
        "<s>The object making the sound in the video is guitar. The mask of the object that makes "
        "the sound at the second second is "
        "<mask_start><mask_0><mask_1><mask_2><mask_3><mask_4><mask_5><mask_end></s>"
    )
    assert (full.object, full.has_seg_tokens, full.num_seg_tokens, full.frame_index) == ("guitar", True, 6, 1)
    skipped = parse_seg(
        "The object making the sound in the video is guitar. <mask_0><mask_1><mask_2><mask_3><mask_4><mask_5>"
    )
    assert not skipped.has_seg_tokens and skipped.num_seg_tokens == 6 and skipped.parse_error
    partial = parse_seg("x is y. <mask_start><mask_0><mask_1><mask_end>")
    assert not partial.has_seg_tokens and partial.num_seg_tokens == 2
    assert parse_caption("<s> A dog barks. </s>").text == "A dog barks."
    assert parse("s4", "[INST] prompt is here [/INST] It is drum. <mask_start>").object == "drum"


# --------------------------------------------------------------------------------- round trips
CLASSES = [
    "drum",
    "Male speech, man speaking",
    "Frying_(food)",
    "Acoustic guitar",
    "dog",
    "violin fiddle",
    "Telephone bell ringing",
    "car",
]
_RESERVED = {"and", "is", "nothing"}  # connector words the parsers treat as syntax
name_st = st.one_of(
    st.sampled_from(CLASSES),
    st.from_regex(r"[A-Za-z][a-z]{0,8}( [a-z]{1,8}){0,2}", fullmatch=True).filter(
        lambda n: not _RESERVED & set(n.lower().split())
    ),
)
range_st = st.tuples(st.integers(0, 9), st.integers(1, 10)).filter(lambda r: r[0] < r[1])


@settings(max_examples=100, deadline=None)
@given(event=name_st, rng=range_st, reasoning=st.sampled_from(["", "I see and hear it."]))
def test_ave_round_trip(event, rng, reasoning):
    p = parse_ave(render_target("ave", {"event": event, "range": list(rng)}, reasoning=reasoning))
    assert (p.event, p.range, p.parse_error) == (event, rng, None)


def _events_st():
    ranges = st.lists(range_st, min_size=1, max_size=3, unique=True)
    return st.lists(st.tuples(name_st, ranges), max_size=4, unique_by=lambda e: normalize_label(e[0]))


@settings(max_examples=100, deadline=None)
@given(audio=_events_st(), visual=_events_st(), legacy=st.booleans())
def test_avvp_round_trip(audio, visual, legacy):
    gt = {
        m: [{"event": n, "ranges": [list(r) for r in rs]} for n, rs in evs]
        for m, evs in (("audio", audio), ("visual", visual))
    }
    p = parse_avvp(render_target("avvp", gt, legacy_tags=legacy))
    assert p.parse_error is None
    assert p.audio == tuple((n, tuple(rs)) for n, rs in audio)
    assert p.visual == tuple((n, tuple(rs)) for n, rs in visual)


@settings(max_examples=50, deadline=None)
@given(answer=st.from_regex(r"[A-Za-z0-9]{1,10}( [a-z]{1,6})?", fullmatch=True))
def test_avqa_round_trip(answer):
    assert parse_avqa(render_target("avqa", {"answer": answer})).answer == answer.lower()


@settings(max_examples=100, deadline=None)
@given(
    obj=name_st,
    xs=st.lists(st.integers(0, 224), min_size=2, max_size=2),
    ys=st.lists(st.integers(0, 224), min_size=2, max_size=2),
    variant=st.sampled_from(["test", "train"]),
)
def test_arig_round_trip(obj, xs, ys, variant):
    box = [min(xs), min(ys), max(xs), max(ys)]
    p = parse_arig(render_target("arig", {"object": obj, "box": box}, variant=variant))
    assert (p.object, p.box, p.parse_error) == (obj, tuple(float(v) for v in box), None)


@settings(max_examples=100, deadline=None)
@given(
    task=st.sampled_from(["s4", "ms3", "avss", "ref-avs"]),
    obj=st.one_of(st.none(), name_st),
    frame=st.integers(0, 4),
    variant=st.sampled_from(["test", "train"]),
    question=st.sampled_from(["the loudest object", "the dog on the left", "what is sounding"]),
)
def test_seg_round_trip(task, obj, frame, variant, question):
    text = render_target(task, {"object": obj}, variant=variant, frame_index=frame, question=question)
    p = parse_seg(text)
    assert p.has_seg_tokens and p.num_seg_tokens == 6 and p.parse_error is None
    names_object = task in ("s4", "ms3") or (task in ("avss", "ref-avs") and variant == "train")
    assert p.object == (obj if names_object else None)
    if names_object and not (task == "ms3" and variant == "test"):
        assert p.frame_index == frame
