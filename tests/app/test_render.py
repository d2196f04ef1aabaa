"""Model-free tests of the app's pure render functions (app.render, app.views, app.present, app.analysis)."""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
import pytest

from app import analysis, present, render, views
from tests.app._fakes import FakeRecord, FakeResult, fake_trace

AVE = "So the event is <event> guitar </event>, and the time range is <range> 5,7 </range>."
AVVP = "<audio_event> dog (2,5) </audio_event> <visual_event> bell (0,10), car (3,4) </visual_event>"
ARIG = "The sounding object is guitar. <obj> (20,40),(100,120) </obj>"
SEG = (
    "At the first second the object is drum. "
    "<mask_start><mask_0><mask_1><mask_2><mask_3><mask_4><mask_5><mask_end>"
)


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
    rec = FakeRecord(
        FakeResult("s4", "nothing", mask=np.ones((4, 4), bool)),
        target=np.zeros((4, 4, 3), np.uint8),
        extras={"forced_mask": True},
    )
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
    fig = views.router_heatmap(tr, group="unit")
    z = np.asarray(fig.data[0].z)
    # sequence order: text, f0..f2, s0..s2, text, answer
    assert list(fig.layout.xaxis.ticktext) == ["text", "f0", "f1", "f2", "s0", "s1", "s2", "text", "answer"]
    assert z.shape == (3, 9)
    np.testing.assert_allclose(z.sum(0), 1.0, atol=1e-5)  # router weights are a softmax
    heat = fig.data[0]
    assert heat.zmid == pytest.approx(1 / 3) and heat.colorscale[0][1] != heat.colorscale[-1][1]
    assert heat.zmax - 1 / 3 == pytest.approx(1 / 3 - heat.zmin)  # diverging, centred on uniform
    assert heat.zmax == pytest.approx(1 / 3 + np.abs(z - 1 / 3).max(), abs=1e-6)  # range from the data
    assert "uniform" in fig.layout.title.text and fig.layout.xaxis.title.text and fig.layout.yaxis.title.text
    fig = views.router_heatmap(tr, layer=1, projection="v_proj", values="norms", group="token")
    assert np.asarray(fig.data[0].z).shape == (3, tr.num_tokens)
    np.testing.assert_allclose(np.asarray(fig.data[0].z)[:, 5], tr.norms[5, 1, 1])
    assert fig.layout.xaxis.showticklabels is False  # no rotated token labels: modality bands instead
    band_text = [a.text for a in fig.layout.annotations]
    assert band_text == ["text", "video", "audio", "text", "answer"]
    assert "||w_h (alpha/r) B_h A x||" in fig.layout.title.text
    assert np.asarray(views.layer_head_summary(tr, "audio").data[0].z).shape == (2 * 2, 3)
    contrib = views.head_contributions(tr)
    assert [b.name for b in contrib.data] == ["text", "video", "audio", "answer"]
    np.testing.assert_allclose(
        contrib.data[1].y,
        np.nanmean(tr.norms[tr.kinds == "video"].reshape(-1, 2 * 2, 3).mean(1), axis=0),
        rtol=1e-5,
    )
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
    strip, audio, inter, note = present.attention_outputs(
        s, np.zeros((2, 8, 8, 3), np.uint8), np.zeros((20, 16)), 2.0
    )
    assert (
        strip.shape[0] == 96 + 6
        and isinstance(audio, go.Figure)
        and "answer" in note
        and "total 100%" in note
    )
    wide = views.frame_attention_strip(np.zeros((2, 90, 160, 3), np.uint8), [1.0, 0.5], height=90)
    assert wide.shape == (96, 160 * 2 + 2, 3)  # tiles keep the 16:9 aspect ratio
    over = views.patch_attention_overlay(np.zeros((16, 16, 3), np.uint8), np.eye(4))
    assert over.shape == (16, 16, 3)
    names, vals = analysis.group_scores(
        [1, 2, 3, 4, 5], ["text", "video", "video", "audio", "image"], [-1, 0, 1, 0, -1]
    )
    assert names == ["video f0", "video f1", "audio s0", "image", "text"] and vals == [2, 3, 4, 5, 1]
    bars = views.attribution_bars(np.array([1.0, 2.0]), np.array([3.0]), other={"image": 0.5}, delta=0.01)
    assert [list(b.y) for b in bars.data] == [
        [1.0, 2.0],
        [3.0],
        [0.5],
    ] and "delta 0.01" in bars.layout.title.text


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
