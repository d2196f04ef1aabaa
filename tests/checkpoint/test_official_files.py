"""Loading released-format checkpoints: reports, geometry, compat notes, bad files."""

from __future__ import annotations

import pickle

import pytest
import torch

from crab_core.checkpoint.convert import LoadReport, ours_to_reference
from crab_core.checkpoint.convert_cli import main as convert_main
from crab_core.checkpoint.io import read_state_dict
from crab_core.checkpoint.official import config_for_files, geometry_from_state_dict, load_reference_files
from crab_core.errors import CheckpointError
from crab_core.model.builder import build_model
from crab_core.presets import crab_tiny


@pytest.fixture(scope="module")
def trained():
    """A crab-tiny with non-trivial LoRA / projector / seg values standing in for released weights
    (reference geometry: no per-unit index embedding, which the reference format cannot hold)."""
    model = build_model(config_for_files(crab_tiny(), []), seed=1)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_" in name or "projector" in name or "seg_module" in name:
                p.add_(0.01 * torch.randn_like(p))
    return model


def _released(model, tmp_path, which):
    """Write a file laid out like the reference's finetune / avs files (torch.save zip)."""
    sd = model.state_dict()
    if which == "finetune":
        keep = {
            k: v for k, v in sd.items() if "lora_" in k or k.startswith(("vl_projector.", "al_projector."))
        }
    else:
        keep = {
            k: v
            for k, v in sd.items()
            if k.startswith("seg_module.") or "embed_tokens" in k or "lm_head" in k
        }
    ref = ours_to_reference(keep)
    ref = {k: v for k, v in ref.items() if not k.endswith("positional_encoding_gaussian_matrix")}
    path = tmp_path / f"{which}_weights.bin"
    torch.save(ref, path)
    return path


def test_finetune_then_avs_load(trained, tmp_path):
    ft, avs = _released(trained, tmp_path, "finetune"), _released(trained, tmp_path, "avs")
    fresh = build_model(config_for_files(crab_tiny(), []), seed=2)
    report = load_reference_files(fresh, [ft])
    assert report.loaded and not report.unexpected and not report.mismatched
    assert any("added-token rows" in n for n in report.notes)
    ref = trained.state_dict()
    for k in report.loaded:
        assert torch.equal(fresh.state_dict()[k], ref[k]), k
    report = load_reference_files(fresh, [avs], report)
    assert any("positional-encoding" in n for n in report.notes)
    assert torch.equal(
        fresh.state_dict()["llm.base_model.model.lm_head.weight"], ref["llm.base_model.model.lm_head.weight"]
    )
    # only what the reference never saves: PE buffers, and (corrected mode) the fusion weights
    seg_missing = [k for k in report.missing if k.startswith("seg_module.")]
    assert all(k.endswith(("positional_encoding_gaussian_matrix", "_fusion")) for k in seg_missing)
    assert "loaded" in report.summary()


def test_geometry_read_from_tensors(trained, tmp_path):
    ft = _released(trained, tmp_path, "finetune")
    geo = geometry_from_state_dict(read_state_dict(ft))
    assert geo["num_heads"] == 3
    sd = {"base_model.model.model.seg_module.mask_decoder.avs_query_tokens.weight": torch.zeros(128, 64)}
    path = tmp_path / "seg.bin"
    torch.save(sd, path)
    cfg = config_for_files(crab_tiny(), [path])
    assert cfg.seg.num_queries == 128


def test_shape_mismatch_names_file_and_key(trained, tmp_path):
    ft = _released(trained, tmp_path, "finetune")
    sd = read_state_dict(ft)
    key = next(k for k in sd if k.endswith("lora_route.weight"))
    sd[key] = torch.zeros(5, sd[key].shape[1])  # 5 heads where the model has 3
    bad = tmp_path / "bad_heads.bin"
    torch.save(sd, bad)
    with pytest.raises(CheckpointError, match="bad_heads.bin"):
        load_reference_files(build_model(config_for_files(crab_tiny(), [])), [bad])


def test_unknown_keys_are_reported_not_ignored(tmp_path):
    bad = tmp_path / "other.bin"
    torch.save({"encoder.block.0.weight": torch.zeros(2, 2)}, bad)
    with pytest.raises(CheckpointError, match="unexpected"):
        load_reference_files(build_model(config_for_files(crab_tiny(), [])), [bad])


class _Evil:
    def __reduce__(self):
        return (print, ("pwned",))


@pytest.mark.parametrize(
    "kind", ["missing", "empty", "dir", "text", "truncated", "evil", "not_dict", "bad_st"]
)
def test_bad_files_give_clear_errors(kind, tmp_path, trained):
    p = tmp_path / "ckpt.bin"
    if kind == "empty":
        p.write_bytes(b"")
    elif kind == "dir":
        p.mkdir()
    elif kind == "text":
        p.write_text("hello, not a checkpoint\n")
    elif kind == "truncated":
        good = _released(trained, tmp_path, "finetune").read_bytes()
        p.write_bytes(good[: len(good) // 2])
    elif kind == "evil":
        torch.save({"w": torch.zeros(1), "x": _Evil()}, p, pickle_protocol=pickle.DEFAULT_PROTOCOL)
    elif kind == "not_dict":
        torch.save([torch.zeros(1)], p)
    elif kind == "bad_st":
        p = tmp_path / "x.safetensors"
        p.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{garbage")
    with pytest.raises(CheckpointError) as err:
        read_state_dict(p)
    assert p.name in str(err.value)


def test_convert_cli_round_trip(trained, tmp_path, capsys):
    ft = _released(trained, tmp_path, "finetune")
    ours = tmp_path / "ours.safetensors"
    assert convert_main([str(ft), "--to", "ours", "--out", str(ours)]) == 0
    back = tmp_path / "back.safetensors"
    assert convert_main([str(ours), "--to", "reference", "--out", str(back)]) == 0
    a, b = read_state_dict(ft), read_state_dict(back)
    assert set(a) == set(b) and all(torch.equal(a[k], b[k]) for k in a)


def test_report_is_never_silent():
    r = LoadReport(sources=["x"], missing=["llm.a", "llm.b", "seg_module.c"])
    assert "llm 2" in r.summary() and "seg_module 1" in r.summary()


def test_reference_geometry_drops_crab_tiny_only_parts():
    """crab-tiny's index embeddings, image grid and prompt decoder have no place in the reference format."""
    from crab_core.training.candidates import crab_tiny_v6_recipe

    grid = crab_tiny_v6_recipe().model
    assert grid.vl_qformer.image_grid == 4
    cfg = config_for_files(grid, [])
    assert cfg.vl_qformer.image_grid == 0 and cfg.vl_qformer.unit_embeddings == 0
    assert cfg.seg.decoder == "reference"
    assert not any("cell_proj" in k for k in build_model(cfg, seed=0).state_dict())
