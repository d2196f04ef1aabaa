"""crab-7b on the meta device: every official / fixture key maps onto our modules."""

from __future__ import annotations

import pytest
import torch

from crab_core.checkpoint.convert import ours_to_reference, reference_to_ours
from crab_core.checkpoint.io import read_state_dict
from crab_core.config import LORA_TARGETS
from crab_core.model.builder import build_model

IN_OUT_7B = {
    "q_proj": (4096, 4096),
    "k_proj": (4096, 4096),
    "v_proj": (4096, 4096),
    "o_proj": (4096, 4096),
    "gate_proj": (4096, 11008),
    "up_proj": (4096, 11008),
    "down_proj": (11008, 4096),
}


@pytest.fixture(scope="module")
def model_7b():
    return build_model("crab-7b", device="meta")


@pytest.fixture(scope="module")
def state_7b(model_7b):
    return {k: tuple(v.shape) for k, v in model_7b.state_dict().items()}


def _official_rows(shared):
    rows = []
    for line in (shared / "crab-official-keys.tsv").read_text().splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        key, shape = line.split("\t")[:2]
        dims = tuple(int(x) for x in shape.split("]")[0].strip("[ ").split(",") if x.strip())
        rows.append((key, dims))
    return rows


def _lora_rows_7b(heads=3, r=8):
    """The documented finetune_weights.bin LoRA keys at 7B (crab-reference.md section 5)."""
    rows = []
    for i in range(32):
        for mod, (din, dout) in IN_OUT_7B.items():
            group = "self_attn" if mod in ("q_proj", "k_proj", "v_proj", "o_proj") else "mlp"
            base = f"base_model.model.model.layers.{i}.{group}.{mod}"
            rows.append((f"{base}.lora_A.weight", (r, din)))
            rows.append((f"{base}.lora_route.weight", (heads, din)))
            rows += [(f"{base}.lora_B{h}.weight", (dout, r)) for h in range(heads)]
    return rows


def _check_rows(rows, state):
    sd = {k: torch.empty(s, device="meta") for k, s in rows}
    ours, dropped, unexpected = reference_to_ours(sd)
    assert not unexpected
    leftovers = [k for k in ours if k not in state]
    assert not leftovers, leftovers[:5]
    wrong = [(k, tuple(v.shape), state[k]) for k, v in ours.items() if tuple(v.shape) != state[k]]
    assert not wrong, wrong[:5]
    return ours, dropped


def test_official_projector_and_seg_keys(model_7b, state_7b, fixtures_dir):
    rows = _official_rows(fixtures_dir.parent)
    assert len(rows) > 390
    ours, dropped = _check_rows(rows, state_7b)
    # every official key is either loaded or a documented never-used tensor
    assert len(ours) + len(dropped) == len(rows)
    assert all(
        any(
            t in d
            for t in (
                "word_embeddings",
                "position_embeddings",
                "position_ids",
                ".cls.",
                ".intermediate.",
                ".output.",
            )
        )
        for d in dropped
    )
    # and our projectors/seg module have nothing the files do not provide (except PE buffers)
    covered = set(ours)
    for prefix in ("vl_projector.", "al_projector.", "seg_module."):
        extra = [k for k in state_7b if k.startswith(prefix) and k not in covered]
        assert not extra, extra[:5]


def test_lora_and_llm_keys_7b(state_7b):
    ours, dropped = _check_rows(_lora_rows_7b(), state_7b)
    assert len(ours) == 32 * 7 * 3 and not dropped  # B heads are stacked into one tensor
    lora_params = [k for k in state_7b if "lora_" in k]
    assert sorted(lora_params) == sorted(ours)
    llm_rows = [
        ("model.embed_tokens.weight", (32017, 4096)),
        ("lm_head.weight", (32017, 4096)),
        ("model.norm.weight", (4096,)),
    ]
    llm_rows += [
        (f"model.layers.{i}.self_attn.{m}.weight", (4096, 4096))
        for i in range(32)
        for m in ("q_proj", "k_proj", "v_proj", "o_proj")
    ]
    llm_rows += [
        (f"model.layers.{i}.mlp.{m}.weight", IN_OUT_7B[m][::-1])
        for i in range(32)
        for m in ("gate_proj", "up_proj", "down_proj")
    ]
    llm_rows += [
        (f"model.layers.{i}.{n}.weight", (4096,))
        for i in range(32)
        for n in ("input_layernorm", "post_attention_layernorm")
    ]
    _check_rows(llm_rows, state_7b)
    n_lora = sum(torch.Size(state_7b[k]).numel() for k in lora_params)
    assert n_lora == 45_162_496  # crab-reference.md section 2, H=3
    assert set(LORA_TARGETS) == set(IN_OUT_7B)


def test_fixture_state_dict_maps_completely(fixtures_dir):
    from crab_core.checkpoint.fixture import config_from_fixture, read_fixture_config

    cfg = config_from_fixture(read_fixture_config(fixtures_dir))
    model = build_model(cfg, device="meta")
    state = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    sd = read_state_dict(fixtures_dir / "weights.safetensors")
    ours, dropped, unexpected = reference_to_ours(sd)
    assert not unexpected
    assert not [k for k in ours if k not in state]
    assert not [k for k in state if k not in ours and "rotary" not in k]
    assert not [k for k, v in ours.items() if tuple(v.shape) != state[k]]
    # round trip: every non-dropped key comes back identical
    back = ours_to_reference(ours)
    kept = set(sd) - set(dropped)
    # alias keys (tied decoder, shared BEATs bias table) are written back too
    assert kept <= set(back)
    assert all(torch.equal(back[k], sd[k]) for k in kept)
