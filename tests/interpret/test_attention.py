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


@pytest.mark.parametrize("task", ["s4", "ms3"])
def test_seg_video_prompt_maps(tiny_pipe, task):
    """S4 / MS3 video prompts carry the target frame only for the mask decoder: no image tokens in the
    prompt, so no image map (this crashed in einsum before), and the frame maps still carry their mass."""
    raw = synthetic_input(tiny_pipe, task, frame_index=1, seed=3)
    assert raw.image is not None and raw.frames.shape[0] == 5
    maps = attention_maps(tiny_pipe, raw, answer_ids=[30, 31])
    assert maps.image_patch_map is None and np.all(maps.image_score == 0)
    assert maps.frame_patch_maps.shape == (5, 8, 8) and maps.audio_time_maps.shape[0] == 5
    np.testing.assert_allclose(maps.frame_patch_maps.sum((1, 2)), maps.frame_scores.mean(0), rtol=1e-4)


def test_seg_image_prompt_maps(tiny_pipe, tmp_path):
    """S4 from an image + audio file (AVSBench's frame + wav) runs the image prompt: an image map, no
    frames."""
    from PIL import Image

    from crab_core.interpret.inputs import Request, load_input
    from crab_core.synthav.writer import write_wav

    img = tmp_path / "0.jpg"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (54, 72, 3), dtype=np.uint8)).save(img)
    wav = write_wav(tmp_path / "a.wav", 0.1 * np.sin(np.arange(5 * 16000) / 9.0).astype(np.float32))
    raw = load_input(tiny_pipe, Request("s4", image=str(img), audio=str(wav)))
    assert raw.frames is None and raw.audio.shape[0] == 1  # quick-start: one 1-s window
    maps = attention_maps(tiny_pipe, raw, answer_ids=[30])
    assert maps.image_patch_map.shape == (8, 8) and maps.frame_patch_maps is None
    np.testing.assert_allclose(maps.image_patch_map.sum(), maps.image_score.mean(), rtol=1e-4)


def test_failures_are_internal_errors(tiny_pipe, ave_raw, monkeypatch):
    from crab_core.errors import CrabError, InterpretError
    from crab_core.interpret import attention

    def broken(model, pixels):
        raise RuntimeError("einsum(): operands do not broadcast")

    monkeypatch.setattr(attention, "visual_cross_attention", broken)
    with pytest.raises(InterpretError) as info:
        attention_maps(tiny_pipe, ave_raw, answer_ids=[30])
    message = str(info.value)
    assert message.startswith("internal error") and "not a problem with your input" in message
    assert "einsum" in message and "\n" not in message and isinstance(info.value, CrabError)
