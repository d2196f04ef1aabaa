"""Model inputs for interpretability: a request (files or SynthAV arrays) -> raw tensors -> features.

The pipeline caches *encoded* features and never exposes the pixels / fbank it encoded. Attention
maps back to patches and attributions w.r.t. pixels need those raw tensors, so this module loads
them exactly as :meth:`crab_core.pipeline.CrabPipeline.encode` does and encodes them with autograd
available on demand (the pipeline's encoders run under ``no_grad``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from ..errors import TaskError
from ..model.crab import CrabModel, CrabSample, EncodedMedia
from ..tasks import build_prompt, get_task


@dataclass
class Request:
    """One task request on media files (the arguments of :meth:`CrabPipeline.run`).

    Attributes:
        task: task name. video / audio / image: file paths or None. question: AVQA question or
        Ref-AVS expression. frame_index: target second. prompt_variant: prompt flavour (None: default).
    """

    task: str
    video: str | None = None
    audio: str | None = None
    image: str | None = None
    question: str | None = None
    frame_index: int | None = None
    prompt_variant: str | None = None

    @classmethod
    def from_row(cls, row: Mapping[str, Any], root: str | Path) -> Request:
        """Build from a manifest row (docs/manifest.md); relative paths are resolved under ``root``."""

        def path(key):
            value = row.get(key)
            return None if value is None else str(Path(root) / value)

        return cls(
            task=row["task"],
            video=path("video"),
            audio=path("audio"),
            image=path("image"),
            question=row.get("question"),
            frame_index=row.get("frame_index"),
        )


@dataclass
class RawInput:
    """Model-ready raw tensors of one request.

    Attributes:
        task: task name. prompt: prompt text. input_ids: ``(L,)`` prompt ids with placeholders.
        frames: ``(T, 3, S, S)`` CLIP-normalised video frames or None.
        audio: ``(T_a, F, 128)`` normalised fbank per second / segment or None.
        image: ``(1, 3, S, S)`` target frame or None.
        need_seg: the task decodes a mask (keep CLIP maps for the mask decoder).
        meta: free-form provenance (e.g. the SynthAV ``gt`` / ``meta``).
    """

    task: str
    prompt: str
    input_ids: Tensor
    frames: Tensor | None = None
    audio: Tensor | None = None
    image: Tensor | None = None
    need_seg: bool = False
    meta: dict = field(default_factory=dict)


def _prompt(
    pipeline,
    task: str,
    question: str | None,
    frame_index: int | None,
    variant: str | None,
    video=None,
    image=None,
):
    """Prompt of a request, with the variant and target second the pipeline would choose
    (:func:`crab_core.pipeline.resolve_inputs`: an image + audio S4 / MS3 / Ref-AVS request runs the
    image prompt)."""
    from ..pipeline import resolve_inputs

    spec = get_task(task)
    variant, frame_index, _ = resolve_inputs(task, video, image, frame_index, variant)
    pv = spec.variant(variant)
    prompt = build_prompt(spec, question=question, variant=variant, frame_index=frame_index)
    ids = torch.tensor(pipeline.tokenizer.encode(prompt), dtype=torch.long)
    return spec, pv, frame_index, prompt, ids


def _segments(spec, pv) -> int:
    """Audio segment count: for ``single`` the split's ``tot`` is the task's frame count (the pipeline
    passes ``num_seconds=1`` there, which rejects every target second but the first)."""
    return spec.num_frames if pv.audio_mode == "single" else pv.num_seconds


def _pick(spec, pv, frames: Tensor | None, image: Tensor | None, frame_index: int | None):
    """Which video / image tensors the prompt uses (as ``CrabPipeline.encode``)."""
    video = frames if "video" in pv.blocks else None
    if image is None and ("image" in pv.blocks or spec.needs_mask):
        if frames is None:
            raise TaskError(f"task {spec.name!r} needs an image or a video")
        idx = min(frame_index or 0, frames.shape[0] - 1)
        image = frames[idx : idx + 1]
    if "image" in pv.blocks and image is None:
        raise TaskError(f"task {spec.name!r} needs an image")
    if "video" in pv.blocks and video is None:
        raise TaskError(f"task {spec.name!r} needs a video")
    return video, image


def load_input(pipeline, request: Request) -> RawInput:
    """Load a request's files the way the pipeline does (same frames, fbank, prompt, duration limit)."""
    from ..media import DEFAULT_MAX_DURATION_S, load_clip

    r = request
    spec, pv, frame_index, prompt, ids = _prompt(
        pipeline, r.task, r.question, r.frame_index, r.prompt_variant, r.video, r.image
    )
    size = pipeline.model.config.vision.image_size
    clip = load_clip(
        video=r.video,
        audio=r.audio,
        image=r.image,
        task_frames=spec.num_frames,
        audio_mode=pv.audio_mode if (r.audio or r.video) else None,
        image_size=size,
        frame_index=frame_index,
        audio_segments=_segments(spec, pv),
        max_duration_s=getattr(pipeline, "max_duration_s", DEFAULT_MAX_DURATION_S),
    )
    video, image = _pick(spec, pv, clip.frames, clip.image, frame_index)
    return RawInput(spec.name, prompt, ids, video, clip.audio, image, spec.needs_mask)


def from_synth(pipeline, sample, prompt_variant: str | None = None) -> RawInput:
    """Model input of an in-memory SynthAV sample (``crab_core.synthav.render_sample``), no files.

    Frames are one per second (10), subsampled like a video to the task's frame count; the audio
    goes through the same fbank front end as audio files.
    """
    from ..media import audio_features, clip_preprocess, sample_frame_indices

    spec, pv, frame_index, prompt, ids = _prompt(
        pipeline, sample.task, sample.question, sample.frame_index, prompt_variant
    )
    size = pipeline.model.config.vision.image_size
    idx = sample_frame_indices(len(sample.frames), spec.num_frames)
    frames = clip_preprocess(np.ascontiguousarray(sample.frames[idx]), size)
    image = None
    if sample.frame_index is not None:
        image = clip_preprocess(sample.frames[sample.frame_index], size)
    wave = torch.from_numpy(np.asarray(sample.audio, dtype=np.float32))
    audio = audio_features(wave, 16000, _segments(spec, pv), mode=pv.audio_mode, index=frame_index)
    video, image = _pick(spec, pv, frames, image, frame_index)
    return RawInput(
        spec.name,
        prompt,
        ids,
        video,
        audio,
        image,
        spec.needs_mask,
        meta={"gt": sample.gt, "scene": sample.meta, "frame_seconds": idx},
    )


def synthetic_input(
    pipeline, task: str, question: str | None = None, frame_index: int | None = None, seed: int = 0
) -> RawInput:
    """Random-tensor input of the right shapes for ``task`` (tests and benchmarks)."""
    spec, pv, frame_index, prompt, ids = _prompt(pipeline, task, question, frame_index, None)
    g = torch.Generator().manual_seed(seed)
    size = pipeline.model.config.vision.image_size
    frames = torch.randn(spec.num_frames, 3, size, size, generator=g)
    fb_len = 198 if pv.audio_mode == "avqa" else 98
    audio = torch.randn(pv.num_seconds if pv.audio_mode != "single" else 1, fb_len, 128, generator=g)
    video, image = _pick(spec, pv, frames, None, frame_index)
    return RawInput(spec.name, prompt, ids, video, audio, image, spec.needs_mask)


def visual_tokens(model: CrabModel, pixels: Tensor, image: bool = False) -> tuple[Tensor, list[Tensor]]:
    """CLIP + visual projector for ``(T, 3, S, S)`` pixels with autograd kept (``image``: the
    single-frame image input).

    Returns:
        ``((T*Q, D) LLM-space rows, CLIP feature maps (1, T*P, C) per selected layer)``.
    """
    feats = model.visual_encoder(pixels.unsqueeze(0).to(model.device, model.vision_dtype))
    p = model.visual_encoder.patches_per_frame
    return model.vl_projector(feats[-1].to(model.dtype), tokens_per_frame=p, image=image)[0], feats


def audio_tokens(model: CrabModel, fbank: Tensor) -> Tensor:
    """BEATs + audio projector for ``(T, F, 128)`` fbank with autograd kept; returns ``(T*Q, D)``."""
    tokens = model.audio_encoder(fbank.unsqueeze(0).to(model.device, model.audio_dtype))
    return model.al_projector(tokens.to(model.dtype))[0]


def encode(model: CrabModel, raw: RawInput, grad: bool = False) -> EncodedMedia:
    """Encode ``raw`` like :meth:`CrabModel.encode_media`; with ``grad=True`` autograd flows to the inputs."""
    if not grad:
        with torch.no_grad():
            return model.encode_media(
                video=raw.frames, audio=raw.audio, image=raw.image, need_seg=raw.need_seg
            )
    out = EncodedMedia()
    q_a = model.config.al_qformer.num_query_tokens
    for name, px in (("video", raw.frames), ("image", raw.image)):
        if px is not None:
            out.features[name], _ = visual_tokens(model, px, image=name == "image")
            out.tokens_per_unit[name] = model.vl_projector.tokens_per_unit(name == "image")
    if raw.audio is not None:
        out.features["audio"] = audio_tokens(model, raw.audio)
        out.tokens_per_unit["audio"] = q_a
    return out


def make_sample(raw: RawInput, media: EncodedMedia, answer_ids: list[int] | None = None) -> CrabSample:
    """A :class:`CrabSample` of the prompt (plus ``answer_ids`` appended, for teacher forcing)."""
    ids = raw.input_ids
    if answer_ids:
        ids = torch.cat([ids, torch.tensor(answer_ids, dtype=torch.long)])
    return CrabSample(input_ids=ids, media=media, task=raw.task)
