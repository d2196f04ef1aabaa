"""BEATs encoder vs the reference goldens (d_beats), checkpoint-key conversion and shapes."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch
from safetensors.torch import load_file

from crab_core.config import BeatsConfig
from crab_core.errors import CheckpointError
from crab_core.model.beats import BEATs, ours_to_reference, reference_to_ours

PREFIX = "base_model.model.model.audio_encoder.audio_encoder."
ALIAS = "encoder.layers.1.self_attn.relative_attention_bias.weight"


@pytest.fixture(scope="module")
def tiny_cfg(fixtures_dir) -> BeatsConfig:
    raw = json.loads((fixtures_dir / "config.json").read_text())["beats"]
    names = {f.name for f in dataclasses.fields(BeatsConfig)}
    return BeatsConfig(**{k: v for k, v in raw.items() if k in names})


@pytest.fixture(scope="module")
def ref_sd(fixtures_dir) -> dict[str, torch.Tensor]:
    weights = load_file(str(fixtures_dir / "weights.safetensors"))
    return {k[len(PREFIX) :]: v.float() for k, v in weights.items() if k.startswith(PREFIX)}


@pytest.fixture(scope="module")
def model(tiny_cfg, ref_sd) -> BEATs:
    net = BEATs.from_config(tiny_cfg).eval()
    ours, _ = reference_to_ours(ref_sd)
    result = net.load_state_dict(ours, strict=True)
    assert not result.missing_keys and not result.unexpected_keys
    return net


def test_matches_golden(model, fixtures_dir):
    inputs = load_file(str(fixtures_dir / "d_beats" / "inputs.safetensors"))
    outputs = load_file(str(fixtures_dir / "d_beats" / "outputs.safetensors"))
    with torch.no_grad():
        out3 = model(inputs["fbank_3d"])
        out4 = model(inputs["fbank_4d"])
    assert out3.shape == (2, 48, 32) and out4.shape == (1, 2, 48, 32)
    torch.testing.assert_close(out3, outputs["features_from_3d"], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(out4, outputs["features_from_4d"], atol=1e-5, rtol=1e-5)


def test_key_conversion_round_trip(ref_sd):
    ours, dropped = reference_to_ours(ref_sd)
    assert dropped == [ALIAS]
    assert torch.equal(ref_sd[ALIAS], ref_sd["encoder.layers.0.self_attn.relative_attention_bias.weight"])
    back = ours_to_reference(ours)
    assert set(back) == set(ref_sd)
    for key, value in ref_sd.items():
        assert torch.equal(back[key], value), key


def test_unknown_key_raises(ref_sd):
    with pytest.raises(CheckpointError, match="encoder.bogus"):
        reference_to_ours({**ref_sd, "encoder.bogus.weight": torch.zeros(1)})


def test_state_dict_has_no_alias(tiny_cfg):
    keys = set(BEATs.from_config(tiny_cfg).state_dict())
    assert ALIAS not in keys
    assert "encoder.layers.0.self_attn.relative_attention_bias.weight" in keys
    assert "encoder.pos_conv.0.weight_g" in keys and "predictor.weight" in keys


@pytest.mark.parametrize("frames,tokens", [(98, 48), (198, 96), (16, 8), (47, 16)])
def test_token_counts(model, frames, tokens):
    with torch.no_grad():
        assert model(torch.randn(1, frames, 128)).shape == (1, tokens, 32)


def test_4d_equals_flattened_3d(model):
    fbank = torch.randn(2, 3, 98, 128)
    with torch.no_grad():
        out4 = model(fbank)
        out3 = model(fbank.reshape(6, 98, 128))
    assert out4.shape == (2, 3, 48, 32)
    torch.testing.assert_close(out4.reshape(6, 48, 32), out3, atol=1e-6, rtol=0)


def test_token_order_is_time_major(model):
    """Changing only the last 16 frames must only change tokens of the last time patch (before mixing)."""
    fbank = torch.randn(1, 98, 128)
    changed = fbank.clone()
    changed[:, 80:96] += 1.0
    with torch.no_grad():
        a, b = model._tokens(fbank), model._tokens(changed)
    moved = (a - b).abs().amax(dim=-1)[0] > 0
    assert moved.tolist() == [False] * 40 + [True] * 8


def test_bad_shapes_raise(model):
    with pytest.raises(ValueError):
        model(torch.randn(98, 128))
    with pytest.raises(ValueError):
        model(torch.randn(1, 10, 128))


def test_default_config_builds():
    net = BEATs.from_config(BeatsConfig())
    n_params = sum(p.numel() for p in net.parameters())
    assert 85e6 < n_params < 95e6
