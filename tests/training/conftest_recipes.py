"""Micro recipes shared by the training tests (tiny model, a handful of samples and steps)."""

import dataclasses

from crab_core.training.recipe import ALL_TASKS, SEG_TASKS, DataSpec, Phase, Recipe, micro_config


def micro_recipe(steps: int = 2, tasks=ALL_TASKS) -> Recipe:
    """Towers -> text-only LLM -> instruct (with grad accumulation) -> seg, a few steps each."""
    every = {t: 1.0 for t in tasks}
    phases = (
        Phase(
            "towers",
            steps,
            ("visual_encoder", "audio_encoder", "tower_heads"),
            every,
            lr=1e-3,
            batch_size=2,
            objective="towers",
        ),
        Phase(
            "llm", 1, ("llm_base", "embed_tokens", "lm_head"), every, lr=1e-3, batch_size=2, text_only=True
        ),
        Phase(
            "instruct",
            steps,
            ("lora", "vl_projector", "al_projector", "llm_base"),
            every,
            lr=1e-3,
            batch_size=2,
            grad_accum=2,
        ),
        Phase(
            "seg", steps, ("seg_module",), {t: 1.0 for t in SEG_TASKS}, lr=1e-3, batch_size=2, mask_loss=True
        ),
    )
    return Recipe(
        name="micro",
        model=micro_config(),
        data=DataSpec(synth_per_task=1, val_per_task=0, workers=1),
        phases=phases,
        checkpoint_every=1,
        log_every=1,
        tokenizer_samples=2,
    )


def _no_dropout(cfg):
    q = {"hidden_dropout_prob": 0.0, "attention_probs_dropout_prob": 0.0}
    return dataclasses.replace(
        cfg,
        vl_qformer=dataclasses.replace(cfg.vl_qformer, **q),
        al_qformer=dataclasses.replace(cfg.al_qformer, **q),
        lora=dataclasses.replace(cfg.lora, dropout=0.0),
    )


def dist_recipe(accumulate: int = 1) -> Recipe:
    """Towers -> instruct (frozen towers, cached features) -> seg with one item per process and
    micro-step, no dropout and tight gradient clipping, so a ``W``-process run equals one process
    accumulating ``W`` times as many micro-steps (``accumulate=W``) over the same items."""
    tasks = ("ave", "avqa", "s4", "ms3")
    every = {t: 1.0 for t in tasks}
    kw, n = {"lr": 1e-3, "batch_size": 1, "max_grad_norm": 0.05}, accumulate
    phases = (
        Phase(
            "towers",
            2,
            ("visual_encoder", "audio_encoder", "tower_heads"),
            every,
            objective="towers",
            grad_accum=n,
            **kw,
        ),
        Phase("instruct", 2, ("lora", "vl_projector", "al_projector"), every, grad_accum=2 * n, **kw),
        Phase("seg", 2, ("seg_module",), {"s4": 1.0, "ms3": 1.0}, mask_loss=True, grad_accum=n, **kw),
    )
    return Recipe(
        name="dist",
        model=_no_dropout(micro_config()),
        data=DataSpec(synth_per_task=2, val_per_task=0, workers=1),
        phases=phases,
        checkpoint_every=100,
        log_every=1,
        tokenizer_samples=2,
    )
