"""Attribution sanity on SynthAV: do the frames / seconds where the queried object is visible /
sounding receive more attribution than the others?

AVE samples are rendered in memory (10 frames, one per second; 10 one-second audio segments).
The object is the AV event's class (``gt["event"]``); its visible and sounding seconds come from
the scene ``meta``. For each sample and attribution level the *localisation ratio* is the mean
share of |attribution| on the object's units over the mean share on the other units (1 = no
preference); the report gives the mean ratio and the fraction of samples with ratio > 1. Levels
``*_av`` use the seconds where the object is both visible and sounding (the AV event).
"""

from __future__ import annotations

import logging
import time

import numpy as np

from .ablation import generate
from .attribution import attribute, localization_ratio, object_units
from .inputs import from_synth

log = logging.getLogger(__name__)

_LEVELS = {  # level -> (Attribution field, which units are "inside")
    "embedding_frames_visible": ("frame_scores", "visible"),
    "embedding_seconds_sounding": ("second_scores", "sounding"),
    "pixel_frames_visible": ("pixel_frame_scores", "visible"),
    "fbank_seconds_sounding": ("fbank_second_scores", "sounding"),
    "embedding_frames_av": ("frame_scores", "av_frames"),
    "embedding_seconds_av": ("second_scores", "av_seconds"),
    "pixel_frames_av": ("pixel_frame_scores", "av_frames"),
    "fbank_seconds_av": ("fbank_second_scores", "av_seconds"),
}


def attribution_sanity(
    pipeline,
    num: int = 10,
    seed: int = 0,
    n_steps: int = 16,
    task: str = "ave",
    image_size: int = 224,
    max_new_tokens: int = 64,
) -> dict:
    """Run the localisation check on ``num`` SynthAV test samples of ``task`` (AVE by default).

    Returns:
        ``{"levels": {level: {"mean_ratio", "frac_above_1", "n"}}, "mean_delta": {...},
        "seconds_per_sample": float, "samples": [per-sample ratios]}``.
    """
    from ..synthav import render_sample, task_seed

    per_level: dict[str, list[float]] = {k: [] for k in _LEVELS}
    deltas: dict[str, list[float]] = {"embeddings": [], "pixels": [], "fbank": []}
    samples = []
    t0 = time.perf_counter()
    for k in range(num):
        s = render_sample(task_seed("test", task, k, seed), task, image_size=image_size)
        cls = s.gt.get("event") or s.gt.get("object")
        visible, sounding = object_units(s.meta, cls) if cls else (set(), set())
        raw = from_synth(pipeline, s)
        answer = generate(pipeline, raw, max_new_tokens=max_new_tokens).result.answer_ids
        att = attribute(pipeline, raw, answer, n_steps=n_steps)
        secs = list(raw.meta["frame_seconds"])
        both = visible & sounding
        inside = {
            "visible": [i for i, sec in enumerate(secs) if sec in visible],
            "sounding": sorted(sounding),
            "av_frames": [i for i, sec in enumerate(secs) if sec in both],
            "av_seconds": sorted(both),
        }
        row = {"seed": s.seed, "object": cls, "visible": sorted(visible), "sounding": sorted(sounding)}
        for level, (attr_name, which) in _LEVELS.items():
            scores = getattr(att, attr_name)
            ratio = None if scores is None else localization_ratio(scores, inside[which])
            row[level] = ratio
            if ratio is not None:
                per_level[level].append(ratio)
        for name, value in (
            ("embeddings", att.delta),
            ("pixels", att.pixel_delta),
            ("fbank", att.fbank_delta),
        ):
            if value is not None:
                deltas[name].append(abs(value))
        samples.append(row)
        log.info("sanity %d/%d: %s", k + 1, num, {k2: v for k2, v in row.items() if k2 in _LEVELS})
    levels = {
        k: {
            "mean_ratio": float(np.mean(v)) if v else None,
            "frac_above_1": float(np.mean(np.asarray(v) > 1)) if v else None,
            "n": len(v),
        }
        for k, v in per_level.items()
    }
    return {
        "task": task,
        "num": num,
        "n_steps": n_steps,
        "levels": levels,
        "mean_abs_delta": {k: float(np.mean(v)) if v else None for k, v in deltas.items()},
        "seconds_per_sample": (time.perf_counter() - t0) / max(num, 1),
        "samples": samples,
    }
