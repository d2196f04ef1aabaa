"""SegModule vs the reference goldens (reference-fixtures README 4.f), key mapping and corrected mode."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from crab_core.config import CompatConfig, SegConfig
from crab_core.errors import CheckpointError
from crab_core.model.seg.seg_module import (
    FUSION_KEYS,
    PE_BUFFER_KEYS,
    SegModule,
    ours_to_reference,
    reference_to_ours,
)

PREFIX = "base_model.model.model.seg_module."
ATOL = 1e-5
SCENARIOS = ("s4_avss", "ms3_s4", "avss_avss")


# ----------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def ref_weights(fixtures_dir: Path) -> dict[str, torch.Tensor]:
    """Reference seg-module tensors, keys relative to ``seg_module.``, bf16 -> fp32."""
    sd = load_file(fixtures_dir / "weights.safetensors")
    return {k[len(PREFIX) :]: v.float() for k, v in sd.items() if k.startswith(PREFIX)}


@pytest.fixture(scope="module")
def tiny_kwargs(fixtures_dir: Path) -> dict:
    cfg = json.loads((fixtures_dir / "config.json").read_text())
    seg = cfg["seg"]
    return dict(
        d_model=cfg["d_model"],
        vit_dim=seg["vit_image_embedding_dim"],
        num_queries=seg["avs_query_num"],
        low_res_mask_size=seg["low_res_mask_size"],
        image_size=seg["image_size"],
        patch_size=seg["patch_size"],
        decoder_depth=seg["mask_decoder_transformer_depth"],
        query_generator_layers=seg["query_generator_num_layers"],
    )


def _build(kwargs: dict, weights: dict[str, torch.Tensor], **extra) -> SegModule:
    model = SegModule(**kwargs, **extra).eval()
    sd, dropped = reference_to_ours(weights)
    assert dropped == []
    result = model.load_state_dict(sd, strict=not extra.get("learnable_fusion", False))
    if extra.get("learnable_fusion"):
        assert sorted(result.missing_keys) == sorted(FUSION_KEYS) and not result.unexpected_keys
    return model


@pytest.fixture(scope="module")
def ref_model(tiny_kwargs, ref_weights) -> SegModule:
    return _build(tiny_kwargs, ref_weights)


@pytest.fixture(scope="module")
def f_seg(fixtures_dir: Path):
    meta = json.loads((fixtures_dir / "f_seg" / "meta.json").read_text())
    tasks = {s["name"]: s["tasks"] for s in meta["scenarios"]}
    return (
        tasks,
        load_file(fixtures_dir / "f_seg" / "inputs.safetensors"),
        load_file(fixtures_dir / "f_seg" / "outputs.safetensors"),
    )


def _run(model: SegModule, f_seg, name: str, with_gt: bool = True):
    tasks, inputs, _ = f_seg
    feats = [inputs[f"{name}.multi_scale_feature_{i}"] for i in range(2)]
    gt = inputs[f"{name}.gt_mask"] if with_gt else None
    with torch.no_grad():
        return model(inputs[f"{name}.pred_embeddings"], feats, tasks[name], gt)


def _select(out, field: str, idx: list[str]) -> torch.Tensor:
    if field == "pred_masks":
        return out.pred_masks[int(idx[0])]
    if field == "level_logits":
        return out.level_logits[int(idx[0])][int(idx[1])]
    if field == "query_generator_out":
        return out.query_generator_out[int(idx[0])][int(idx[1])]
    if field == "text_hidden_fcs_out":
        return out.text_hidden_fcs_out
    if field == "mask_loss":
        return out.mask_loss
    raise AssertionError(f"unknown golden field {field}")


# ----------------------------------------------------------------------------- goldens
@pytest.mark.parametrize("name", SCENARIOS)
def test_matches_reference_goldens(ref_model, f_seg, name):
    _, _, golden = f_seg
    out = _run(ref_model, f_seg, name)
    keys = [k for k in golden if k.startswith(name + ".")]
    assert keys
    worst = 0.0
    for key in keys:
        field, *idx = key[len(name) + 1 :].split(".")
        got, want = _select(out, field, idx), golden[key]
        assert got.shape == want.shape, key
        err = (got - want).abs().max().item()
        worst = max(worst, err)
        assert err <= ATOL, f"{key}: max abs err {err:.3g}"
    print(f"{name}: max abs err {worst:.3g} over {len(keys)} tensors")


def test_pred_masks_shapes_and_heads(ref_model, f_seg):
    out = _run(ref_model, f_seg, "s4_avss", with_gt=False)
    assert out.mask_loss is None
    assert [tuple(p.shape) for p in out.pred_masks] == [(1, 56, 56), (71, 56, 56)]


def test_query_generator_chaining_changes_masks(tiny_kwargs, ref_weights, ref_model, f_seg):
    base = _run(ref_model, f_seg, "s4_avss", with_gt=False).pred_masks
    chained = _build(tiny_kwargs, ref_weights, chain_query_generator=True)
    new = _run(chained, f_seg, "s4_avss", with_gt=False).pred_masks
    assert max((a - b).abs().max().item() for a, b in zip(base, new)) > 1e-3
    # Reference mode: layer 0 is dead, perturbing it changes nothing.
    dead = _build(tiny_kwargs, ref_weights)
    with torch.no_grad():
        for p in dead.mask_decoder.query_generator.layers[0].parameters():
            p.add_(torch.randn_like(p))
    same = _run(dead, f_seg, "s4_avss", with_gt=False).pred_masks
    assert all(torch.equal(a, b) for a, b in zip(base, same))


def test_learnable_fusion_equals_reference_at_init(tiny_kwargs, ref_weights, ref_model, f_seg):
    learn = _build(tiny_kwargs, ref_weights, learnable_fusion=True)
    a = _run(ref_model, f_seg, "s4_avss")
    b = _run(learn, f_seg, "s4_avss")
    assert all(torch.equal(x, y) for x, y in zip(a.pred_masks, b.pred_masks))
    assert torch.equal(a.mask_loss, b.mask_loss)


def test_mean_reduction(tiny_kwargs, ref_weights, ref_model, f_seg):
    mean_model = _build(tiny_kwargs, ref_weights, loss_reduction="mean")
    for name in ("ms3_s4", "avss_avss"):  # single-group batches: mean = reference sum / B
        ref = _run(ref_model, f_seg, name).mask_loss
        assert torch.allclose(_run(mean_model, f_seg, name).mask_loss, ref / 2, atol=1e-6)


# ----------------------------------------------------------------------------- key mapping
def test_fixture_strict_load_and_round_trip(tiny_kwargs, ref_weights):
    model = SegModule(**tiny_kwargs)
    ours, dropped = reference_to_ours(ref_weights)
    result = model.load_state_dict(ours, strict=True)
    assert not result.missing_keys and not result.unexpected_keys
    assert set(model.state_dict()) == set(ours)
    back = ours_to_reference(ours)
    assert set(back) == set(ref_weights) - set(dropped)
    assert all(back[k] is ref_weights[k] for k in back)
    assert "text_proj.0.weight" in ours and "mask_decoder.binary_classifier.weight" in ours
    assert set(PE_BUFFER_KEYS) <= set(ours)


def test_unknown_keys_raise(ref_weights):
    with pytest.raises(CheckpointError, match="bogus"):
        reference_to_ours({**ref_weights, "mask_decoder.bogus.weight": torch.zeros(1)})
    with pytest.raises(CheckpointError, match="text_hidden_fcs"):
        ours_to_reference({"text_hidden_fcs.0.0.weight": torch.zeros(1)})


def _official_rows(shared: Path) -> dict[str, tuple[int, ...]]:
    rows = {}
    for line in (shared / "crab-official-keys.tsv").read_text().splitlines():
        if not line.startswith("model.seg_module."):
            continue
        key, shape = line.split("\t")
        dims = re.match(r"\[([^\]]*)\]", shape.strip()).group(1)
        rows[key[len("model.seg_module.") :]] = tuple(int(d) for d in dims.split(",") if d.strip())
    return rows


def test_7b_key_list_on_meta(fixtures_dir: Path):
    rows = _official_rows(fixtures_dir.parent)
    with torch.device("meta"):
        model = SegModule.from_config(
            SegConfig(), d_model=4096, vit_dim=1024, patch_size=14, compat=CompatConfig(mode="reference")
        )
    ref = ours_to_reference(model.state_dict())
    assert set(ref) == set(rows)
    assert {k: tuple(v.shape) for k, v in ref.items()} == rows
    assert sum(p.numel() for p in model.parameters()) == 29_089_696
    assert {k for k, _ in model.named_buffers()} == set(PE_BUFFER_KEYS)


# ----------------------------------------------------------------------------- corrected mode
def _tiny_corrected(mode: str = "corrected") -> SegModule:
    seg = SegConfig(
        prompt_embed_dim=32,
        mlp_dim=32,
        num_heads=4,
        num_queries=4,
        low_res_mask_size=16,
        image_size=28,
        num_avss_classes=5,
    )
    return SegModule.from_config(seg, d_model=16, vit_dim=8, patch_size=14, compat=CompatConfig(mode=mode))


def _tiny_batch():
    emb = torch.randn(3, 6, 16)
    feats = [torch.randn(3, 2 * 4, 8) for _ in range(2)]  # 2 frames of a 2x2 patch grid
    gt = torch.stack(
        [
            (torch.rand(1, 28, 28) > 0.5).float(),
            torch.randint(0, 5, (1, 28, 28)).float(),
            torch.zeros(1, 28, 28),
        ]
    )
    return emb, feats, ["s4", "avss", "avqa"], gt


def test_corrected_mode_fusion_params_and_gradients():
    model = _tiny_corrected()
    assert model.loss_reduction == "mean" and model.mask_decoder.query_generator.chain
    params = dict(model.named_parameters())
    assert params["token_fusion"].shape == (2, 3) and params["scale_fusion"].shape == (2,)
    assert set(FUSION_KEYS) <= set(model.state_dict())
    out = model(*_tiny_batch())
    assert [tuple(p.shape) for p in out.pred_masks] == [(1, 28, 28), (5, 28, 28), (1, 28, 28)]
    out.mask_loss.backward()
    for name in ("token_fusion", "scale_fusion"):
        assert params[name].grad is not None and params[name].grad.abs().sum() > 0, name
    layer0 = model.mask_decoder.query_generator.layers[0]
    assert all(p.grad is not None for p in layer0.parameters())
    assert sum(p.grad.abs().sum() for p in layer0.parameters()) > 0
    assert set(ours_to_reference(model.state_dict())).isdisjoint(FUSION_KEYS)


def test_reference_mode_layer0_gets_no_gradient():
    model = _tiny_corrected("reference")
    assert model.loss_reduction == "sum" and not model.learnable_fusion
    assert not set(FUSION_KEYS) & set(model.state_dict())
    model(*_tiny_batch()).mask_loss.backward()
    assert all(p.grad is None for p in model.mask_decoder.query_generator.layers[0].parameters())
    assert all(p.grad is not None for p in model.mask_decoder.query_generator.layers[1].parameters())


def test_no_avs_sample_gives_attached_zero_loss():
    model = _tiny_corrected()
    emb, feats, _, gt = _tiny_batch()
    loss = model(emb, feats, ["avqa", "ave", "avvp"], gt).mask_loss
    assert loss.item() == 0.0 and loss.requires_grad


def test_bad_inputs_raise():
    model = _tiny_corrected()
    emb, feats, tasks, _ = _tiny_batch()
    with pytest.raises(ValueError, match="seg tokens"):
        model(emb[:, :5], feats, tasks)
    with pytest.raises(ValueError, match="task names"):
        model(emb, feats, tasks[:2])
    with pytest.raises(ValueError, match="multi-scale"):
        model(emb, feats[:1], tasks)


def test_avss_balance_mixes_pixel_and_class_means():
    from crab_core.model.seg.losses import avss_ce, mask_loss

    torch.manual_seed(0)
    logits = torch.randn(71, 8, 8)
    target = torch.zeros(1, 8, 8)
    target[0, :2, :2] = 3  # 4 object pixels, 60 background
    ce = torch.nn.functional.cross_entropy(logits[None], target.long(), reduction="none")[0]
    pixel = ce.mean()
    classes = (ce[target[0] == 3].mean() + ce[target[0] == 0].mean()) / 2
    torch.testing.assert_close(avss_ce(logits, target), pixel)
    torch.testing.assert_close(avss_ce(logits, target, 1.0), classes)
    torch.testing.assert_close(avss_ce(logits, target, 0.5), (pixel + classes) / 2)
    # reaches the total loss; binary tasks are unaffected
    gt = torch.stack([target, (target > 0).float()])
    preds = [logits, logits[:1]]
    plain = mask_loss(preds, gt, ["avss", "s4"], "mean")
    bal = mask_loss(preds, gt, ["avss", "s4"], "mean", avss_balance=1.0)
    torch.testing.assert_close(bal - plain, (classes - pixel) / 2)


def test_avss_balance_is_a_bounded_training_option_not_a_model_field():
    import dataclasses

    from crab_core.config import CrabConfig, SegConfig
    from crab_core.errors import ConfigError
    from crab_core.model.seg.seg_module import SegModule
    from crab_core.presets import crab_tiny
    from crab_core.training.recipe import Phase, get_recipe

    assert "avss_balance" not in {f.name for f in dataclasses.fields(SegConfig)}
    phases = {p.name: p.avss_balance for p in get_recipe("crab-tiny").phases}
    assert phases == {"audio": 0.0, "towers": 0.0, "align": 0.0, "instruct": 0.0, "seg": 0.5}
    with pytest.raises(ConfigError, match="avss_balance"):
        Phase("seg", 1, ("seg_module",), {"avss": 1.0}, avss_balance=1.5)
    # a config.json written before the move still loads (the retired key is dropped)
    old = crab_tiny().to_dict()
    old["seg"]["avss_balance"] = 0.5
    assert CrabConfig.from_dict(old) == crab_tiny()
    cfg = crab_tiny()
    seg = SegModule.from_config(cfg.seg, cfg.llm.hidden_size, 96, 14, cfg.compat)
    assert seg.avss_balance == 0.0  # the model alone never balances; the trainer sets it per phase
