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


def _z(fig, i: int = 0) -> np.ndarray:
    return np.asarray(fig.data[i].z, dtype=np.float64)


def test_trace_and_map_figures_show_the_computed_values(tiny_pipe, ave_raw):
    """Each figure plots the trace / map values it is given (router softmax columns sum to one)."""
    tr = generate(tiny_pipe, ave_raw, capture=True, max_new_tokens=3).trace
    maps = attention_maps(tiny_pipe, ave_raw, answer_ids=[30])
    n, n_layers, n_proj, h = tr.weights.shape
    assert (n, h) == (tr.num_tokens, 3) and n_layers == len(tr.layers) and n_proj == len(tr.projections)

    mean_weights = np.nanmean(tr.weights.reshape(n, -1, h), axis=1)  # (N, H) over layers and projections
    z = _z(figures.router_heatmap(tr))
    np.testing.assert_allclose(z, mean_weights.T, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(z.sum(0), 1.0, atol=1e-4)  # one router softmax per token
    li, pj = list(tr.layers).index(1), list(tr.projections).index("v_proj")
    z = _z(figures.router_heatmap(tr, layer=1, projection="v_proj", values="norms"))
    np.testing.assert_allclose(z, np.nan_to_num(tr.norms[:, li, pj]).T, rtol=1e-5, atol=1e-6)
    assert z.max() > 0

    video = tr.mean_by_kind()["video"]
    np.testing.assert_allclose(
        _z(figures.layer_head_summary(video, tr.layers, tr.projections)), video.reshape(-1, h), rtol=1e-5
    )
    bars = {b.name: np.asarray(b.y) for b in figures.head_contributions(tr).data}
    kinds = np.asarray(tr.kinds)
    assert set(bars) == set(kinds.tolist()) & set(figures.KIND_COLORS)
    norms = np.nan_to_num(np.nanmean(tr.norms.reshape(n, -1, h), axis=1))
    for kind, y in bars.items():
        np.testing.assert_allclose(y, norms[kinds == kind].mean(0), rtol=1e-4, atol=1e-7)

    fp = maps.frame_patch_maps  # (T, g, g)
    fig = figures.frame_heatmaps(fp)
    assert len(fig.data) == fp.shape[0]
    for i in range(fp.shape[0]):
        np.testing.assert_allclose(_z(fig, i), fp[i], rtol=1e-6)
    frames = np.zeros((2, 112, 112, 3), np.uint8)
    fig = figures.frame_heatmaps(fp[:2], frames=frames)
    up = _z(fig, 1)  # image, heatmap, image, heatmap
    assert up.shape == (112, 112)
    assert np.isclose(up[0, 0], fp[0, 0, 0]) and np.isclose(up[-1, -1], fp[0, -1, -1])

    fbank = ave_raw.audio.numpy()  # (T, F, 128)
    fig = figures.spectrogram_overlay(fbank, maps.audio_time_maps)
    np.testing.assert_allclose(_z(fig, 0), np.concatenate(list(fbank), 0).T, rtol=1e-6)
    assert _z(fig, 1).shape == _z(fig, 0).shape
    a2v = maps.audio_to_video
    np.testing.assert_allclose(_z(figures.interaction_map(a2v)), a2v, rtol=1e-6)

    fig = figures.attribution_bars(np.arange(10.0), np.ones(10), {1, 2}, {3})
    np.testing.assert_array_equal(np.asarray(fig.data[0].y), np.arange(10.0))
    np.testing.assert_array_equal(np.asarray(fig.data[1].y), np.ones(10))
    grey = [c == "#bbbbbb" for c in fig.data[0].marker.color]
    assert grey == [i not in (1, 2) for i in range(10)]
