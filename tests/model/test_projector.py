"""Q-Former projectors vs the reference goldens (reference-fixtures README 4.b / 4.c)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file

from crab_core.errors import CheckpointError
from crab_core.model.projector import (
    ProjectorOutput,
    QFormerProjector,
    ours_to_reference,
    reference_to_ours,
)
from crab_core.presets import get_preset

ATOL = 1e-5
ROOTS = {"visual": "base_model.model.model.vl_projector.", "audio": "base_model.model.model.al_projector."}
OFFICIAL_ROOTS = {"visual": "model.vl_projector.", "audio": "model.al_projector."}
# crab-reference.md 1.4: parameter counts incl. the unused BERT parts (tied aliases once).
OFFICIAL_PARAMS = {"visual": 73_553_978, "audio": 72_767_034}


def _reference_sd(fixtures_dir: Path, modality: str) -> dict[str, torch.Tensor]:
    root = ROOTS[modality]
    out = {}
    with safe_open(str(fixtures_dir / "weights.safetensors"), framework="pt") as f:
        for key in f.keys():
            if key.startswith(root):
                t = f.get_tensor(key)
                out[key[len(root) :]] = t.float() if t.is_floating_point() else t
    return out


def _tiny_projector(fixtures_dir: Path, modality: str) -> QFormerProjector:
    cfg = json.loads((fixtures_dir / "config.json").read_text())
    bert, over = cfg["qformer_bert_config"], cfg["qformer_overrides"]
    return QFormerProjector(
        modality,
        encoder_width=over[f"encoder_width_{modality}"],
        hidden_size=bert["hidden_size"],
        num_layers=over["num_hidden_layers"],
        num_heads=bert["num_attention_heads"],
        intermediate_size=bert["intermediate_size"],
        num_query_tokens=cfg[f"{modality}_query_token_nums"],
        d_model=cfg["d_model"],
        mlp_depth=cfg["projector_mlp_depth"],
        layer_norm_eps=bert["layer_norm_eps"],
    )


@pytest.fixture(scope="module", params=["visual", "audio"])
def loaded(request, fixtures_dir):
    modality = request.param
    ref = _reference_sd(fixtures_dir, modality)
    model = _tiny_projector(fixtures_dir, modality).eval()
    ours, dropped = reference_to_ours(ref)
    result = model.load_state_dict(ours, strict=True)
    assert not result.missing_keys and not result.unexpected_keys
    return modality, model, ref, ours, dropped


def test_dropped_keys_are_the_documented_unused_ones(loaded):
    modality, _, ref, ours, dropped = loaded
    assert len(ours) + len(dropped) == len(ref)
    for key in dropped:
        assert re.search(
            r"word_embeddings|position_embeddings|position_ids|\.cls\."
            r"|layer\.\d+\.(intermediate|output)\.",
            key,
        ), key
        assert "_query" not in key
    assert any(".cls.predictions.decoder.weight" in k for k in dropped)


def test_round_trip(loaded):
    modality, _, ref, ours, dropped = loaded
    back = ours_to_reference(ours, modality)
    assert set(back) == set(ref) - set(dropped)
    for key, value in back.items():
        assert value is ref[key]


def test_matches_reference_outputs(loaded, fixtures_dir):
    modality, model, *_ = loaded
    errors = {}
    with torch.no_grad():
        if modality == "visual":
            x = load_file(str(fixtures_dir / "b_vl_projector/inputs.safetensors"))["visual_feature"]
            want = load_file(str(fixtures_dir / "b_vl_projector/outputs.safetensors"))["visual_embeds"]
            errors["visual"] = (model(x, tokens_per_frame=16) - want).abs().max().item()
            assert want.shape == (2, 8, 64)
        else:
            inp = load_file(str(fixtures_dir / "c_al_projector/inputs.safetensors"))
            out = load_file(str(fixtures_dir / "c_al_projector/outputs.safetensors"))
            got3, got4 = model(inp["audio_feature_3d"]), model(inp["audio_feature_4d"])
            assert got3.shape == (2, 4, 64) and got4.shape == (2, 8, 64)
            errors["audio_3d"] = (got3 - out["audio_embeds_from_3d"]).abs().max().item()
            errors["audio_4d"] = (got4 - out["audio_embeds_from_4d"]).abs().max().item()
    print("max abs errors:", errors)
    assert max(errors.values()) < ATOL, errors


def test_cross_attentions_and_encode_queries(loaded):
    modality, model, *_ = loaded
    width = model.encoder_width
    x = torch.randn(2, 3, 16, width)
    with torch.no_grad():
        plain = model(x)
        res = model(x, return_cross_attentions=True)
        enc = model.encode_queries(x)
    assert isinstance(res, ProjectorOutput)
    torch.testing.assert_close(res.embeds, plain, atol=1e-6, rtol=1e-5)
    assert len(res.cross_attentions) == 2
    for probs in res.cross_attentions:
        assert probs.shape == (6, 4, 4, 16)
        torch.testing.assert_close(probs.sum(-1), torch.ones(6, 4, 4))
    assert enc.last_hidden_state.shape == (6, 4, 32) and enc.cross_attentions is None
    with torch.no_grad():  # flattened visual layout == 4-D layout
        flat = model(x.reshape(2, 48, width), tokens_per_frame=16)
    torch.testing.assert_close(flat, plain, atol=1e-6, rtol=1e-5)


def test_bad_inputs_and_keys(loaded):
    modality, model, ref, *_ = loaded
    with pytest.raises(ValueError):
        model(torch.randn(2, 30, model.encoder_width), tokens_per_frame=16)
    with pytest.raises(ValueError):
        model(torch.randn(2, 16, model.encoder_width + 1))
    bad = dict(ref)
    bad[f"{modality}_Qformer.bert.encoder.layer.0.mystery.weight"] = torch.zeros(1)
    with pytest.raises(CheckpointError, match="mystery"):
        reference_to_ours(bad)
    with pytest.raises(CheckpointError):
        ours_to_reference({"nonsense.weight": torch.zeros(1)}, modality)


def _official_rows(fixtures_dir: Path, modality: str) -> tuple[dict[str, list[int]], set[str]]:
    """Rows of the 7B key dump: ``{key: shape}`` and the keys marked ``[buffer]`` (buffers/aliases)."""
    path = fixtures_dir.parent / "crab-official-keys.tsv"
    if not path.is_file():
        pytest.skip(f"{path} not found")
    root, rows, buffers = OFFICIAL_ROOTS[modality], {}, set()
    for line in path.read_text().splitlines():
        if line.startswith(root):
            key, shape = line.split("\t")[:2]
            key = key[len(root) :]
            rows[key] = [int(s) for s in re.findall(r"\d+", shape.split("]")[0])]
            if "[buffer]" in shape:
                buffers.add(key)
    return rows, buffers


@pytest.mark.parametrize("modality", ["visual", "audio"])
def test_official_7b_keys_map_and_load(modality, fixtures_dir):
    rows, buffers = _official_rows(fixtures_dir, modality)
    assert rows
    ref = {k: torch.empty(shape, device="meta") for k, shape in rows.items()}
    ours, dropped = reference_to_ours(ref, modality)
    cfg = get_preset("crab-7b")
    qcfg = cfg.vl_qformer if modality == "visual" else cfg.al_qformer
    with torch.device("meta"):
        model = QFormerProjector.from_config(qcfg, cfg.llm.hidden_size, modality)
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert {k: tuple(v.shape) for k, v in ours.items()} == expected
    result = model.load_state_dict(ours, strict=True, assign=True)
    assert not result.missing_keys and not result.unexpected_keys
    assert len(dropped) == 2 * 6 + 3 + 7  # text FFNs, embeddings (+ids), cls head (+2 aliases)
    n_dropped = sum(ref[k].numel() for k in dropped if k not in buffers)
    assert sum(p.numel() for p in model.parameters()) + n_dropped == OFFICIAL_PARAMS[modality]
