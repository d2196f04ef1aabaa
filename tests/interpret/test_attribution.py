"""Integrated gradients: levels, baselines, localisation helpers."""

from __future__ import annotations

import numpy as np
import pytest

from crab_core.interpret.attribution import attribute, localization_ratio, object_units
from crab_core.model.splice import KIND_TEXT


def test_attribution_levels(tiny_pipe, ave_raw):
    att = attribute(tiny_pipe, ave_raw, answer_ids=[30, 31], n_steps=4, internal_batch_size=4)
    assert np.isfinite(att.logprob) and att.baseline == "mean"
    assert np.all(att.token_scores[att.kinds == KIND_TEXT] == 0)  # text rows equal their baseline
    assert att.frame_scores.shape == (10,) and att.second_scores.shape == (10,) and att.frame_scores.sum() > 0
    assert att.patch_scores.shape == (10, 8, 8)
    np.testing.assert_allclose(att.pixel_frame_scores, np.abs(att.patch_scores).sum((1, 2)), rtol=1e-4)
    assert att.fbank_time.shape == (10, 98) and att.fbank_second_scores.shape == (10,)
    assert all(np.isfinite(d) for d in (att.delta, att.pixel_delta, att.fbank_delta))
    assert set(att.seconds) == {"embeddings", "pixels", "fbank"}


def test_zero_baseline_embeddings_only(tiny_pipe, ave_raw):
    att = attribute(
        tiny_pipe, ave_raw, answer_ids=[30], baseline="zero", n_steps=4, pixels=False, fbank=False
    )
    assert att.patch_scores is None and att.fbank_time is None
    with pytest.raises(ValueError):
        attribute(tiny_pipe, ave_raw, answer_ids=[30], baseline="blur")


def test_localization_helpers():
    scene = {
        "objects": [
            {"class": "drum", "visible": [[1, 3]], "sounding": [[2, 4]]},
            {"class": "bell", "visible": [], "sounding": [[0, 10]]},
        ]
    }
    assert object_units(scene, "drum") == ({1, 2}, {2, 3})
    assert localization_ratio([1, 1, 1, 1], [0, 1]) == pytest.approx(1.0)
    assert localization_ratio([3, 1, 1, 1], [0]) == pytest.approx(3.0)
    assert localization_ratio([1, 1], []) is None and localization_ratio([0, 0], [0]) is None


def test_sanity_report_runs(tiny_pipe):
    from crab_core.interpret.sanity import attribution_sanity

    rep = attribution_sanity(tiny_pipe, num=1, n_steps=2, max_new_tokens=2)
    assert rep["num"] == 1 and "embedding_seconds_sounding" in rep["levels"]
    assert rep["samples"][0]["object"] is not None
