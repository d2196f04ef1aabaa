"""Micro recipes shared by the training tests (tiny model, a handful of samples and steps)."""

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
