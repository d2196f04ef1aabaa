"""AVS and AVSS weights side by side, switched per task, with fixture-sized released files fetched by
Hub repo id + file name (hf_hub_download monkeypatched: no network)."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from crab_core.checkpoint import hub
from crab_core.checkpoint.convert import reference_to_ours
from crab_core.checkpoint.fixture import config_from_fixture, read_fixture_config
from crab_core.checkpoint.io import read_state_dict
from crab_core.checkpoint.task_weights import BASE, TaskWeights, load_task_weights, seg_set_name
from crab_core.errors import CheckpointError

PEFT = "base_model.model."


def _membership(folder: Path) -> dict[str, tuple[bool, bool]]:
    with open(folder / "keys.tsv") as f:
        rows = csv.DictReader(f, delimiter="\t")
        return {
            r["key"]: (r["in_finetune_weights.bin"] == "yes", r["in_avs_finetune_weights.bin"] == "yes")
            for r in rows
        }


@pytest.fixture(scope="module")
def released(fixtures_dir, tmp_path_factory):
    """Fixture-sized released files (finetune, avs, avss: the two seg files differ) plus a LLaMA and a
    CLIP shard in HF layout, all cut from the fixture's ``weights.safetensors``."""
    out = tmp_path_factory.mktemp("released")
    sd = read_state_dict(fixtures_dir / "weights.safetensors", float32=True)
    member = _membership(fixtures_dir)
    gen = torch.Generator().manual_seed(7)
    finetune = {k: v for k, v in sd.items() if member[k][0]}
    avs = {k: v for k, v in sd.items() if member[k][1]}
    avss = {k: v + 0.05 * torch.randn(v.shape, generator=gen) for k, v in avs.items()}
    avs = {k: v + 0.05 * torch.randn(v.shape, generator=gen) for k, v in avs.items()}
    files = {}
    for name, part in (
        ("finetune_weights.bin", finetune),
        ("avs_finetune_weights.bin", avs),
        ("avss_finetune_weights.bin", avss),
    ):
        files[name] = out / name
        torch.save(part, files[name])
    llm_dir, clip_dir = out / "llama", out / "clip"
    llm_dir.mkdir(), clip_dir.mkdir()
    llm = {
        k.removeprefix(PEFT): v
        for k, v in sd.items()
        if (k.startswith(PEFT + "model.layers.") and ".lora_" not in k)
        or k in (PEFT + "model.norm.weight", PEFT + "lm_head.weight", PEFT + "model.embed_tokens.weight")
    }
    vocab = read_fixture_config(fixtures_dir)["llama"]["vocab_size"]  # before the added tokens
    for k in ("model.embed_tokens.weight", "lm_head.weight"):
        llm[k] = llm[k][:vocab].contiguous()
    save_file({k: v.contiguous() for k, v in llm.items()}, str(llm_dir / "model.safetensors"))
    prefix = PEFT + "model.visual_encoder.vision_tower."
    clip = {k.removeprefix(prefix): v.contiguous() for k, v in sd.items() if k.startswith(prefix)}
    save_file(clip, str(clip_dir / "model.safetensors"))
    return {"files": files, "llm": llm_dir, "clip": clip_dir, "avs": avs, "avss": avss, "sd": sd}


def _ours(ref: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return reference_to_ours(ref)[0]


def _fake_hub(monkeypatch, files: dict[str, Path]) -> list[tuple[str, str]]:
    calls = []

    def fake_download(repo_id, filename, **kwargs):
        calls.append((repo_id, filename))
        return str(files[filename])

    import huggingface_hub

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", fake_download)
    return calls


@pytest.fixture(scope="module")
def loaded(released, fixtures_dir):
    """crab-7b's loader at fixture size: released files by repo id + file name."""
    mp = pytest.MonkeyPatch()
    calls = _fake_hub(mp, released["files"])
    cfg = config_from_fixture(read_fixture_config(fixtures_dir))
    src = hub.OfficialSources(
        llm=str(released["llm"]), clip=str(released["clip"]), crab=hub.OFFICIAL_CRAB_FILES
    )
    try:
        model, report, weights = hub.load_crab_7b_sets(src, device="cpu", dtype=torch.float32, config=cfg)
    finally:
        mp.undo()
    return model, report, weights, calls


def _assert_holds(model, expected: dict[str, torch.Tensor]) -> None:
    state = model.state_dict()
    for k, v in expected.items():
        # bitwise equal; NaN == NaN (the base set of keys no released file holds keeps the
        # materialised, uninitialised values, which may hold NaN bit patterns)
        torch.testing.assert_close(state[k], v.to(state[k].dtype), rtol=0, atol=0, equal_nan=True, msg=k)


def test_official_files_fetched_by_repo_and_filename(loaded):
    *_, calls = loaded
    assert calls == [("ahsgdxhs/Crab", f) for f in hub.OFFICIAL_FILES]


def test_both_sets_kept_and_switched_per_task(loaded, released):
    model, report, weights, _ = loaded
    assert set(weights.names()) == {BASE, "avs", "avss"}
    assert any("per-task weights" in n for n in report.notes)
    avs, avss = _ours(released["avs"]), _ours(released["avss"])
    seg_key = next(k for k in avs if k.startswith("seg_module."))
    assert not torch.equal(avs[seg_key], avss[seg_key])  # the two files really differ
    assert weights.apply(model, "avss") == "avss"
    _assert_holds(model, avss)
    for task in ("s4", "ms3", "ref-avs"):
        assert weights.apply(model, task) == "avs"
        _assert_holds(model, avs)
    assert weights.apply(model, "avss") == "avss"  # back: nothing of the avs set is left over
    _assert_holds(model, avss)
    # other tasks use neither seg file (the reference loads them "for AVS tasks only")
    assert weights.apply(model, "ave") == BASE
    _assert_holds(model, weights.sets[BASE])
    emb = "llm.base_model.model.model.embed_tokens.weight"
    assert not torch.equal(model.state_dict()[emb], avs[emb].to(model.state_dict()[emb].dtype))


def test_finetune_file_stays_for_every_task(loaded, released):
    model, _, weights, _ = loaded
    ft = _ours(torch.load(released["files"]["finetune_weights.bin"], weights_only=True))
    for task in ("avss", "s4", "ave"):
        weights.apply(model, task)
        _assert_holds(model, ft)


def test_apply_without_change_copies_nothing(loaded, monkeypatch):
    model, _, weights, _ = loaded
    weights.apply(model, "s4")
    monkeypatch.setattr(model, "state_dict", lambda *a, **k: pytest.fail("copied again"))
    assert weights.apply(model, "ms3") == "avs"


def test_missing_avss_set_falls_back_to_avs(released, fixtures_dir):
    from crab_core.checkpoint.fixture import load_fixture_model

    model, *_ = load_fixture_model(fixtures_dir)
    weights = load_task_weights(model, [released["files"]["avs_finetune_weights.bin"]])
    assert weights.set_for("avss") == "avs" and weights.set_for("ave") == BASE


def test_two_files_of_one_set_refused(released, fixtures_dir, tmp_path):
    from crab_core.checkpoint.fixture import load_fixture_model

    model, *_ = load_fixture_model(fixtures_dir)
    other = tmp_path / "avs_again.bin"
    other.write_bytes(released["files"]["avs_finetune_weights.bin"].read_bytes())
    with pytest.raises(CheckpointError, match="two avs files"):
        load_task_weights(model, [released["files"]["avs_finetune_weights.bin"], other])


def test_set_names_from_paths():
    assert seg_set_name("x/avss_finetune_weights.bin") == "avss"
    assert seg_set_name("avss_ckpt/finetune_weights.bin") == "avss"
    assert seg_set_name("avs_finetune_weights.bin") == "avs"


def test_pipeline_switches_inside_prepare_and_keys_its_cache(loaded):
    """infer, eval and the app all reach the model through CrabPipeline: _encode switches the set and
    the clip cache is keyed by it."""
    from crab_core.pipeline import CrabPipeline

    model, _, weights, _ = loaded
    pipe = CrabPipeline(model, tokenizer=None, name="fixture")
    pipe.task_weights = weights
    seen = []
    pipe._key = lambda *a: seen.append(weights.active) or ("k", len(seen))
    for task in ("avss", "s4", "ave"):
        with pytest.raises(Exception):  # noqa: B017 - no media: only the switch before loading matters
            pipe.encode(task)
    assert seen == ["avss", "avs", BASE]
    assert pipe.use_task_weights("ms3") == "avs"


def test_engine_switches_for_attention_and_attribution(monkeypatch):
    from types import SimpleNamespace

    from app.engine import Engine

    used = []
    pipe = SimpleNamespace(use_task_weights=used.append, max_duration_s=60.0)
    monkeypatch.setattr("crab_core.interpret.inputs.load_input", lambda p, r: "raw")
    record = SimpleNamespace(request=SimpleNamespace(task="avss"))
    assert Engine(pipe)._raw(record) == "raw" and used == ["avss"]


def test_task_weights_move_with_the_model():
    tw = TaskWeights(sets={BASE: {"a": torch.zeros(2)}, "avs": {"a": torch.ones(2)}})
    assert tw.to("cpu").nbytes() == 16


def test_infer_and_eval_load_crab_7b_through_the_switching_loader(monkeypatch):
    """``infer`` and ``eval`` build crab-7b with cli_common.load_pipeline: the loader that keeps both sets."""
    import argparse
    from types import SimpleNamespace

    from crab_core import cli_common, pipeline_official

    seen = {}

    def fake(src, device, dtype, **kwargs):
        seen.update(src=src, device=device, dtype=dtype, kwargs=kwargs)
        return SimpleNamespace(model=torch.nn.Linear(2, 2))

    monkeypatch.setattr(pipeline_official, "load_crab_7b_pipeline", fake)
    monkeypatch.setattr(cli_common, "apply_threads", lambda model, threads: 1)  # keep this process's threads
    files = list(hub.OFFICIAL_CRAB_FILES)
    args = argparse.Namespace(
        model="crab-7b", device="cpu", llm=None, clip=None, beats="https://x/b.pt", crab=files, threads=1
    )
    cli_common.load_pipeline(args)
    assert seen["src"].crab == tuple(files) and seen["src"].beats == "https://x/b.pt"
    assert seen["dtype"] == torch.float32 and "max_duration_s" in seen["kwargs"]
