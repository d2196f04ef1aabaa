"""Text corpus for training a tokenizer: every task prompt and SynthAV answers/questions."""

from __future__ import annotations

from ..tasks import TASKS
from ..tasks.prompts import ORDINALS, build_prompt


def corpus(samples_per_task: int = 40, seed: int = 0, image_size: int = 32) -> list[str]:
    """Prompts of every task and variant plus SynthAV targets (rendered at a small size)."""
    from ..synthav import TASKS as SYNTH_TASKS
    from ..synthav import render_sample, task_seed

    texts: list[str] = []
    for spec in TASKS.values():
        for variant in spec.variants:
            for i in range(len(ORDINALS) if "{nth}" in spec.variant(variant).template else 1):
                q = "Is the drum louder than the guitar?" if spec.needs_question else None
                idx = i if i < spec.num_frames else None
                if "{nth}" in spec.variant(variant).template and idx is None:
                    continue
                texts.append(build_prompt(spec, question=q, variant=variant, frame_index=idx))
    for task in SYNTH_TASKS:
        for k in range(samples_per_task):
            s = render_sample(task_seed("train", task, k, seed), task, image_size=image_size)
            texts.append(s.output)
            if s.question:
                texts.append(s.question)
    return texts
