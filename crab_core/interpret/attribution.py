"""Integrated-gradients attributions (captum) of the produced answer to frames, seconds and patches.

The attributed function is the teacher-forced log-probability of the produced answer,
``sum_i log p(a_i | prompt, a_<i)``.

Levels and baselines:

* ``embeddings``: IG on the spliced input embeddings. Only media rows differ from the baseline;
  text rows are kept, so all attribution goes to video / audio / image tokens. Baseline ``"mean"``
  (default) replaces each modality's rows by the mean of that modality's rows (removes what is
  specific to a frame / second while staying on the feature manifold); ``"zero"`` uses zeros.
  Per-token scores are attributions summed over the hidden dimension.
* ``pixels``: IG on the CLIP input pixels of the video frames (baseline: zero in normalised space,
  i.e. the CLIP mean colour); per-patch scores sum each ``patch x patch`` block (3 channels).
* ``fbank``: IG on the normalised fbank of each audio segment (baseline: zero = the
  normalisation mean); per-second scores and a per time-step profile.

IG's completeness gap (``convergence delta`` = sum of attributions - (f(x) - f(baseline))) is
reported for each level.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor

from ..model.splice import KIND_AUDIO, KIND_IMAGE, KIND_VIDEO
from .inputs import RawInput, encode, make_sample


@dataclass
class Attribution:
    """Attribution of one answer.

    Attributes:
        answer_ids: the attributed answer. logprob: its log-probability.
        baseline: embedding baseline (``mean`` / ``zero``). n_steps: IG steps.
        kinds / units: ``(L,)`` prompt positions' kinds and frame / second indices.
        token_scores: ``(L,)`` embedding-level attribution per prompt position (signed).
        frame_scores / second_scores: ``(T,)`` sum of |token score| over each frame / second.
        image_score: sum of |token score| over the image tokens.
        delta: embedding-level convergence delta.
        patch_scores: ``(T_v, g, g)`` pixel-level attribution per patch (signed), or None.
        pixel_frame_scores: ``(T_v,)`` sum of |patch score| per frame, or None. pixel_delta.
        fbank_second_scores: ``(T_a,)`` sum of |attribution| per segment; fbank_time: ``(T_a, F)``
            per fbank frame (summed over mel bins, signed); fbank_delta.
        seconds: wall time per level.
    """

    answer_ids: list[int]
    logprob: float
    baseline: str
    n_steps: int
    kinds: np.ndarray
    units: np.ndarray
    token_scores: np.ndarray
    frame_scores: np.ndarray
    second_scores: np.ndarray
    image_score: float
    delta: float
    patch_scores: np.ndarray | None = None
    pixel_frame_scores: np.ndarray | None = None
    pixel_delta: float | None = None
    fbank_second_scores: np.ndarray | None = None
    fbank_time: np.ndarray | None = None
    fbank_delta: float | None = None
    seconds: dict[str, float] = field(default_factory=dict)


class AnswerLogProb:
    """``f(embeddings) -> (B,)`` log-probability of a fixed answer (the attributed function).

    Args:
        model: the :class:`~crab_core.model.crab.CrabModel`.
        batch: the spliced prompt + answer batch (one sample).
        n_answer: number of answer tokens at the end of the sequence.
    """

    def __init__(self, model, batch, n_answer: int) -> None:
        self.model = model
        self.mask = batch.attention_mask
        self.pos = batch.position_ids
        self.targets = batch.token_ids[0, -n_answer:]
        self.n = n_answer

    def __call__(self, embeds: Tensor) -> Tensor:
        b = embeds.shape[0]
        out = self.model.llm(
            inputs_embeds=embeds,
            attention_mask=self.mask.expand(b, -1),
            position_ids=self.pos.expand(b, -1),
            use_cache=False,
        )
        logits = out.logits[:, -self.n - 1 : -1].float().log_softmax(-1)
        return logits.gather(-1, self.targets.view(1, -1, 1).expand(b, -1, 1)).squeeze(-1).sum(-1)


def _baseline(embeds: Tensor, kinds: Tensor, how: str) -> Tensor:
    base = embeds.clone()
    for k in (KIND_VIDEO, KIND_AUDIO, KIND_IMAGE):
        sel = kinds == k
        if sel.any():
            base[sel] = 0.0 if how == "zero" else embeds[sel].mean(0, keepdim=True)
    return base


def _ig(fn, inputs: Tensor, baseline: Tensor, n_steps: int, batch_size: int | None):
    from captum.attr import IntegratedGradients

    ig = IntegratedGradients(fn)
    attr, delta = ig.attribute(
        inputs,
        baselines=baseline,
        n_steps=n_steps,
        internal_batch_size=batch_size,
        return_convergence_delta=True,
    )
    return attr.detach(), float(delta.abs().sum())


def _unit_abs(scores: np.ndarray, kinds: np.ndarray, units: np.ndarray, kind: int) -> np.ndarray:
    sel = kinds == kind
    n = int(units[sel].max()) + 1 if sel.any() else 0
    return np.array([np.abs(scores[sel & (units == u)]).sum() for u in range(n)], np.float32)


def attribute(
    pipeline,
    raw: RawInput,
    answer_ids: Sequence[int] | None = None,
    baseline: str = "mean",
    n_steps: int = 32,
    pixels: bool = True,
    fbank: bool = True,
    internal_batch_size: int | None = 8,
) -> Attribution:
    """Attribute the produced answer to frames, seconds (embedding level) and patches (pixel level).

    Args:
        pipeline: a :class:`~crab_core.pipeline.CrabPipeline`.
        raw: the input. answer_ids: the answer to explain (generated first when None; an empty
            answer is replaced by EOS).
        baseline: ``"mean"`` or ``"zero"`` for the embedding level.
        n_steps: IG steps (Gauss-Legendre). pixels / fbank: also run the input-level IG.
        internal_batch_size: IG evaluations per forward.
    """
    if baseline not in ("mean", "zero"):
        raise ValueError(f"baseline must be 'mean' or 'zero', got {baseline!r}")
    model = pipeline.model
    media = encode(model, raw)
    if answer_ids is None:
        from .ablation import generate

        answer_ids = generate(pipeline, raw, media).result.answer_ids
    ids = list(answer_ids) or [model.config.llm.eos_token_id]
    batch = model.prepare([make_sample(raw, media, ids)])
    fn = AnswerLogProb(model, batch, len(ids))
    n_prompt = batch.inputs_embeds.shape[1] - len(ids)
    kinds_t = batch.kinds[0]
    kinds, units = kinds_t[:n_prompt].cpu().numpy(), batch.unit_index[0, :n_prompt].cpu().numpy()
    emb = batch.inputs_embeds.detach()
    t0 = time.perf_counter()
    with torch.no_grad():
        logprob = float(fn(emb)[0])
    attr, delta = _ig(fn, emb, _baseline(emb[0], kinds_t, baseline)[None], n_steps, internal_batch_size)
    tok = attr[0, :n_prompt].float().sum(-1).cpu().numpy()
    out = Attribution(
        ids,
        logprob,
        baseline,
        n_steps,
        kinds,
        units,
        tok,
        _unit_abs(tok, kinds, units, KIND_VIDEO),
        _unit_abs(tok, kinds, units, KIND_AUDIO),
        float(np.abs(tok[kinds == KIND_IMAGE]).sum()),
        delta,
    )
    out.seconds["embeddings"] = time.perf_counter() - t0
    if pixels and raw.frames is not None:
        t0 = time.perf_counter()
        _pixel_level(model, raw, emb, kinds_t, fn, out, n_steps, internal_batch_size)
        out.seconds["pixels"] = time.perf_counter() - t0
    if fbank and raw.audio is not None:
        t0 = time.perf_counter()
        _fbank_level(model, raw, emb, kinds_t, fn, out, n_steps, internal_batch_size)
        out.seconds["fbank"] = time.perf_counter() - t0
    return out


class _Replace:
    """``f(x)``: encode a batch of raw inputs ``x`` and splice them over the rows of one kind."""

    def __init__(self, emb: Tensor, kinds: Tensor, kind: int, encoder, fn: AnswerLogProb) -> None:
        self.emb, self.rows, self.encoder, self.fn = emb, kinds == kind, encoder, fn

    def __call__(self, x: Tensor) -> Tensor:
        feats = self.encoder(x)  # (B, n_rows, D)
        e = self.emb.expand(x.shape[0], -1, -1).clone()
        e[:, self.rows] = feats.to(e.dtype)
        return self.fn(e)


def _pixel_level(model, raw, emb, kinds, fn, out: Attribution, n_steps, bs) -> None:
    p = model.visual_encoder.patches_per_frame

    def enc(px):  # (B, T, 3, S, S) -> (B, T*Q, D)
        feats = model.visual_encoder(px.to(model.device, model.vision_dtype))
        return model.vl_projector(feats[-1].to(model.dtype), tokens_per_frame=p)

    x = raw.frames.unsqueeze(0).to(model.device)
    attr, out.pixel_delta = _ig(
        _Replace(emb, kinds[0] if kinds.dim() > 1 else kinds, KIND_VIDEO, enc, fn),
        x,
        torch.zeros_like(x),
        n_steps,
        bs,
    )
    ps = model.config.vision.patch_size
    a = attr[0].float().sum(1)  # (T, S, S)
    t, s = a.shape[0], a.shape[-1]
    g = s // ps
    patches = a[:, : g * ps, : g * ps].reshape(t, g, ps, g, ps).sum((2, 4))
    out.patch_scores = patches.cpu().numpy()
    out.pixel_frame_scores = patches.abs().sum((1, 2)).cpu().numpy()


def _fbank_level(model, raw, emb, kinds, fn, out: Attribution, n_steps, bs) -> None:
    def enc(fb):  # (B, T, F, 128) -> (B, T*Q, D)
        tokens = model.audio_encoder(fb.to(model.device, model.audio_dtype))
        return model.al_projector(tokens.to(model.dtype))

    x = raw.audio.unsqueeze(0).to(model.device)
    attr, out.fbank_delta = _ig(
        _Replace(emb, kinds, KIND_AUDIO, enc, fn), x, torch.zeros_like(x), n_steps, bs
    )
    a = attr[0].float()  # (T, F, 128)
    out.fbank_time = a.sum(-1).cpu().numpy()
    out.fbank_second_scores = a.abs().sum((1, 2)).cpu().numpy()


def object_units(scene: dict, cls: str) -> tuple[set[int], set[int]]:
    """Seconds where SynthAV object ``cls`` is visible and where it sounds (from ``meta``)."""
    visible, sounding = set(), set()
    for o in scene.get("objects", []):
        if o["class"] == cls:
            visible |= {t for s, e in o["visible"] for t in range(s, e)}
            sounding |= {t for s, e in o["sounding"] for t in range(s, e)}
    return visible, sounding


def localization_ratio(scores: np.ndarray, inside: Sequence[int]) -> float | None:
    """Mean share of ``scores`` on the ``inside`` units over the mean share on the others (None if
    one of the two sets is empty or the scores are all zero)."""
    s = np.abs(np.asarray(scores, np.float64))
    if s.sum() <= 0:
        return None
    s = s / s.sum()
    ins = np.zeros(len(s), bool)
    ins[[i for i in inside if 0 <= i < len(s)]] = True
    if ins.all() or not ins.any():
        return None
    return float(s[ins].mean() / max(s[~ins].mean(), 1e-12))
