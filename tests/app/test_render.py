"""Model-free tests of the app's pure render functions (app.render, app.views, app.present, app.analysis)."""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
import pytest

from app import analysis, present, render, views
from app.engine import HeadControl
from crab_core.errors import TaskError
from tests.app._fakes import FakeRecord, FakeResult, fake_trace

AVE = "So the event is <event> guitar </event>, and the time range is <range> 5,7 </range>."
AVVP = "<audio_event> dog (2,5) </audio_event> <visual_event> bell (0,10), car (3,4) </visual_event>"
ARIG = "The sounding object is guitar. <obj> (20,40),(100,120) </obj>"
SEG = "At the first second the object is drum. <mask_start><mask_0><mask_1><mask_2><mask_3><mask_4><mask_5><mask_end>"


def test_highlight_labels_tag_contents_and_seg_tokens():
    pieces = render.highlight_answer(AVE)
    assert "".join(p for p, _ in pieces) == AVE
    assert (" guitar ", "event") in pieces and (" 5,7 ", "range") in pieces
    assert ("<event>", "tag") in pieces
    seg = dict(render.highlight_answer(SEG))
    assert seg["<mask_3>"] == "seg"
    assert render.highlight_answer("") == []
    assert render.highlight_answer("a </x> b") == [("a ", None), ("</x>", "tag"), (" b", None)]


def test_ave_timeline_has_prediction_and_truth():
    rec = FakeRecord(FakeResult("ave", AVE), extras={"gt_json": {"event": "guitar", "range": [4, 7]}})
    fig = present.result_view(rec).timeline
    bars = [t for t in fig.data if isinstance(t, go.Bar)]
    assert [(b.base[0], b.x[0]) for b in bars] == [(5, 2), (4, 3)]
    assert "guitar" in present.result_view(rec).summary


def test_avvp_timeline_rows_per_event():
    fig = render.avvp_timeline(FakeResult("avvp", AVVP).parsed)
    assert {t.y[0] for t in fig.data} == {"audio: dog", "visual: bell", "visual: car"}


def test_unparsable_answer_is_explained():
    line = render.answer_summary("ave", FakeResult("ave", "blah").parsed)
    assert "could not be parsed" in line


def test_arig_box_drawn_in_224_space():
    frame = np.zeros((112, 112, 3), np.uint8)
    rec = FakeRecord(FakeResult("arig", ARIG), target=frame)
    img = present.result_view(rec).image
    assert img.shape == (112, 112, 3)
    assert tuple(img[20, 30]) == render.BOX_RGB  # top edge y=40/2, x in 10..50
    assert img[40, 30].sum() == 0 and tuple(img[40, 50]) == render.BOX_RGB


def test_mask_overlay_and_scores():
    frame = np.full((8, 8, 3), 100, np.uint8)
    pred = np.zeros((8, 8), bool)
    pred[:4] = True
    gt = np.zeros((8, 8), np.float32)
    gt[:4, :4] = 1
    out = render.mask_overlay(frame, pred, gt)
    assert out[6, 6].tolist() == [100, 100, 100] and out[2, 6, 0] > 100
    assert out[0, 0].tolist() == list(render.GT_RGB)
    s = render.mask_scores(pred, gt)
    assert s["iou"] == pytest.approx(0.5)
    rec = FakeRecord(FakeResult("s4", SEG, mask=pred), target=frame, gt=gt)
    view = present.result_view(rec)
    assert view.image.shape == (8, 8, 3) and "iou" in view.summary


def test_forced_mask_is_said():
    rec = FakeRecord(FakeResult("s4", "nothing", mask=np.ones((4, 4), bool)), target=np.zeros((4, 4, 3), np.uint8),
                     extras={"forced_mask": True})
    assert "appended" in present.result_view(rec).summary


def test_class_overlay_legend_and_miou():
    frame = np.zeros((6, 6, 3), np.uint8)
    cmap = np.zeros((6, 6), np.int64)
    cmap[:3] = 1
    cmap[3:, :3] = 4
    img, legend = render.class_overlay(frame, cmap, ["guitar", "violin", "flute", "drum"])
    assert [n for n, _ in legend] == ["guitar", "drum"] and legend[0][1] == "#800000"
    assert img[0, 0, 0] > 0 and img[5, 5].sum() == 0
    assert "drum" in render.legend_markdown(legend)
    assert render.class_scores(cmap, cmap) == {"miou": 1.0}
    rec = FakeRecord(FakeResult("avss", SEG, mask=cmap), target=frame)
    assert "guitar" not in present.result_view(rec).legend  # no class names given -> "class 1"


def test_router_views_shapes_and_grouping():
    tr = fake_trace()
    order = views.token_order(tr)
    assert [tr.kinds[i] for i in order][:6] == ["video"] * 6
    fig = views.router_heatmap(tr, group="unit")
    z = np.asarray(fig.data[0].z)
    assert z.shape == (3, 3 + 3 + 2)  # heads x (3 frames, 3 seconds, text, answer)
    np.testing.assert_allclose(z.sum(0), 1.0, atol=1e-5)  # router weights are a softmax
    fig = views.router_heatmap(tr, layer=1, projection="v_proj", values="norms", group="token")
    assert np.asarray(fig.data[0].z).shape == (3, tr.num_tokens)
    assert np.asarray(views.layer_head_summary(tr, "audio").data[0].z).shape == (2, 6)
    assert len(views.head_contributions(tr).data) == 4  # video, audio, text, answer
    assert len(views.routing_shift(tr, fake_trace(seed=1)).data) == 2
    with pytest.raises(ValueError):
        views.router_heatmap(tr, layer=7)
    figs = present.inspection_figures(None)
    assert len(figs) == 3


def test_attention_summary_and_views():
    kinds = ["text", "video", "video", "audio", "audio", "text", "text"]
    units = [-1, 0, 1, 0, 1, -1, -1]
    attn = np.tril(np.ones((7, 7)))
    attn /= attn.sum(1, keepdims=True)
    s = analysis.summarize_attention(attn, kinds, units, n_prompt=6)
    assert s.query == "answer" and s.frames.shape == (2,) and s.seconds.shape == (2,)
    np.testing.assert_allclose(s.frames, [1 / 7, 1 / 7])
    assert s.interaction.shape == (2, 2) and s.interaction[0, 0] == pytest.approx(1 / 4)
    assert sum(s.by_kind.values()) == pytest.approx(1.0)
    strip, audio, inter, note = present.attention_outputs(s, np.zeros((2, 8, 8, 3), np.uint8), np.zeros((20, 16)), 2.0)
    assert strip.shape[0] == 96 + 6 and isinstance(audio, go.Figure) and "answer" in note
    over = views.patch_attention_overlay(np.zeros((16, 16, 3), np.uint8), np.eye(4))
    assert over.shape == (16, 16, 3)
    names, vals = analysis.group_scores([1, 2, 3, 4, 5], ["text", "video", "video", "audio", "image"], [-1, 0, 1, 0, -1])
    assert names == ["video f0", "video f1", "audio s0", "image", "text"] and vals == [2, 3, 4, 5, 1]
    assert len(views.attribution_bars(names, vals, "t").data) == 1


def test_head_control():
    ctl = HeadControl("ablate", (1,)).control(3)
    assert ctl.head_mask.tolist() == [1, 0, 1]
    forced = HeadControl("force", (0, 2)).control(3)
    assert forced.forced_weights.tolist() == [0.5, 0, 0.5]
    assert "layers 1" in HeadControl("ablate", (0,), (1,)).describe()
    with pytest.raises(TaskError):
        HeadControl("ablate", (5,)).control(3)
    with pytest.raises(TaskError):
        HeadControl("blend", (0,)).control(3)


def test_status_and_model_card_text():
    from app import model_card

    rec = FakeRecord(FakeResult("ave", AVE))
    assert "Random weights" in present.status_line(rec, trained=False)
    assert "Random weights" not in present.status_line(rec, trained=True)
    assert "Random weights" in model_card.weights_statement("x", False)
    assert "No training card" in model_card.card_markdown({})
    assert '"steps": 3' in model_card.card_markdown({"recipe": {"steps": 3}})


def test_ave_timeline_without_range_is_a_message():
    fig = render.ave_timeline(FakeResult("ave", "no tags here").parsed)
    assert not fig.data and "no event range" in fig.layout.annotations[0].text
