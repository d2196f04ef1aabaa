"""Trainer: loss falls, checkpoints resume to an identical continuation, phases freeze the right parts."""

import dataclasses
import json

import pytest
import torch

from crab_core.training.recipe import DataSpec, Phase, Recipe, get_recipe, micro_config
from crab_core.training.trainer import Trainer

from .conftest_recipes import micro_recipe


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("render-cache")


def _trainer(recipe, out, cache, **kw):
    t = Trainer(recipe, out, progress=False, cache_dir=cache, **kw)
    t.setup()
    return t


def test_loss_falls(tmp_path, cache):
    phase = Phase(
        "fit",
        12,
        ("lora", "vl_projector", "al_projector", "llm_base", "embed_tokens", "lm_head"),
        {"caption": 1.0},
        lr=3e-3,
        batch_size=2,
        warmup_ratio=0.0,
    )
    recipe = Recipe(
        "fit",
        micro_config(),
        DataSpec(synth_per_task=2, val_per_task=0, workers=1),
        (phase,),
        checkpoint_every=100,
        log_every=4,
        tokenizer_samples=2,
    )
    t = _trainer(recipe, tmp_path, cache)
    assert t.train()
    losses = [h["loss"] for h in t.history]
    assert sum(losses[-3:]) / 3 < sum(losses[:3]) / 3 - 0.3
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert rows and {"phase", "step", "loss", "lr", "samples_per_s"} <= set(rows[0])


def test_resume_is_identical(tmp_path, cache):
    recipe = micro_recipe(steps=2)
    full = _trainer(recipe, tmp_path / "full", cache)
    assert full.train()
    part = _trainer(recipe, tmp_path / "part", cache, max_minutes=0.0)
    assert not part.train()  # stops after the first step, checkpointed
    assert len(part.history) == 1
    resumed = _trainer(recipe, tmp_path / "part", cache)
    assert resumed.train(resume=True)
    assert [h["loss"] for h in resumed.history] == pytest.approx([h["loss"] for h in full.history], abs=1e-6)
    a, b = full.model.state_dict(), resumed.model.state_dict()
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=1e-6, msg=k)


def test_snapshots_leave_training_unchanged(tmp_path, cache):
    """Exporting mid-run (learning curves) writes loadable models and changes nothing in the run."""
    from crab_core.checkpoint.pretrained import load_pretrained

    recipe = micro_recipe(steps=2)
    plain = _trainer(recipe, tmp_path / "plain", cache)
    assert plain.train()
    snap = _trainer(recipe, tmp_path / "snap", cache, snapshot_every=1)
    assert snap.train()
    assert [h["loss"] for h in snap.history] == pytest.approx([h["loss"] for h in plain.history], abs=0)
    folders = sorted(p.name for p in (tmp_path / "snap" / "snapshots").iterdir())
    lm = [p for p in recipe.phases if p.objective == "lm"]
    assert folders == sorted(f"{p.name}-{k:05d}" for p in lm for k in range(1, p.steps + 1))
    assert lm[-1] is recipe.phases[-1]  # the last snapshot is the final model
    last = load_pretrained(tmp_path / "snap" / "snapshots" / f"{lm[-1].name}-{lm[-1].steps:05d}")[0]
    for k, v in last.state_dict().items():
        torch.testing.assert_close(v, snap.model.state_dict()[k], rtol=0, atol=0, msg=k)
    assert not (tmp_path / "plain" / "snapshots").exists()


def test_phase_freezing_and_mask_loss(tmp_path, cache):
    t = _trainer(micro_recipe(steps=1), tmp_path, cache)
    counts = t.module.set_trainable(("lora",))
    assert set(counts) == {"lora"}
    llm_base = [p for n, p in t.model.llm.named_parameters() if "lora_" not in n]
    assert not any(p.requires_grad for p in llm_base)
    assert t.train()
    seg_rows = [h for h in t.history if h["phase"] == "seg"]
    assert seg_rows
    log = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert any(r.get("phase") == "seg" and r.get("mask_loss", 0) > 0 for r in log)


def test_export_loads_in_pipeline(tmp_path, cache):
    from crab_core.checkpoint.pretrained import load_pretrained, read_card

    t = _trainer(micro_recipe(steps=1), tmp_path, cache)
    assert t.train()
    folder = t.export(tmp_path / "model", extra={"note": "test"})
    model, tok, _ = load_pretrained(folder)
    assert tok is not None and read_card(folder)["note"] == "test"
    for k, v in t.model.state_dict().items():
        if "rotary" not in k:
            torch.testing.assert_close(model.state_dict()[k], v, msg=k)


def test_registry():
    r = get_recipe("crab-tiny")
    assert [p.name for p in r.phases] == ["audio", "towers", "align", "instruct", "seg"]
    instruct = r.phases[3]
    assert "llm_base" not in instruct.trainable and "lora" in instruct.trainable
    assert r.phases[-1].mask_loss and r.model.compat.mode == "corrected"
    audio = r.phases[0]
    assert set(audio.trainable) == {"audio_encoder", "tower_heads"} and audio.objective == "towers"
    from crab_core.tasks import get_task

    assert all(get_task(t).variant().audio_mode == "uniform" for t in audio.tasks)


def test_v9_is_v8_with_the_llm_at_a_quarter_lr():
    from crab_core.training.candidates import V9_LLM_LR_SCALE

    v8, v9 = get_recipe("crab-tiny-v8"), get_recipe("crab-tiny-v9")
    assert v9.data == v8.data and v9.model == v8.model
    for p8, p9 in zip(v8.phases, v9.phases, strict=True):
        scaled = V9_LLM_LR_SCALE.get(p8.name, {})
        assert dataclasses.replace(p9, lr_scale=p8.lr_scale) == p8
        assert dict(p9.lr_scale) == {**p8.lr_scale, **scaled}
        assert set(scaled) <= set(p9.trainable)
    assert V9_LLM_LR_SCALE["align"]["llm_base"] == 0.25


def test_v10_is_v8_with_the_checked_avqa_layout():
    v8, v10 = get_recipe("crab-tiny-v8"), get_recipe("crab-tiny-v10")
    assert v8.data.avqa_layout == "reference" and v10.name == "crab-tiny-v10"
    assert v10.data == dataclasses.replace(v8.data, avqa_layout="checked")
    assert v10.phases == v8.phases and v10.model == v8.model


def test_v11_is_v10_data_with_v9_rates():
    v9, v10, v11 = (get_recipe(f"crab-tiny-v{k}") for k in (9, 10, 11))
    assert v11.data == v10.data and v11.phases == v9.phases and v11.model == v10.model
    assert v11.data.avqa_layout == "checked" and v11.name == "crab-tiny-v11"


def test_tower_loss_skips_frozen_towers(tmp_path, cache):
    """An audio-only tower phase never runs CLIP; a frozen BEATs without probes is skipped too."""
    from crab_core.training.towers import tower_loss

    t = _trainer(micro_recipe(steps=1, tasks=("ave", "avvp")), tmp_path, cache)
    assert t.module.tower_heads.seg_probe is None  # built only for recipes with a seg-probe phase
    calls = {"v": 0, "a": 0}
    t.model.visual_encoder.register_forward_hook(lambda *a: calls.__setitem__("v", calls["v"] + 1))
    t.model.audio_encoder.register_forward_hook(lambda *a: calls.__setitem__("a", calls["a"] + 1))
    batch = t.micro_batch(0, 0, 0)
    t.module.set_trainable(("audio_encoder", "tower_heads"))
    out = tower_loss(t.model, t.module.tower_heads, batch)
    assert calls == {"v": 0, "a": 1} and float(out["vision_loss"]) == 0.0 and float(out["audio_loss"]) > 0
    out["loss"].backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in t.model.audio_encoder.parameters())
    t.module.set_trainable(("visual_encoder", "tower_heads"))
    out = tower_loss(t.model, t.module.tower_heads, batch)
    assert calls == {"v": 1, "a": 1} and float(out["vision_loss"]) > 0 and float(out["audio_loss"]) == 0.0


def test_seg_probe_phase_trains_lora_through_seg_token_states(tmp_path, cache):
    """``seg_probe_weight`` adds the seg-token probe loss (no mask decoder run) and its gradient reaches
    I-LoRA."""
    from crab_core.training.recipe import SEG_TASKS

    phase = Phase(
        "probe",
        1,
        ("lora", "tower_heads"),
        {t: 1.0 for t in SEG_TASKS},
        lr=1e-3,
        batch_size=4,
        seg_probe_weight=1.0,
    )
    recipe = micro_recipe(steps=1, tasks=SEG_TASKS).replace(phases=(phase,))
    t = _trainer(recipe, tmp_path, cache)
    assert all("seg_classes" in it.raw.labels for it in t.items)
    t.module.set_trainable(phase.trainable)
    t.module.seg_probe_weight, t.module.mask_loss = 1.0, False
    out = t.module(t.micro_batch(0, 0, 0))
    assert "mask_loss" not in out and float(out["seg_probe_loss"]) > 0
    out["loss"].backward()
    lora_b = [p for n, p in t.model.named_parameters() if "lora_B" in n]
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in lora_b)
    assert t.module.tower_heads.seg_probe.head.weight.grad.abs().sum() > 0


def test_answer_mean_lm_loss_weighs_each_answer_equally():
    import torch.nn.functional as F

    from crab_core.training.module import answer_mean_lm_loss

    torch.manual_seed(0)
    logits = torch.randn(2, 6, 11)
    labels = torch.full((2, 6), -100)
    labels[0, 1:6] = torch.tensor([1, 2, 3, 4, 5])  # a long answer: 5 tokens
    labels[1, 4:6] = torch.tensor([7, 8])  # a short one: 2 tokens
    ce = F.cross_entropy(logits[:, :-1].transpose(1, 2), labels[:, 1:].clamp_min(0), reduction="none")
    long, short = ce[0, 0:5].mean(), ce[1, 3:5].mean()
    got = answer_mean_lm_loss(logits, labels)
    assert torch.allclose(got, (long + short) / 2)
    token = F.cross_entropy(logits[:, :-1].reshape(-1, 11), labels[:, 1:].reshape(-1), ignore_index=-100)
    assert not torch.allclose(got, token)  # the token mean weighs the long answer 5:2
    labels[1] = -100  # a row without answer tokens is left out, not counted as zero
    assert torch.allclose(answer_mean_lm_loss(logits, labels), long)


def test_phase_lm_weighting_is_checked():
    from crab_core.errors import ConfigError
    from crab_core.training.recipe import Phase

    assert Phase("p", 1, ("lora",), {"avqa": 1.0}).lm_weighting == "token"
    with pytest.raises(ConfigError, match="lm_weighting"):
        Phase("p", 1, ("lora",), {"avqa": 1.0}, lm_weighting="sample")


def test_v12_is_v10_with_the_flag_loss_in_every_llm_phase():
    from crab_core.training.candidates import V12_FLAG_WEIGHT

    v10, v12 = get_recipe("crab-tiny-v10"), get_recipe("crab-tiny-v12")
    assert v12.data == v10.data and v12.model == v10.model and v12.name == "crab-tiny-v12"
    for p10, p12 in zip(v10.phases, v12.phases, strict=True):
        weighted = p10.name in ("align", "instruct", "seg")
        assert p12.flag_weight == (V12_FLAG_WEIGHT if weighted else 0.0) and p10.flag_weight == 0.0
        assert dataclasses.replace(p12, flag_weight=0.0) == p10


def test_v13_is_v12_with_existential_questions_added():
    from crab_core.training.candidates import V13_CHECKED_QUESTIONS

    v12, v13 = get_recipe("crab-tiny-v12"), get_recipe("crab-tiny-v13")
    assert v13.phases == v12.phases and v13.model == v12.model and v13.name == "crab-tiny-v13"
    assert v12.data.avqa_checked_questions == 0
    assert v13.data.avqa_checked_questions == V13_CHECKED_QUESTIONS > 0
    assert dataclasses.replace(v13.data, avqa_checked_questions=0) == v12.data


def test_flag_weight_adds_the_flags_loss_to_the_phase_loss(tmp_path, cache):
    """A phase with ``flag_weight`` logs ``flag_loss`` and adds it; the trainer takes the flag's token
    ids from its tokenizer (here set by hand to a pair that occurs in the micro run's AVQA answers)."""
    from crab_core.training.flags import FlagTokens

    phase = Phase(
        "fit", 2, ("lora",), {"avqa": 1.0}, lr=1e-3, batch_size=4, warmup_ratio=0.0, flag_weight=2.0
    )
    recipe = Recipe(
        "flags",
        micro_config(),
        DataSpec(synth_per_task=4, val_per_task=0, workers=1, avqa_layout="checked"),
        (phase,),
        checkpoint_every=100,
        log_every=1,
        tokenizer_samples=2,
    )
    t = _trainer(recipe, tmp_path, cache)
    answers = [it.answer_ids.tolist() for it in t.items]
    pairs = {(a[k], a[k + 1]) for a in answers for k in range(len(a) - 1)}
    paren, yes = min(pairs)  # a pair present in every epoch order: all four answers are drawn
    t.module.flag_tokens = FlagTokens(paren=paren, yes=yes, no=-1)
    assert t.train()
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    logged = [r for r in rows if "flag_loss" in r]
    assert logged and all(r["flag_loss"] > 0 for r in logged)
    assert all(r["loss"] >= 2.0 * r["flag_loss"] for r in logged)
