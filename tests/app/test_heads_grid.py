"""Model-free tests of the heads-side-by-side grid, drawings at the input's aspect ratio, the
out-of-domain notice, example ground truth and error messages."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest

from app import compare, display, grid, present, render
from app.messages import internal_message, user_message
from tests.app._fakes import FakeRecord, FakeResult

AVE = "So the event is <event> guitar </event>, and the time range is <range> 5,7 </range>."
AVE2 = "So the event is <event> drum </event>, and the time range is <range> 4,7 </range>."
ARIG = "The sounding object is guitar. <obj> (0,0),(112,112) </obj>"


def test_word_diff_marks_changed_and_dropped_words():
    out = grid.word_diff("the event is guitar", "the event is drum now")
    assert out == 'the event is <del class="crab-del">guitar</del> <mark class="crab-ins">drum now</mark>'
    assert grid.word_diff("a <b>", "a <b>") == "a &lt;b&gt;"  # escaped, no marks when equal


def test_agreement_per_task():
    a, b = FakeResult("ave", AVE), FakeResult("ave", AVE2)
    assert compare.agreement("ave", a, a) == ("IoU", 1.0)
    assert compare.agreement("ave", a, b) == ("IoU", 0.0)  # different event: no shared event-second
    assert compare.agreement("ave", a, None, {"event": "guitar", "range": [4, 7]}) == (
        "IoU",
        pytest.approx(2 / 3),
    )
    assert compare.agreement("ave", a) is None
    box = FakeResult("arig", ARIG)
    assert compare.agreement("arig", box, None, {"box": [0, 0, 56, 112]}) == ("box IoU", pytest.approx(0.5))
    m1, m2 = np.zeros((4, 4), bool), np.zeros((4, 4), bool)
    m1[:2], m2[:, :2] = True, True
    s1, s2 = FakeResult("s4", "x", mask=m1), FakeResult("s4", "y", mask=m2)
    assert compare.agreement("s4", s1, s2) == ("IoU", pytest.approx(4 / 12, abs=1e-4))
    assert compare.agreement("s4", s1, None, None, m1.astype(np.float32)) == ("IoU", 1.0)
    q1, q2 = FakeResult("avqa", "<answer> yes </answer>"), FakeResult("avqa", "<answer> no </answer>")
    assert compare.agreement("avqa", q1, q2) == ("same answer", 0.0)
    assert compare.agreement("avqa", q1, None, {"answer": "Yes"}) == ("correct", 1.0)
    assert [n for n, _ in compare.head_controls(2)] == [
        "normal",
        "only h0",
        "only h1",
        "without h0",
        "without h1",
    ]


def test_grid_cells_show_diff_metrics_and_timeline_with_truth():
    normal = FakeRecord(FakeResult("ave", AVE))
    variant = FakeRecord(FakeResult("ave", AVE2))
    rows = [
        compare.HeadRow("normal", normal, vs_gt=("IoU", 1.0), nll=0.5),
        compare.HeadRow(
            "only h0", variant, vs_normal=("IoU", 0.0), vs_gt=("IoU", 0.0), nll=1.25, changed=True
        ),
    ]
    views = [present.result_view(r.record) for r in rows]
    out = grid.head_grid(rows, views, "ave", {"event": "guitar", "range": [5, 7]})
    assert out.count('class="crab-card"') == 2 and "answer changed" in out
    assert '<mark class="crab-ins">drum' in out and "IoU 0.00" in out and "1.250" in out
    assert out.count("truth guitar") == 2  # each cell's timeline has the ground-truth row


@dataclass
class _Ood(FakeResult):
    out_of_domain: object = None
    notes: object = None


def test_out_of_domain_notice_at_the_answer():
    assert present.ood_notice(FakeResult("ave", AVE)) == ""  # fields absent: nothing shown
    assert present.ood_notice(_Ood("ave", AVE)) == ""
    flagged = present.ood_notice(_Ood("ave", AVE, out_of_domain=True))
    assert "Out of domain" in flagged and "SynthAV" in flagged
    noted = present.ood_notice(_Ood("ave", AVE, notes=["separate audio is 5 s, the video 10 s"]))
    assert noted == "_Note: separate audio is 5 s, the video 10 s_" and "Out of domain" not in noted
    view = present.result_view(FakeRecord(_Ood("ave", AVE, out_of_domain="crab-tiny knows only <SynthAV>")))
    assert view.summary.startswith("⚠️ **Out of domain:** crab-tiny knows only &lt;SynthAV&gt;")
    again = present.ood_notice(_Ood("ave", AVE, out_of_domain="out of domain: crab-tiny knows only SynthAV"))
    assert again == "⚠️ **Out of domain:** crab-tiny knows only SynthAV"  # the library's prefix not repeated


def test_example_ground_truth_and_expected_answer_in_summary():
    rec = FakeRecord(
        FakeResult("ave", AVE),
        extras={"gt_json": {"event": "guitar", "range": [5, 7]}, "expected": "the guitar, 5 to 7"},
    )
    view = present.result_view(rec)
    assert "**IoU** 1.00, event correct" in view.summary and "the guitar, 5 to 7" in view.summary
    assert view.show_timeline and not view.show_image
    assert len(view.timeline.data) == 2  # prediction row and truth row


def test_drawings_at_the_input_aspect_ratio_with_legend():
    assert display.display_size((1280, 720), 112) == (640, 360)
    assert display.display_size((480, 640), 112) == (480, 640)  # portrait kept
    assert display.display_size((112, 112), 112) == (320, 320)  # small clips enlarged
    assert display.display_size(None, 112) == (320, 320)
    frame = np.zeros((90, 160, 3), np.uint8)
    img = render.draw_box(frame, (0, 0, 112, 224), None)  # left half of the square model input
    assert img.shape == (90, 160, 3)
    assert tuple(img[45, 0]) == render.BOX_RGB and tuple(img[45, 80]) == render.BOX_RGB
    assert tuple(img[45, 100]) == (0, 0, 0)
    mask = np.zeros((8, 8), bool)
    mask[:, :4] = True
    over = render.mask_overlay(frame, display.fit_mask(mask, (160, 90)), None)
    assert over[45, 70, 0] > 0 and over[45, 90, 0] == 0
    rec = FakeRecord(FakeResult("s4", "x", mask=mask), target=frame, gt=mask.astype(np.float32))
    view = present.result_view(rec)
    assert (
        view.image.shape == (90, 160, 3) and "predicted mask" in view.legend and "ground truth" in view.legend
    )
    assert "no ground truth" in render.overlay_legend("arig", False)


def test_internal_errors_say_they_are_internal():
    msg = internal_message("attention")
    assert "Internal error" in msg and "computing attention" in msg and "not a problem with your file" in msg
    assert "Internal" not in user_message("the video clip.mp4 is 90 s long")


def test_handlers_tell_internal_failures_from_input_problems():
    import gradio as gr

    from app.handlers import guarded
    from crab_core.errors import InterpretError, MediaError

    def failing(exc):
        @guarded
        def attention():
            raise exc

        with pytest.raises(gr.Error) as err:
            attention()
        return err.value

    user = failing(MediaError("could not read clip.mp4: the file is damaged"))
    assert user.title == "Problem with the input" and "clip.mp4" in user.message
    bug = failing(RuntimeError("einsum(): subscript q has size 4"))
    assert (
        bug.title == "Internal error" and "computing attention" in bug.message and "einsum" not in bug.message
    )
    lib = failing(InterpretError("internal error: attention maps failed (not a problem with the input)"))
    assert lib.title == "Internal error" and "attention maps failed" in lib.message
