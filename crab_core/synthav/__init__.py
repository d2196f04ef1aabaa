"""SynthAV: the procedural audio-visual world that trains and tests ``crab-tiny`` (see docs and
:mod:`crab_core.synthav.world` for the world's rules and parameters)."""

from .annotate import TASKS
from .generate import SynthSample, balance_report, generate_split, main_synth, render_sample, task_seed
from .world import (
    CLASSES,
    CLIP_SECONDS,
    HOLDOUT_CLASS_SLOT,
    HOLDOUT_PAIRS,
    SLOTS,
    SPLITS,
    clip_seconds,
    sample_seed,
    split_of_seed,
)

__all__ = [
    "CLASSES",
    "CLIP_SECONDS",
    "HOLDOUT_CLASS_SLOT",
    "HOLDOUT_PAIRS",
    "SLOTS",
    "SPLITS",
    "TASKS",
    "SynthSample",
    "balance_report",
    "clip_seconds",
    "generate_split",
    "main_synth",
    "render_sample",
    "sample_seed",
    "split_of_seed",
    "task_seed",
]
