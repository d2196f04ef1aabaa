"""Attention read-outs: eager switch restored, mass bookkeeping, Q-Former maps."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from crab_core.interpret.attention import attention_maps, eager_attention
from crab_core.interpret.inputs import synthetic_input


def test_eager_switch_is_restored(tiny_pipe):
    cfg = tiny_pipe.model.llm.get_base_model().config
    before = cfg._attn_implementation
    with pytest.raises(ValueError):
        with eager_attention(tiny_pipe.model.llm):
            assert cfg._attn_implementation == "eager"
            raise ValueError
    assert cfg._attn_implementation == before == "sdpa"


def test_attention_maps(tiny_pipe, ave_raw):
    maps = attention_maps(tiny_pipe, ave_raw, answer_ids=[30, 31, 32])
    n_layers = tiny_pipe.model.config.llm.num_hidden_layers
    assert maps.frame_scores.shape == (n_layers, 10) and maps.second_scores.shape == (n_layers, 10)
    total = maps.frame_scores.sum(1) + maps.second_scores.sum(1) + maps.text_score + maps.image_score
    assert (total <= 1 + 1e-4).all() and (total > 0.2).all()  # the rest is on the answer tokens
    # each frame's patch map carries exactly that frame's (layer-mean) LLM attention mass
    np.testing.assert_allclose(maps.frame_patch_maps.sum((1, 2)), maps.frame_scores.mean(0), rtol=1e-4)
    assert maps.frame_patch_maps.shape == (10, 8, 8)
    assert maps.audio_time_maps.shape == (10, 6, 8)  # 98 fbank frames -> 6 time steps x 8 bands
    np.testing.assert_allclose(maps.audio_time_maps.sum((1, 2)), maps.second_scores.mean(0), rtol=1e-4)
    assert maps.audio_to_video.shape == (10, 10) and (maps.audio_to_video > 0).all()
    assert np.all(maps.video_to_audio == 0)  # video precedes audio in the prompt: causal


def test_image_map(tiny_pipe):
    raw = synthetic_input(tiny_pipe, "arig", frame_index=0, seed=2)
    maps = attention_maps(tiny_pipe, raw, answer_ids=[40])
    assert maps.image_patch_map.shape == (8, 8) and maps.frame_patch_maps is None
    assert torch.isfinite(torch.from_numpy(maps.image_score)).all()
