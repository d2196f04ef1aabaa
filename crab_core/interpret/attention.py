"""Attention maps: answer -> frames / seconds (LLM), Q-Former cross-attention -> patches / audio time,
and the audio-visual interaction map.

The LLM normally runs with SDPA, which returns no probabilities. :func:`eager_attention` switches
the LLM config to eager attention for one teacher-forced forward and restores it in ``finally``;
the default path is never changed.

"Answer rows" are the query positions whose outputs *produced* the answer tokens: the last prompt
position and every answer token but the last.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn

from ..errors import CrabError, InterpretError
from ..model.splice import KIND_AUDIO, KIND_IMAGE, KIND_TEXT, KIND_VIDEO
from .inputs import RawInput, encode, make_sample


@contextmanager
def eager_attention(llm: nn.Module) -> Iterator[None]:
    """Run the LLM with eager attention (so ``output_attentions`` works) inside the block."""
    base = llm.get_base_model() if hasattr(llm, "get_base_model") else llm
    cfg = base.config
    previous = cfg._attn_implementation
    try:
        cfg._attn_implementation = "eager"
        yield
    finally:
        cfg._attn_implementation = previous


@dataclass
class AttentionMaps:
    """Attention read-outs of one answer. All arrays float32, probabilities averaged over heads.

    Attributes:
        kinds / units: ``(L,)`` splice kind and frame / second index of every prompt position.
        answer_to_tokens: ``(n_layers, L)`` mean attention of the answer rows to every prompt position.
        frame_scores: ``(n_layers, T_v)`` attention mass of the answer rows on each frame's tokens.
        second_scores: ``(n_layers, T_a)`` same for each audio second / segment.
        image_score / text_score: ``(n_layers,)`` mass on the image tokens / prompt text.
        audio_to_video: ``(T_a, T_v)`` mean over layers and over each second's tokens of the mass on
            each frame's tokens. video_to_audio: ``(T_v, T_a)`` the reverse (zero wherever the
            attended block comes later in the prompt: causal attention).
        frame_patch_maps: ``(T_v, g, g)`` Q-Former cross-attention mapped to patches, each query
            weighted by the answer rows' LLM attention to its token (a frame's map sums to its mass).
        image_patch_map: ``(g, g)`` the same for the image, or None (also when the image only feeds the
            mask decoder and is not in the prompt, as in the S4 / MS3 video prompts).
        audio_time_maps: ``(T_a, n_time, n_freq)`` the same for BEATs tokens (time-major,
            token = t * 8 + f; one time step = 16 fbank frames = 160 ms).
    """

    kinds: np.ndarray
    units: np.ndarray
    answer_to_tokens: np.ndarray
    frame_scores: np.ndarray
    second_scores: np.ndarray
    image_score: np.ndarray
    text_score: np.ndarray
    audio_to_video: np.ndarray
    video_to_audio: np.ndarray
    frame_patch_maps: np.ndarray | None = None
    image_patch_map: np.ndarray | None = None
    audio_time_maps: np.ndarray | None = None


def _unit_sum(values: np.ndarray, kinds: np.ndarray, units: np.ndarray, kind: int) -> np.ndarray:
    """Sum ``values`` (..., L) over each unit of ``kind`` -> (..., n_units)."""
    sel = kinds == kind
    n = int(units[sel].max()) + 1 if sel.any() else 0
    return (
        np.stack([values[..., sel & (units == u)].sum(-1) for u in range(n)], -1)
        if n
        else np.zeros((*values.shape[:-1], 0), np.float32)
    )


def _interaction(att: np.ndarray, kinds: np.ndarray, units: np.ndarray, src: int, dst: int) -> np.ndarray:
    """(n_src_units, n_dst_units): mean over src-unit rows of the mass on each dst unit."""
    rows = _unit_sum(att, kinds, units, dst)  # (L, n_dst)
    sel = kinds == src
    n = int(units[sel].max()) + 1 if sel.any() else 0
    if not n or rows.shape[-1] == 0:
        return np.zeros((n, rows.shape[-1]), np.float32)
    return np.stack([rows[sel & (units == u)].mean(0) for u in range(n)])


@torch.no_grad()
def llm_attention(model, raw: RawInput, answer_ids: Sequence[int], media=None):
    """Teacher-forced eager forward over prompt + answer.

    Returns:
        ``(batch, attentions)``: the :class:`SplicedBatch` of the full sequence and a
        ``(n_layers, L_full, L_full)`` float32 array of head-averaged probabilities.
    """
    media = media if media is not None else encode(model, raw)
    batch = model.prepare([make_sample(raw, media, list(answer_ids))])
    with eager_attention(model.llm):
        out = model.llm(
            inputs_embeds=batch.inputs_embeds,
            attention_mask=batch.attention_mask,
            position_ids=batch.position_ids,
            output_attentions=True,
            use_cache=False,
        )
    att = torch.stack([a[0].float().mean(0) for a in out.attentions]).cpu().numpy()
    return batch, att


def attention_maps(
    pipeline, raw: RawInput, answer_ids: Sequence[int] | None = None, qformer: bool = True
) -> AttentionMaps:
    """All attention read-outs for the answer ``answer_ids`` (generated first when None).

    Raises:
        InterpretError: the read-out itself failed (a bug, not the input's fault: the message says so).
        CrabError: other user-facing errors pass through unchanged.
    """
    try:
        return _attention_maps(pipeline, raw, answer_ids, qformer)
    except CrabError:
        raise
    except (RuntimeError, ValueError, IndexError, KeyError, TypeError, AttributeError) as exc:
        detail = " ".join(f"{type(exc).__name__}: {exc}".split())[:300]
        raise InterpretError(f"attention maps for {raw.task} failed ({detail})") from exc


def _attention_maps(
    pipeline, raw: RawInput, answer_ids: Sequence[int] | None, qformer: bool
) -> AttentionMaps:
    model = pipeline.model
    media = encode(model, raw)
    if answer_ids is None:
        from .ablation import generate

        answer_ids = generate(pipeline, raw, media).result.answer_ids
    ids = list(answer_ids) or [model.config.llm.eos_token_id]
    batch, att = llm_attention(model, raw, ids, media)
    n_prompt = batch.inputs_embeds.shape[1] - len(ids)
    kinds = batch.kinds[0, :n_prompt].cpu().numpy()
    units = batch.unit_index[0, :n_prompt].cpu().numpy()
    rows = att[:, n_prompt - 1 : n_prompt - 1 + len(ids), :n_prompt].mean(1)  # (n_layers, L)
    mean_att = att[:, :n_prompt, :n_prompt].mean(0)
    maps = AttentionMaps(
        kinds=kinds,
        units=units,
        answer_to_tokens=rows,
        frame_scores=_unit_sum(rows, kinds, units, KIND_VIDEO),
        second_scores=_unit_sum(rows, kinds, units, KIND_AUDIO),
        image_score=rows[:, kinds == KIND_IMAGE].sum(-1),
        text_score=rows[:, kinds == KIND_TEXT].sum(-1),
        audio_to_video=_interaction(mean_att, kinds, units, KIND_AUDIO, KIND_VIDEO),
        video_to_audio=_interaction(mean_att, kinds, units, KIND_VIDEO, KIND_AUDIO),
    )
    if qformer:
        _add_qformer_maps(model, raw, maps, rows.mean(0))
    return maps


def _query_weights(weights: np.ndarray, kinds: np.ndarray, kind: int, n_units: int) -> Tensor | None:
    """LLM attention to each (unit, query) token of ``kind`` as a ``(n_units, Q)`` tensor, or None when the
    prompt has no token of that kind (a seg task's target image feeds only the mask decoder)."""
    w = weights[kinds == kind]
    if w.size == 0:
        return None
    if w.size % n_units:
        raise InterpretError(f"{w.size} prompt tokens of kind {kind} do not split into {n_units} units")
    return torch.from_numpy(w.reshape(n_units, -1).astype(np.float32))


@torch.no_grad()
def visual_cross_attention(model, pixels: Tensor, image: bool = False) -> Tensor:
    """Head- and layer-averaged Q-Former cross-attention of ``(T, 3, S, S)`` frames: ``(T, Q, P)``
    (``image`` with an image grid: each cell token's pooling weights over the patches)."""
    feats = model.visual_encoder(pixels.unsqueeze(0).to(model.device, model.vision_dtype))
    p = model.visual_encoder.patches_per_frame
    out = model.vl_projector(
        feats[-1].to(model.dtype), tokens_per_frame=p, return_cross_attentions=True, image=image
    )
    return torch.stack([c.float() for c in out.cross_attentions]).mean((0, 2)).cpu()


@torch.no_grad()
def audio_cross_attention(model, fbank: Tensor) -> Tensor:
    """Head- and layer-averaged Q-Former cross-attention of ``(T, F, 128)`` fbank: ``(T, Q, n_tokens)``."""
    tokens = model.audio_encoder(fbank.unsqueeze(0).to(model.device, model.audio_dtype))
    out = model.al_projector(tokens.to(model.dtype), return_cross_attentions=True)
    return torch.stack([c.float() for c in out.cross_attentions]).mean((0, 2)).cpu()


def _add_qformer_maps(model, raw: RawInput, maps: AttentionMaps, weights: np.ndarray) -> None:
    """Fill the patch / audio-time maps: sum_q w[t, q] * cross[t, q, :]."""
    grid = model.config.vision.image_size // model.config.vision.patch_size
    kinds = set(np.unique(maps.kinds).tolist())
    if raw.frames is not None and KIND_VIDEO in kinds:
        ca = visual_cross_attention(model, raw.frames)
        w = _query_weights(weights, maps.kinds, KIND_VIDEO, ca.shape[0])
        maps.frame_patch_maps = torch.einsum("tq,tqp->tp", w, ca).reshape(-1, grid, grid).numpy()
    if raw.image is not None and KIND_IMAGE in kinds:  # not when the image only feeds the mask decoder
        ca = visual_cross_attention(model, raw.image, image=True)
        w = _query_weights(weights, maps.kinds, KIND_IMAGE, ca.shape[0])
        maps.image_patch_map = torch.einsum("tq,tqp->tp", w, ca).reshape(grid, grid).numpy()
    if raw.audio is not None and KIND_AUDIO in kinds:
        ca = audio_cross_attention(model, raw.audio)
        w = _query_weights(weights, maps.kinds, KIND_AUDIO, ca.shape[0])
        n_freq = raw.audio.shape[-1] // getattr(model.audio_encoder, "patch", 16)  # 128 mel bins / 16
        heat = torch.einsum("tq,tqn->tn", w, ca)
        maps.audio_time_maps = heat.reshape(heat.shape[0], -1, n_freq).numpy()
