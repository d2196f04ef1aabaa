"""What crosses the pipeline's boundary: requests resolved to a prompt variant, prepared inputs, results.

:func:`resolve_inputs` decides which prompt variant and target second a request runs with (shared by
:class:`crab_core.pipeline.CrabPipeline` and :mod:`crab_core.interpret.inputs`, so the app's attention
views see the same input as its answer); :func:`internal_errors` turns a failure inside the model into
:class:`~crab_core.errors.InternalError`.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .errors import CrabError, InternalError
from .model.crab import CrabSample, EncodedMedia
from .tasks import get_task


@dataclass
class TaskResult:
    """What one run produced.

    Attributes:
        task: task name.
        text: generated answer (special tokens kept, EOS removed).
        parsed: the task parser's dataclass (``parse_error`` set when malformed).
        mask: ``(S, S)`` bool mask (binary seg tasks) or int64 class map (AVSS), or None.
        mask_logits: ``(C, S, S)`` float logits, or None.
        prompt: the full prompt text.
        token_ids: ``(L,)`` prompt + answer token ids (placeholders unexpanded).
        timings: seconds per stage (``load``, ``encode``, ``generate``, ``total``).
        cached: whether the clip features came from the cache.
        variant: the prompt variant used (e.g. ``quick_start`` for S4 on an image + audio).
        notes: plain-language remarks on how the input was read (separate audio of another length, an
            image + audio prompt used for want of a video, the target second assumed, a forced mask).
        out_of_domain: the notice that a SynthAV-only model (crab-tiny) ran on an input that is not a
            SynthAV clip (:mod:`crab_core.domain`), or None.
    """

    task: str
    text: str
    parsed: Any
    mask: np.ndarray | None = None
    mask_logits: np.ndarray | None = None
    prompt: str = ""
    token_ids: list[int] = field(default_factory=list)
    answer_ids: list[int] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    cached: bool = False
    variant: str | None = None
    notes: list[str] = field(default_factory=list)
    out_of_domain: str | None = None

    def to_json(self) -> dict:
        parsed = self.parsed.__dict__ if hasattr(self.parsed, "__dict__") else self.parsed
        out = {
            "task": self.task,
            "text": self.text,
            "parsed": _jsonable(parsed),
            "timings": self.timings,
            "cached": self.cached,
            "prompt_variant": self.variant,
            "notes": list(self.notes),
            "out_of_domain": self.out_of_domain,
        }
        if self.mask is not None:
            out["mask_shape"] = list(self.mask.shape)
            out["mask_area"] = float((self.mask > 0).mean())
        return out


def _jsonable(x):
    if isinstance(x, dict):
        return {k: _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, (str, int, float, bool)) or x is None:
        return x
    return str(x)


@contextmanager
def internal_errors(what: str) -> Iterator[None]:
    """Re-raise a non-:class:`CrabError` failure inside the block as :class:`InternalError` (one line,
    says it is a bug, not the user's input; the original stays chained as ``__cause__``)."""
    try:
        yield
    except CrabError:
        raise
    except (RuntimeError, ValueError, IndexError, KeyError, TypeError, AttributeError) as exc:
        detail = " ".join(f"{type(exc).__name__}: {exc}".split())
        raise InternalError(f"{what} failed ({detail[:300]})") from exc


def resolve_inputs(
    task: str, video=None, image=None, frame_index: int | None = None, variant: str | None = None
) -> tuple[str, int | None, list[str]]:
    """The prompt variant and target second a request runs with, and notes on what was assumed.

    Without a video but with an image, a task whose default prompt needs a video (S4, MS3, Ref-AVS)
    runs its image + audio prompt (the reference's quick-start form), as AVSBench ships frame + wav.
    A missing target second of a task that needs one (1-s audio window or a prompt naming the second)
    is 0. An explicit ``variant`` is used as given.

    Returns:
        ``(variant name, frame_index, notes)``.
    """
    spec = get_task(task)
    name = variant or spec.default_variant
    pv = spec.variant(name)
    notes: list[str] = []
    if variant is None and video is None and image is not None and "video" in pv.blocks:
        alt = next(
            (v for v, p in spec.variants.items() if "video" not in p.blocks and "image" in p.blocks), None
        )
        if alt is not None:
            name, pv = alt, spec.variant(alt)
            notes.append(
                f"no video given: {spec.name} ran its image + audio prompt (the reference's "
                f"'{alt}' form) instead of its video prompt"
            )
    needs_second = pv.audio_mode == "single" or (spec.needs_mask and pv.needs_ordinal)
    if frame_index is None and needs_second:
        frame_index = 0
        what = (
            "the image is paired with the audio's first second"
            if pv.audio_mode == "single" and image
            else "the first second is segmented"
        )
        notes.append(f"no target second given: {what} (--frame-index / the target second picks another)")
    return name, frame_index, notes


@dataclass
class PreparedInput:
    """A task request turned into model input (reused by interpretability).

    ``variant`` and ``notes`` as :class:`TaskResult`; ``out_of_domain`` likewise.
    """

    sample: CrabSample
    prompt: str
    media: EncodedMedia
    cached: bool
    load_s: float
    encode_s: float
    variant: str | None = None
    notes: list[str] = field(default_factory=list)
    out_of_domain: str | None = None
