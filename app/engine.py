"""The app's model side: run a task with routing capture, head ablation / forcing, attention and
attributions, on top of :class:`crab_core.pipeline.CrabPipeline` (which caches encoded clips).

Everything the views need is kept in a :class:`RunRecord` (numpy arrays and the routing trace), so
changing a view re-renders from the record and never re-encodes the clip. One lock serialises model
use (routing controls and the attention implementation are set on the shared model).
"""

from __future__ import annotations

import ctypes
import gc
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from crab_core import KIND_NAMES, CrabPipeline, CrabSample, MediaError, TaskError, TaskResult, get_task
from crab_core.interpret.capture import RoutingTrace, capture_routing
from crab_core.interpret.control import HeadControl, head_control
from crab_core.interpret.inputs import Request as MediaRequest

from . import display
from .analysis import AttentionSummary
from .durations import check_upload_durations
from .uploads import Lease

log = logging.getLogger(__name__)

#: Answer budget of a randomly initialised model (it rarely emits EOS).
RANDOM_MODEL_TOKENS = 48
MAX_NEW_TOKENS = 500
MAX_QUESTION_CHARS = 1000
#: Integrated-gradient steps: at most this many in total, and this many per forward pass.
MAX_IG_STEPS, IG_BATCH = 64, 8


def release_memory() -> None:
    """Give freed heap back to the OS (glibc keeps it after large autograd runs otherwise)."""
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc
        pass


@dataclass
class Request(MediaRequest):
    """One task request on uploaded files: the library's request plus the app's scoring inputs."""

    gt_mask: str | None = None
    max_new_tokens: int | None = None
    #: keeps the request's upload copies alive (:class:`app.uploads.Lease`) while the request lives
    lease: Lease | None = field(default=None, repr=False, compare=False)


@dataclass
class RunRecord:
    """Everything a run's views need (kept in ``gr.State``)."""

    request: Request
    result: TaskResult
    trace: RoutingTrace | None = None
    target: np.ndarray | None = None
    frames: np.ndarray | None = None
    gt: np.ndarray | None = None
    control: HeadControl | None = None
    seconds: float = 0.0
    extras: dict = field(default_factory=dict)


class Engine:
    """Model operations of the app (thread-safe: one model call at a time).

    Args:
        pipeline: the loaded pipeline. max_duration_s: longest accepted clip.
        class_names: AVSS class names for legends (index 1 = first name).
    """

    def __init__(
        self, pipeline: CrabPipeline, max_duration_s: float = 60.0, class_names: list[str] | None = None
    ) -> None:
        self.pipeline = pipeline
        self.max_duration_s = max_duration_s
        # the library applies the same limit while decoding (a header that lies about the length)
        pipeline.max_duration_s = max_duration_s
        self.class_names = class_names
        self.lock = threading.Lock()
        self._display: OrderedDict[tuple, np.ndarray] = OrderedDict()

    @property
    def model(self):
        return self.pipeline.model

    @property
    def num_heads(self) -> int:
        return int(self.model.config.lora.num_heads)

    @property
    def num_layers(self) -> int:
        return int(self.model.config.llm.num_hidden_layers)

    def default_tokens(self, task: str) -> int:
        budget = get_task(task).max_new_tokens
        return budget if self.pipeline.trained else min(budget, RANDOM_MODEL_TOKENS)

    # ------------------------------------------------------------------ checks and display media
    def check(self, req: Request) -> None:
        """Reject requests that cannot work before any decoding (clear messages naming the user's files).

        Every upload must be a file of its kind (``crab_core.media.check_file``) and the video stream,
        the audio track it uses and a separate audio file must each fit ``max_duration_s``.
        """
        from crab_core.media import check_file

        spec = get_task(req.task)
        if req.video is None and req.image is None:
            raise MediaError("upload a video (with its audio), or an image plus an audio file")
        if req.video is None and req.audio is None:
            raise MediaError("an image needs an audio file too")
        if spec.needs_question and not (req.question or "").strip():
            raise TaskError(f"the {req.task} task needs a question / expression")
        if len(req.question or "") > MAX_QUESTION_CHARS:
            raise TaskError(
                f"the question is {len(req.question)} characters long; at most {MAX_QUESTION_CHARS}"
            )
        if req.max_new_tokens is not None and not 1 <= req.max_new_tokens <= MAX_NEW_TOKENS:
            raise TaskError(f"max answer tokens must be 1..{MAX_NEW_TOKENS} (got {req.max_new_tokens})")
        names = req.lease.names if req.lease is not None else {}
        for kind, path in (
            ("video", req.video),
            ("audio", req.audio),
            ("image", req.image),
            ("mask", req.gt_mask),
        ):
            if path is not None:
                check_file(path, kind)
        check_upload_durations(req.video, req.audio, names, self.max_duration_s)
        if spec.needs_mask and req.frame_index is not None and not 0 <= req.frame_index < spec.num_frames:
            raise TaskError(f"target second must be 0..{spec.num_frames - 1} for {req.task}")

    def display_size(self, req: Request) -> tuple[int, int]:
        """``(width, height)`` the run's frames are drawn at (the input's aspect ratio)."""
        kind, path = ("image", req.image) if req.image is not None else ("video", req.video)
        native = display.native_size(path, kind) if path is not None else None
        return display.display_size(native, self.model.config.vision.image_size)

    def display_frames(self, req: Request) -> np.ndarray | None:
        """``(T, H, W, 3)`` uint8 frames as the task samples them, at the input's aspect ratio
        (:mod:`app.display`; cached per file)."""
        from crab_core.media import read_video

        if req.video is None:
            return None
        spec = get_task(req.task)
        size = self.display_size(req)
        p = Path(req.video)
        key = (str(p.resolve()), p.stat().st_mtime_ns, spec.num_frames, size)
        if key not in self._display:
            square = read_video(p, spec.num_frames, max(size), max_duration_s=self.max_duration_s)[0]
            self._display[key] = display.resize_frames(square, size)
            while len(self._display) > 8:
                self._display.popitem(last=False)
        return self._display[key]

    def target_frame(self, req: Request, frames: np.ndarray | None) -> np.ndarray | None:
        """The frame the answer is about (the image, or the task's target frame), for display."""
        from crab_core.media import load_image_uint8

        if req.image is not None:
            image = load_image_uint8(req.image, None)
            return display.resize_frames(image[None], self.display_size(req))[0]
        if frames is None:
            return None
        return frames[min(req.frame_index or 0, len(frames) - 1)]

    def load_gt(self, req: Request) -> np.ndarray | None:
        from crab_core.media import mask_from_any

        if req.gt_mask is None:
            return None
        # a class mask upload may be an index or a palette PNG
        kind = "auto" if get_task(req.task).mask_kind == "classes" else "binary"
        return mask_from_any(req.gt_mask, self.model.config.vision.image_size, kind)[0].numpy()

    # ------------------------------------------------------------------ runs
    @contextmanager
    def _controlled(self, control: HeadControl | None) -> Iterator[None]:
        """The library's scoped routing control (:func:`crab_core.interpret.control.head_control`)."""
        with head_control(self.model, control):
            yield

    def run(
        self, req: Request, control: HeadControl | None = None, capture: bool = True, force_mask: bool = True
    ) -> RunRecord:
        """Run ``req`` (optionally under a head intervention) and capture its routing trace.

        With ``force_mask``, a seg answer without its seg tokens still gets a mask: the span
        ``<mask_start><mask_0..N><mask_end>`` is appended to the answer and decoded teacher-forced
        (``record.extras["forced_mask"]`` is then True; the UI says so).
        """
        from crab_core.interpret.ablation import seg_token_ids

        self.check(req)
        t0 = time.perf_counter()
        with self.lock:
            prep = self.pipeline.prepare(
                req.task, req.video, req.audio, req.image, req.question, req.frame_index
            )
            t1 = time.perf_counter()
            budget = req.max_new_tokens or self.default_tokens(req.task)
            with ExitStack() as stack:
                stack.enter_context(self._controlled(control))
                rec = stack.enter_context(capture_routing(self.model)) if capture else None
                gen = self.model.generate([prep.sample], max_new_tokens=budget)
            t2 = time.perf_counter()
            result = self.pipeline.result_from_generation(
                req.task,
                prep,
                gen,
                {"load": prep.load_s, "encode": prep.encode_s, "generate": t2 - t1, "total": t2 - t0},
            )
            trace = None
            if rec is not None:
                n = int(gen.decode.lengths[0])
                trace = rec.trace(
                    gen.batch,
                    gen.decode.sequences[0, :n].tolist(),
                    tokenizer=self.pipeline.tokenizer,
                    seg_token_ids=seg_token_ids(self.model.config),
                )
        record = RunRecord(req, result, trace, control=control)
        if get_task(req.task).needs_mask or req.task == "arig":
            record.frames = self.display_frames(req)
            record.target = self.target_frame(req, record.frames)
        record.gt = self.load_gt(req)
        if get_task(req.task).needs_mask and record.result.mask is None and force_mask:
            self._append_mask(record, control)
        record.seconds = time.perf_counter() - t0
        return record

    def _append_mask(self, record: RunRecord, control: HeadControl | None) -> None:
        if self.model.seg_module is None:
            return
        req = record.request
        ids = self.model.config.token_ids
        span = [ids["<mask_start>"], *self.model.config.mask_token_ids, ids["<mask_end>"]]
        with self.lock:
            prep = self.pipeline.prepare(
                req.task, req.video, req.audio, req.image, req.question, req.frame_index
            )
            if prep.media.seg_features is None:
                return
            full = torch.cat([prep.sample.input_ids, torch.tensor(list(record.result.answer_ids) + span)])
            with torch.no_grad(), self._controlled(control):
                out = self.model([CrabSample(input_ids=full, media=prep.media, task=req.task)])
        if not out.pred_masks:
            return
        lg = out.pred_masks[0].float().cpu()
        record.result.mask_logits = lg.numpy()
        record.result.mask = lg.argmax(0).numpy() if lg.shape[0] > 1 else (lg[0].sigmoid() > 0.5).numpy()
        record.extras["forced_mask"] = True

    # ------------------------------------------------------------------ attention / attribution
    def _raw(self, record: RunRecord):
        from crab_core.interpret.inputs import load_input

        self.pipeline.use_task_weights(record.request.task)  # callers hold the lock
        return load_input(self.pipeline, record.request)

    def attention(self, record: RunRecord, control: HeadControl | None = None) -> dict:
        """Attention read-outs of the run's answer (``crab_core.interpret.attention``), under the
        normal routing or under ``control`` (e.g. only head h: how the answer attends through it).

        Returns:
            ``{"summary": AttentionSummary, "patch_maps": (T, g, g) or None, "time_maps":
            (T_a, n_time, n_freq) or None, "fbank": (T_a, F, 128) or None, "frames": (T, H, W, 3)}``.
            ``summary.by_kind`` adds up to 1: the prompt's kinds plus ``answer`` (the answer's
            attention to its own earlier tokens).
        """
        from crab_core.interpret.attention import attention_maps

        try:
            with self.lock, self._controlled(control):
                raw = self._raw(record)
                maps = attention_maps(self.pipeline, raw, list(record.result.answer_ids), qformer=True)
        finally:
            release_memory()
        kinds = np.array([KIND_NAMES[int(k)] for k in maps.kinds])
        rows = maps.answer_to_tokens.mean(0)
        by_kind = {str(k): float(rows[kinds == k].sum()) for k in dict.fromkeys(kinds)}
        by_kind["answer"] = max(0.0, 1.0 - sum(by_kind.values()))
        summary = AttentionSummary(
            maps.frame_scores.mean(0),
            maps.second_scores.mean(0),
            float(maps.image_score.mean()),
            maps.audio_to_video,
            by_kind,
            "answer",
        )
        frames = self.display_frames(record.request) if raw.frames is not None else None
        if frames is None and record.request.image is not None:
            frames = self.target_frame(record.request, None)[None]
        return {
            "summary": summary,
            "patch_maps": maps.frame_patch_maps,
            "time_maps": maps.audio_time_maps,
            "image_map": maps.image_patch_map,
            "fbank": None if raw.audio is None else raw.audio.numpy(),
            "frames": frames,
        }

    def attribution(
        self, record: RunRecord, n_steps: int = 8, max_answer: int = 16, control: HeadControl | None = None
    ) -> dict:
        """Integrated gradients (captum) of the answer's log-probability w.r.t. the input embeddings,
        under the normal routing or ``control`` (e.g. only head h: the answer attributed through
        that head alone). ``n_steps`` in 2..64, evaluated ``IG_BATCH`` at a time so the peak memory
        does not grow with the steps.

        Returns:
            ``{"frames": (T_v,), "seconds": (T_a,), "image": float | None, "delta": float,
            "logprob": float}``: sums of |attribution| per frame / second / the image, IG's
            convergence delta and the answer's log-probability.
        """
        from crab_core.interpret.attribution import attribute

        if not 2 <= n_steps <= MAX_IG_STEPS:
            raise TaskError(f"integrated-gradient steps must be 2..{MAX_IG_STEPS} (got {n_steps})")
        try:
            with self.lock, self._controlled(control):
                att = attribute(
                    self.pipeline,
                    self._raw(record),
                    list(record.result.answer_ids)[:max_answer],
                    n_steps=n_steps,
                    pixels=False,
                    fbank=False,
                    internal_batch_size=IG_BATCH,
                )
        finally:
            release_memory()
        has_image = bool((np.asarray([KIND_NAMES[int(k)] for k in att.kinds]) == "image").any())
        return {
            "frames": np.asarray(att.frame_scores),
            "seconds": np.asarray(att.second_scores),
            "image": float(att.image_score) if has_image else None,
            "delta": float(att.delta),
            "logprob": float(att.logprob),
        }

    def answer_nlls(
        self, record: RunRecord, reference: str | None, controls: list[HeadControl | None]
    ) -> list[float]:
        """Mean per-token NLL of ``reference`` (default: the run's own answer) + EOS after the run's
        prompt, teacher-forced, under each routing in ``controls`` (media encoded once)."""
        from crab_core.interpret.ablation import answer_nll
        from crab_core.interpret.inputs import encode

        ids = self.pipeline.tokenizer.encode(reference) if reference else list(record.result.answer_ids)
        out = []
        try:
            with self.lock:
                raw = self._raw(record)
                media = encode(self.model, raw)
                for ctl in controls:
                    with self._controlled(ctl):
                        out.append(answer_nll(self.model, raw, media, ids))
        finally:
            release_memory()
        return out

    def spectrogram(self, record: RunRecord) -> tuple[np.ndarray, float]:
        """``(frames, 128)`` log-mel of the clip's audio (all seconds side by side) and its length in s."""
        from crab_core.media import audio_features, load_audio

        req = record.request
        src = req.audio or req.video
        wave = load_audio(src, max_duration_s=self.max_duration_s)
        seconds = max(1, min(int(round(len(wave) / 16000)), 60))
        feats = audio_features(wave, 16000, seconds, mode="uniform")
        return feats.reshape(-1, feats.shape[-1]).numpy(), float(len(wave) / 16000)
