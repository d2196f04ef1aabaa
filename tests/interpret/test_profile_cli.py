"""Profile over a manifest and the report writer, end to end on two SynthAV rows."""

from __future__ import annotations

import json

import numpy as np

from crab_core.interpret import figures
from crab_core.interpret.ablation import generate
from crab_core.interpret.attention import attention_maps
from crab_core.interpret.profile import HeadProfile, profile_dataset, write_report


def test_profile_and_report(tiny_pipe, tmp_path):
    from crab_core.synthav import generate_split

    manifest, _ = generate_split(tmp_path / "data", "test", 2, 0, tasks=["ave", "s4"])
    prof = profile_dataset(tiny_pipe, manifest, limit=1, max_new_tokens=4)
    assert prof.counts == {"ave": 1, "s4": 1} and not prof.errors
    assert prof.routing["ave"].shape == (4, 7, 3)
    np.testing.assert_allclose(np.nansum(prof.routing["ave"], -1), 1.0, atol=1e-5)
    assert set(prof.ablation["s4"]) == {
        "normal",
        "only_h0",
        "only_h1",
        "only_h2",
        "without_h0",
        "without_h1",
        "without_h2",
    }
    nll = [prof.ablation["ave"][v]["reference_nll"] for v in prof.ablation["ave"]]
    assert np.ptp(nll) > 0.05
    paths = write_report(prof, tmp_path / "out")
    names = {p.name for p in paths}
    assert {"profile.json", "ablation.md", "ablation.png", "task_head_routing.html"} <= names
    back = HeadProfile.from_json(json.loads((tmp_path / "out" / "profile.json").read_text()))
    np.testing.assert_allclose(back.routing["s4"], prof.routing["s4"], atol=1e-5)


def test_trace_and_map_figures(tiny_pipe, ave_raw):
    tr = generate(tiny_pipe, ave_raw, capture=True, max_new_tokens=3).trace
    maps = attention_maps(tiny_pipe, ave_raw, answer_ids=[30])
    figs = [
        figures.router_heatmap(tr),
        figures.router_heatmap(tr, layer=1, projection="v_proj", values="norms"),
        figures.layer_head_summary(tr.mean_by_kind()["video"], tr.layers, tr.projections),
        figures.head_contributions(tr),
        figures.frame_heatmaps(maps.frame_patch_maps),
        figures.frame_heatmaps(maps.frame_patch_maps[:2], frames=np.zeros((2, 112, 112, 3), np.uint8)),
        figures.spectrogram_overlay(ave_raw.audio.numpy(), maps.audio_time_maps),
        figures.interaction_map(maps.audio_to_video),
        figures.attribution_bars(np.ones(10), np.ones(10), {1, 2}, {3}),
    ]
    assert all(len(f.data) > 0 for f in figs)
