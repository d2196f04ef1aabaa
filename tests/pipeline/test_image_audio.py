"""Image + audio inputs (AVSBench's frame + wav) through the pipeline, notes and the out-of-domain notice.

Uses the shipped crab-tiny on one CPU thread (skipped when its weights are absent).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from crab_core.errors import CrabError, InternalError
from crab_core.pipeline import TINY_DIR, CrabPipeline, resolve_inputs
from crab_core.synthav.writer import write_wav


@pytest.fixture(scope="module")
def pipe():
    if not (TINY_DIR / "model.safetensors").is_file():
        pytest.skip("crab-tiny weights not shipped in this checkout")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield CrabPipeline.load("crab-tiny")
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    """SynthAV files written by ``synth``: rows of s4, ms3, avss, ref-avs and ave (frame png + wav + mp4)."""
    from crab_core.synthav.generate import write_sample

    out = tmp_path_factory.mktemp("synth")
    rows = {
        t: write_sample(out, "test", i, 0, t, 0, image_size=64)
        for i, t in enumerate(["s4", "ms3", "avss", "ref-avs", "ave"])
    }
    return {
        t: {k: (str(out / v) if k in ("video", "audio", "image") else v) for k, v in r.items()}
        for t, r in rows.items()
    }


def test_resolve_inputs_picks_the_image_prompt():
    assert resolve_inputs("s4", video=None, image="f.jpg")[:2] == ("quick_start", 0)
    assert resolve_inputs("ms3", video=None, image="f.jpg", frame_index=3)[:2] == ("quick_start", 3)
    assert resolve_inputs("ref-avs", video=None, image="f.jpg")[:2] == ("quick_start", None)
    assert resolve_inputs("s4", video="v.mp4", image=None)[:2] == ("test", 0)
    assert resolve_inputs("avss", video=None, image="f.jpg")[:2] == (
        "test",
        0,
    )  # its default is image + audio
    name, index, notes = resolve_inputs("s4", video=None, image="f.jpg", variant="test")
    assert name == "test" and not any("image + audio prompt" in n for n in notes)  # explicit variant kept


@pytest.mark.parametrize("task", ["s4", "ms3", "avss", "ref-avs"])
def test_image_plus_audio_runs(pipe, synth, task):
    row = synth[task]
    question = "the sounding object" if task == "ref-avs" else None
    res = pipe.run(
        task, image=row["image"], audio=row["audio"], question=question, max_new_tokens=60, force_mask=True
    )
    size = pipe.model.config.vision.image_size
    assert res.mask is not None and res.mask.shape == (size, size)
    assert res.variant == ("test" if task == "avss" else "quick_start")
    assert (task == "avss") != any("image + audio prompt" in n for n in res.notes)
    assert res.out_of_domain is None  # SynthAV files: no notice
    assert res.to_json()["prompt_variant"] == res.variant and res.to_json()["notes"] == res.notes


def test_forced_mask_has_a_note(pipe, synth):
    row = synth["s4"]
    res = pipe.run("s4", image=row["image"], audio=row["audio"], max_new_tokens=1, force_mask=True)
    assert res.mask is not None and any("forced" in n for n in res.notes)
    plain = pipe.run("s4", image=row["image"], audio=row["audio"], max_new_tokens=1)
    assert plain.mask is None and not any("forced" in n for n in plain.notes)


def test_audio_length_mismatch_is_noted(pipe, synth, tmp_path):
    video = synth["ave"]["video"]  # 10 s
    short = write_wav(tmp_path / "short.wav", np.zeros(4 * 16000, np.float32) + 0.01)
    res = pipe.run("ave", video=video, audio=str(short), max_new_tokens=2)
    assert any("short.wav (4.0 s) is shorter than the video" in n for n in res.notes), res.notes
    same = pipe.run("ave", video=video, audio=synth["ave"]["audio"], max_new_tokens=2)
    assert not any("shorter" in n or "longer" in n for n in same.notes)
    again = pipe.run("ave", video=video, audio=str(short), max_new_tokens=2)
    assert again.cached and again.notes == res.notes  # notes come back with cached features


def test_out_of_domain_notice_on_real_media(pipe, real_media_dir):
    res = pipe.run(
        "s4",
        image=str(real_media_dir / "s4" / "0.jpg"),
        audio=str(real_media_dir / "s4" / "audio.wav"),
        max_new_tokens=2,
    )
    assert res.out_of_domain and res.out_of_domain.startswith("out of domain: crab-tiny")
    assert res.to_json()["out_of_domain"] == res.out_of_domain


def test_model_failures_are_internal_errors(pipe, synth, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("shape mismatch in splice")

    monkeypatch.setattr(pipe.model, "generate", broken)
    with pytest.raises(InternalError) as info:
        pipe.run("ave", video=synth["ave"]["video"], max_new_tokens=2)
    assert isinstance(info.value, CrabError) and str(info.value).startswith("internal error")
    assert "shape mismatch in splice" in str(info.value) and "not a problem with your input" in str(
        info.value
    )
    with pytest.raises(CrabError) as user:  # user errors stay user errors
        pipe.run("ave", video=str(Path(synth["ave"]["video"]).with_name("missing.mp4")))
    assert not isinstance(user.value, InternalError)
