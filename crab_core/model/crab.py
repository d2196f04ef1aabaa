"""The thin Crab composer: encoders -> projectors -> splice -> LLM (I-LoRA) -> seg decoder.

Every component is injected (see :mod:`crab_core.model.builder`); this class only wires them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from ..config import CrabConfig
from ..tasks import seg_tasks
from .llm import DecodeOutput, decode
from .splice import IGNORE_INDEX, KIND_AUDIO, KIND_IMAGE, KIND_VIDEO, SplicedBatch, splice_batch

#: Tasks whose answers decode a mask (``TaskSpec.mask_kind`` set).
SEG_TASKS = seg_tasks()


@dataclass
class EncodedMedia:
    """Projected features of one clip, computed once and reused across questions.

    Attributes:
        features: ``{"video": (T*Q, D), "audio": (T*Q, D), "image": (Q, D)}`` LLM-space rows.
        tokens_per_unit: rows per frame / second for each modality.
        seg_features: two ``(P, C)`` CLIP feature maps (frame 0 of the image, else of the
            video) for the mask decoder, or None.
        seg_frame: ``(3, S, S)`` CLIP-normalised pixels of that frame (the prompt decoder's frame
            stem), or None.
    """

    features: dict[str, torch.Tensor] = field(default_factory=dict)
    tokens_per_unit: dict[str, int] = field(default_factory=dict)
    seg_features: list[torch.Tensor] | None = None
    seg_frame: torch.Tensor | None = None


@dataclass
class CrabSample:
    """One model input: token ids with placeholders, media, task name, optional targets.

    Attributes:
        input_ids: ``(L,)`` prompt (+ answer when training) ids.
        media: encoded media for the placeholders in ``input_ids``.
        task: task name (selects the seg head: 'avss' -> 71 classes).
        labels: ``(L,)`` targets with -100 on the prompt, or None.
        gt_mask: ``(1, H, W)`` ground-truth mask for seg tasks, or None.
    """

    input_ids: torch.Tensor
    media: EncodedMedia
    task: str
    labels: torch.Tensor | None = None
    gt_mask: torch.Tensor | None = None


@dataclass
class CrabOutput:
    """Training / scoring forward result. ``logits`` is ``(B, L, V)``."""

    loss: torch.Tensor | None
    lm_loss: torch.Tensor | None
    mask_loss: torch.Tensor | None
    logits: torch.Tensor
    batch: SplicedBatch
    seg_embeddings: torch.Tensor | None = None
    pred_masks: list[torch.Tensor] | None = None
    seg_rows: list[int] | None = None  # batch rows of ``seg_embeddings``


@dataclass
class CrabGeneration:
    """Generation result for a batch: ids, and per-sample mask logits for seg answers."""

    decode: DecodeOutput
    batch: SplicedBatch
    masks: list[torch.Tensor | None]


class CrabModel(nn.Module):
    """Crab: CLIP + BEATs -> Q-Former projectors -> LLaMA with I-LoRA -> mask decoder.

    Example:
        >>> from crab_core.model.builder import build_model
        >>> model = build_model("crab-tiny")
        >>> media = model.encode_media(video=torch.randn(10, 3, 112, 112))
    """

    def __init__(
        self,
        config: CrabConfig,
        visual_encoder: nn.Module,
        audio_encoder: nn.Module,
        vl_projector: nn.Module,
        al_projector: nn.Module,
        llm: nn.Module,
        seg_module: nn.Module | None,
    ) -> None:
        super().__init__()
        self.config = config
        self.visual_encoder = visual_encoder
        self.audio_encoder = audio_encoder
        self.vl_projector = vl_projector
        self.al_projector = al_projector
        self.llm = llm
        self.seg_module = seg_module
        ids = config.token_ids
        self.placeholder_ids = {"video": ids["<video>"], "audio": ids["<audio>"], "image": ids["<image>"]}
        self._kinds = {ids["<video>"]: KIND_VIDEO, ids["<audio>"]: KIND_AUDIO, ids["<image>"]: KIND_IMAGE}
        #: optional static-cache / compiled decoder (crab_core.model.fast_decode.enable_fast_decode)
        self.fast_decoder = None

    # ------------------------------------------------------------------ media
    @property
    def device(self) -> torch.device:
        return next(self.llm.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return self.llm.get_input_embeddings().weight.dtype

    def _towers_grad(self, module: nn.Module) -> bool:
        """Encoders run without autograd unless they are being trained (crab-tiny from scratch)."""
        return torch.is_grad_enabled() and any(p.requires_grad for p in module.parameters())

    def encode_media(
        self,
        video: torch.Tensor | None = None,
        audio: torch.Tensor | None = None,
        image: torch.Tensor | None = None,
        need_seg: bool = False,
    ) -> EncodedMedia:
        """Encode one clip's media.

        Args:
            video: ``(T, 3, S, S)`` normalised frames.
            audio: ``(T, F, 128)`` fbank segments or ``(F, 128)`` for a single segment.
            image: ``(1, 3, S, S)`` or ``(3, S, S)`` target frame.
            need_seg: also keep frame-0 multi-scale CLIP features for the mask decoder.
        """

        def batch1(x, dims):
            if x is None:
                return None
            return (x if x.dim() == dims else x.unsqueeze(0)).unsqueeze(0)

        return self.encode_media_batch(batch1(video, 4), batch1(audio, 3), batch1(image, 4), need_seg)[0]

    def encode_media_batch(
        self,
        video: torch.Tensor | None = None,
        audio: torch.Tensor | None = None,
        image: torch.Tensor | None = None,
        need_seg: bool = False,
    ) -> list[EncodedMedia]:
        """Encode a batch of clips with equal shapes in one pass per encoder.

        Args:
            video: ``(B, T, 3, S, S)``; audio: ``(B, T, F, 128)``; image: ``(B, 1, 3, S, S)``.

        Returns:
            One :class:`EncodedMedia` per sample.
        """
        sizes = [x.shape[0] for x in (video, audio, image) if x is not None]
        if not sizes:
            return []
        b = sizes[0]
        outs = [EncodedMedia() for _ in range(b)]
        p = self.visual_encoder.patches_per_frame
        seg_src, seg_frame = None, None
        for name, pixels in (("video", video), ("image", image)):
            if pixels is None:
                continue
            with torch.set_grad_enabled(self._towers_grad(self.visual_encoder)):
                feats = self.visual_encoder(pixels.to(self.device, self.vision_dtype))
            image = name == "image"
            proj = self.vl_projector(feats[-1].to(self.dtype), tokens_per_frame=p, image=image)
            for i in range(b):
                outs[i].features[name] = proj[i]
                outs[i].tokens_per_unit[name] = self.vl_projector.tokens_per_unit(image)
            if name == "image" or seg_src is None:
                seg_src = [f[:, :p] for f in feats[:2]]
                seg_frame = pixels.reshape(b, -1, *pixels.shape[-3:])[:, 0]
        if audio is not None:
            with torch.set_grad_enabled(self._towers_grad(self.audio_encoder)):
                tokens = self.audio_encoder(audio.to(self.device, self.audio_dtype))
            proj = self.al_projector(tokens.to(self.dtype))
            for i in range(b):
                outs[i].features["audio"] = proj[i]
                outs[i].tokens_per_unit["audio"] = self.config.al_qformer.num_query_tokens
        if need_seg and seg_src is not None:
            for i in range(b):
                outs[i].seg_features = [f[i] for f in seg_src]
                outs[i].seg_frame = seg_frame[i].to(self.device)
        return outs

    @property
    def vision_dtype(self) -> torch.dtype:
        return next(self.visual_encoder.parameters()).dtype

    @property
    def audio_dtype(self) -> torch.dtype:
        return next(self.audio_encoder.parameters()).dtype

    # ------------------------------------------------------------------ splice
    def prepare(self, samples: Sequence[CrabSample]) -> SplicedBatch:
        """Splice every sample's media at its placeholders and left-pad the batch."""
        feats, units = [], {}
        for s in samples:
            per = {}
            for name, pid in self.placeholder_ids.items():
                n = int((s.input_ids == pid).sum())
                if n and name in s.media.features:
                    per[pid] = [s.media.features[name]] * n
                    units[pid] = s.media.tokens_per_unit[name]
            feats.append(per)
        has_labels = all(s.labels is not None for s in samples)
        embed = self.llm.get_input_embeddings()
        return splice_batch(
            [s.input_ids.to(self.device) for s in samples],
            feats,
            embed,
            self.config.llm.pad_token_id,
            self._kinds,
            labels=[s.labels.to(self.device) for s in samples] if has_labels else None,
            tokens_per_unit=units,
        )

    # ------------------------------------------------------------------ forward
    def forward(
        self, samples: Sequence[CrabSample], compute_masks: bool = True, return_seg_embeddings: bool = False
    ) -> CrabOutput:
        """Teacher-forced forward: LM loss, and mask loss for seg samples with a GT mask.

        ``return_seg_embeddings`` fills ``seg_embeddings`` ``(R, 6, D)`` / ``seg_rows`` even when no
        mask is computed (training-time probes on the seg-token states).
        """
        batch = self.prepare(samples)
        seg_idx = [
            i for i, s in enumerate(samples) if s.task in SEG_TASKS and s.media.seg_features is not None
        ]
        run_seg = compute_masks and self.seg_module is not None
        need_hidden = bool(seg_idx) and (run_seg or return_seg_embeddings)
        out = self.llm(
            inputs_embeds=batch.inputs_embeds,
            attention_mask=batch.attention_mask,
            position_ids=batch.position_ids,
            output_hidden_states=need_hidden,
            use_cache=False,
        )
        logits = out.logits
        lm_loss = None
        if batch.labels is not None:
            lm_loss = F.cross_entropy(
                logits[:, :-1].float().reshape(-1, logits.shape[-1]),
                batch.labels[:, 1:].reshape(-1),
                ignore_index=IGNORE_INDEX,
            )
        mask_loss, seg_emb, pred = None, None, None
        if need_hidden:
            sel = batch.seg_token_mask(self.config.mask_token_ids)
            hidden = out.hidden_states[-1]
            n_tok = self.config.seg.num_seg_tokens
            rows = [i for i in seg_idx if int(sel[i].sum()) == n_tok]
            if rows:
                seg_emb = torch.stack([hidden[i][sel[i]] for i in rows])
            if rows and run_seg:
                gts = [samples[i].gt_mask for i in rows]
                gt = torch.stack(gts).to(self.device) if all(g is not None for g in gts) else None
                ms = [torch.stack([samples[i].media.seg_features[k] for i in rows]) for k in range(2)]
                seg = self.seg_module(
                    seg_emb,
                    ms,
                    [samples[i].task for i in rows],
                    gt,
                    frames=self._seg_frames([samples[i] for i in rows]),
                )
                mask_loss, pred = seg.mask_loss, seg.pred_masks
        loss = lm_loss
        if mask_loss is not None:
            loss = mask_loss if loss is None else loss + mask_loss
        return CrabOutput(
            loss, lm_loss, mask_loss, logits, batch, seg_emb, pred, rows if seg_emb is not None else None
        )

    # ------------------------------------------------------------------ generate
    @torch.no_grad()
    def generate(
        self,
        samples: Sequence[CrabSample],
        max_new_tokens: int = 500,
        do_sample: bool = False,
        temperature: float = 1.0,
        top_p: float = 1.0,
        return_logits: bool = False,
        generator: torch.Generator | None = None,
    ) -> CrabGeneration:
        """Decode answers; for seg tasks run the mask decoder on the generated seg tokens.

        The hidden state used for ``<mask_i>`` is the one of the step that produced it (the
        training convention), so the last ``num_seg_tokens`` seg tokens give the mask; with
        fewer seg tokens no mask is returned.
        """
        batch = self.prepare(samples)
        want_seg = self.seg_module is not None and any(s.task in SEG_TASKS for s in samples)
        dec = (decode if self.fast_decoder is None else self.fast_decoder.decode)(
            self.llm,
            batch.inputs_embeds,
            batch.attention_mask,
            batch.position_ids,
            max_new_tokens,
            self.config.llm.eos_token_id,
            self.config.llm.pad_token_id,
            do_sample=do_sample,
            temperature=temperature,
            top_p=top_p,
            return_logits=return_logits,
            return_hidden=want_seg,
            generator=generator,
        )
        masks: list[torch.Tensor | None] = [None] * len(samples)
        if want_seg:
            masks = self._masks_from_generation(samples, dec)
        return CrabGeneration(dec, batch, masks)

    def _masks_from_generation(self, samples, dec: DecodeOutput) -> list[torch.Tensor | None]:
        mask_ids = torch.tensor(self.config.mask_token_ids, device=dec.sequences.device)
        n_tok = self.config.seg.num_seg_tokens
        masks: list[torch.Tensor | None] = []
        for i, s in enumerate(samples):
            if s.task not in SEG_TASKS or s.media.seg_features is None or dec.step_hidden is None:
                masks.append(None)
                continue
            n = int(dec.lengths[i])
            pos = torch.nonzero(torch.isin(dec.sequences[i, :n], mask_ids)).flatten()
            if len(pos) < n_tok:
                masks.append(None)
                continue
            emb = dec.step_hidden[i, pos[-n_tok:]].unsqueeze(0)
            ms = [f.unsqueeze(0) for f in s.media.seg_features]
            masks.append(self.seg_module(emb, ms, [s.task], None, frames=self._seg_frames([s])).pred_masks[0])
        return masks

    def _seg_frames(self, samples: Sequence[CrabSample]) -> torch.Tensor | None:
        """``(B, 3, S, S)`` seg frames of ``samples``, or None when one lacks it (reference decoder)."""
        frames = [s.media.seg_frame for s in samples]
        if any(f is None for f in frames):
            return None
        return torch.stack(frames).to(self.device)
