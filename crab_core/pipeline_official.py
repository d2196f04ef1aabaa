"""crab-7b as a :class:`~crab_core.pipeline.CrabPipeline` from its official sources (local files, Hub
repo + file names, URLs), with the AVS / AVSS weight sets switched per task.

It lives above the pipeline (it builds one) and uses :mod:`crab_core.checkpoint.hub` for the files.
"""

from __future__ import annotations

import torch

from .checkpoint.hub import OfficialSources, load_crab_7b_sets, resolve
from .pipeline import CrabPipeline
from .tokenizer import CrabTokenizer


def load_crab_7b_pipeline(
    sources: OfficialSources,
    device: str | torch.device = "cpu",
    dtype: torch.dtype | None = None,
    config=None,
    **kwargs,
):
    """A :class:`~crab_core.pipeline.CrabPipeline` for crab-7b that switches the AVS / AVSS weights
    per task. ``dtype`` defaults to bf16 on a GPU and float32 on the CPU; ``kwargs`` go to the
    pipeline (e.g. ``max_duration_s``)."""
    if dtype is None:
        dtype = torch.bfloat16 if str(device).startswith("cuda") else torch.float32
    model, report, weights = load_crab_7b_sets(sources, device, dtype, config=config)
    tok = CrabTokenizer.from_dir(resolve(sources.llm), model.config)
    card = {
        "sources": {
            "llm": sources.llm,
            "clip": sources.clip,
            "beats": sources.beats,
            "crab": list(sources.crab),
        },
        "load_report": report.summary(),
    }
    pipe = CrabPipeline(model, tok, name="crab-7b", trained=bool(sources.crab), card=card, **kwargs)
    pipe.task_weights = weights if weights.sets else None
    return pipe
