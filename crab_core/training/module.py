"""The trainable unit handed to ``accelerate``: CrabModel (+ tower heads) with a loss-returning forward.

Everything a step computes happens inside one ``forward`` call, so DDP / FSDP / DeepSpeed
wrappers see every parameter use (gradient synchronisation hooks, unused-parameter detection).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

from ..model.crab import SEG_TASKS, CrabModel, CrabSample, EncodedMedia
from ..model.splice import IGNORE_INDEX
from ..tasks import get_task
from .collate import Batch
from .features import encode_from_features
from .flags import flag_loss
from .probes import MediaProbes, SegTokenProbe, probe_loss
from .swap import prompt_swap_loss
from .towers import TowerHeads, tower_loss

if TYPE_CHECKING:
    from .recipe import Recipe

#: Component names used by recipes for parameter groups / freezing.
COMPONENTS = (
    "visual_encoder",
    "audio_encoder",
    "vl_projector",
    "al_projector",
    "llm_base",
    "embed_tokens",
    "lm_head",
    "lora",
    "seg_module",
    "tower_heads",
)


def component_of(name: str) -> str:
    """Component of a parameter name of :class:`CrabTrainModule` (see :data:`COMPONENTS`)."""
    name = name.removeprefix("model.")
    top = name.split(".", 1)[0]
    if top in (
        "visual_encoder",
        "audio_encoder",
        "vl_projector",
        "al_projector",
        "seg_module",
        "tower_heads",
    ):
        return top
    if "lora_" in name:
        return "lora"
    if "embed_tokens" in name:
        return "embed_tokens"
    if "lm_head" in name:
        return "lm_head"
    return "llm_base"


def answer_mean_lm_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """LM loss averaged per answer, then over answers.

    Args:
        logits: ``(B, L, V)`` next-token logits. labels: ``(B, L)`` token ids, ``IGNORE_INDEX`` off the
            answers (the model's spliced batch labels).

    Returns:
        the mean over rows with at least one label of each row's mean cross-entropy.
    """
    tgt = labels[:, 1:]
    ce = F.cross_entropy(
        logits[:, :-1].float().transpose(1, 2), tgt.clamp_min(0), reduction="none"
    )  # (B, L-1)
    mask = (tgt != IGNORE_INDEX).float()
    count = mask.sum(1)
    rows = count > 0
    return ((ce * mask).sum(1)[rows] / count[rows]).mean()


def build_train_module(recipe: Recipe) -> CrabTrainModule:
    """A freshly initialised :class:`CrabTrainModule` for ``recipe`` (on the CPU; seeds the global RNG
    with ``recipe.seed``): the model, tower heads with media probes, and the seg-token probe when a
    phase uses it."""
    from ..model.builder import build_model

    cfg = recipe.model
    model = build_model(cfg, seed=recipe.seed)
    q_v, q_a = cfg.vl_qformer.num_query_tokens, cfg.al_qformer.num_query_tokens
    grid = cfg.vl_qformer.image_grid
    probes = MediaProbes(cfg.llm.hidden_size, q_v, q_a, image_tokens=grid * grid)
    # only built when a phase uses it (keeps the other recipes' init and checkpoints unchanged)
    seg_probe = (
        SegTokenProbe(cfg.llm.hidden_size, cfg.seg.num_seg_tokens)
        if any(p.seg_probe_weight > 0 for p in recipe.phases)
        else None
    )
    heads = TowerHeads(
        cfg.vision.hidden_size,
        cfg.audio.encoder_embed_dim,
        cfg.vision.patch_size,
        probes=probes,
        seg_probe=seg_probe,
    )
    return CrabTrainModule(model, heads)


class CrabTrainModule(nn.Module):
    """CrabModel plus tower heads; ``forward(batch)`` returns a dict of losses.

    Args:
        model: the Crab model being trained.
        heads: tower-pretraining heads (only used with ``objective="towers"``).
    """

    def __init__(self, model: CrabModel, heads: TowerHeads | None = None) -> None:
        super().__init__()
        self.model = model
        self.tower_heads = heads
        self.objective = "lm"
        self.mask_loss = True
        self.text_only = False
        self.probe_weight = 0.0
        self.seg_probe_weight = 0.0
        self.seg_swap_weight = 0.0
        self.lm_weighting = "token"  # or "answer": :func:`answer_mean_lm_loss`
        self.flag_weight = 0.0  # weight of :func:`~crab_core.training.flags.flag_loss`
        self.flag_tokens = None  # its FlagTokens (set by the trainer from the tokenizer)
        self.trainable: tuple[str, ...] | None = None  # the components set_trainable left trainable

    def set_trainable(self, components: tuple[str, ...]) -> dict[str, int]:
        """Freeze everything except ``components``; returns trainable parameter counts per component."""
        counts: dict[str, int] = {}
        self.trainable = tuple(components)
        for name, p in self.named_parameters():
            comp = component_of(name)
            p.requires_grad_(comp in components)
            if comp in components:
                counts[comp] = counts.get(comp, 0) + p.numel()
        return counts

    def encode(self, batch: Batch) -> list[EncodedMedia]:
        """Encoded media per item: from cached tower features when present, else from the media."""
        media: list[EncodedMedia | None] = [None] * len(batch)
        for g in batch.groups:
            need_seg = any(batch.items[i].task in SEG_TASKS for i in g.index)
            if g.features:
                enc = encode_from_features(self.model, g.features, need_seg)
            else:
                enc = self.model.encode_media_batch(g.video, g.audio, g.image, need_seg=need_seg)
            for i, e in zip(g.index, enc, strict=True):
                media[i] = e
        return media

    def samples(self, batch: Batch, media: list[EncodedMedia]) -> list[CrabSample]:
        return [
            CrabSample(
                input_ids=it.input_ids,
                media=m,
                task=it.task,
                labels=it.labels,
                gt_mask=None if g is None else g.to(self.model.device),
            )
            for it, m, g in zip(batch.items, media, batch.gt_masks, strict=True)
        ]

    def text_samples(self, batch: Batch) -> list[CrabSample]:
        """Answer texts alone (``<s> answer </s>``, no media): language pretraining of a scratch LLM."""
        bos = torch.tensor([self.model.config.llm.bos_token_id])
        return [
            CrabSample(
                input_ids=torch.cat([bos, it.answer_ids]),
                media=EncodedMedia(),
                task="text",
                labels=torch.cat([torch.full_like(bos, -100), it.answer_ids]),
            )
            for it in batch.items
        ]

    def forward(self, batch: Batch) -> dict[str, torch.Tensor]:
        if self.objective == "towers":
            return tower_loss(self.model, self.tower_heads, batch, trainable=self.trainable)
        if self.text_only:
            out = self.model(self.text_samples(batch), compute_masks=False)
            return {"loss": out.loss, "lm_loss": out.lm_loss}
        media = self.encode(batch)
        heads = self.tower_heads
        seg_probe = heads.seg_probe if self.seg_probe_weight > 0 and heads is not None else None
        swap = self.seg_swap_weight > 0 and self.mask_loss
        out = self.model(
            self.samples(batch, media),
            compute_masks=self.mask_loss,
            return_seg_embeddings=seg_probe is not None or swap,
        )
        res = {"loss": out.loss, "lm_loss": out.lm_loss}
        if self.lm_weighting == "answer" and out.lm_loss is not None:
            per_answer = answer_mean_lm_loss(out.logits, out.batch.labels)
            res["loss"] = res["loss"] - out.lm_loss + per_answer
            res["lm_loss"] = per_answer
        if self.flag_weight > 0 and self.flag_tokens is not None and out.lm_loss is not None:
            flags = flag_loss(out.logits, out.batch.labels, self.flag_tokens)
            if flags is not None:
                res["flag_loss"] = flags
                res["loss"] = res["loss"] + self.flag_weight * flags
        if seg_probe is not None:
            res["seg_probe_loss"] = self.seg_probe_loss(seg_probe, batch, out)
            res["loss"] = res["loss"] + self.seg_probe_weight * res["seg_probe_loss"]
        if out.mask_loss is not None:
            res["mask_loss"] = out.mask_loss
        if swap:
            res["swap_loss"] = prompt_swap_loss(self.model, batch, media, out)
            res["loss"] = res["loss"] + self.seg_swap_weight * res["swap_loss"]
        if self.probe_weight > 0 and self.tower_heads is not None and self.tower_heads.probes is not None:
            res["probe_loss"] = self.media_probe_loss(batch, media)
            res["loss"] = res["loss"] + self.probe_weight * res["probe_loss"]
        return res

    @staticmethod
    def seg_probe_loss(probe, batch: Batch, out) -> torch.Tensor:
        """Seg-token probe loss over the seg items with ``seg_classes`` labels (zero when none)."""
        zero = sum(p.sum() * 0 for p in probe.parameters())
        if out.seg_embeddings is None:
            return zero
        keep = [k for k, i in enumerate(out.seg_rows) if "seg_classes" in batch.items[i].raw.labels]
        if not keep:
            return zero
        tgt = torch.stack(
            [torch.from_numpy(batch.items[out.seg_rows[k]].raw.labels["seg_classes"]) for k in keep]
        )
        return probe(out.seg_embeddings[keep], tgt.to(out.seg_embeddings.device))

    def media_probe_loss(self, batch: Batch, media: list[EncodedMedia]) -> torch.Tensor:
        """Probe losses (:mod:`crab_core.training.probes`) on the video / per-second audio tokens of
        SynthAV items, and on the image grid tokens when the model has the image grid."""
        video, audio, image = [], [], []
        q_v = self.model.config.vl_qformer.num_query_tokens
        q_a = self.model.config.al_qformer.num_query_tokens
        for it, m in zip(batch.items, media, strict=True):
            lab = it.raw.labels
            v = m.features.get("video")
            if v is not None and "patch" in lab and v.shape[0] == lab["patch"].shape[0] * q_v:
                video.append((v, torch.from_numpy(lab["patch"])))
            im = m.features.get("image")
            q_i = self.tower_heads.probes.q_i
            if im is not None and q_i and "image_map" in lab and im.shape[0] == q_i:
                image.append((im, torch.from_numpy(lab["image_map"][None])))
            a = m.features.get("audio")
            uniform = get_task(it.task).variant().audio_mode == "uniform"  # one 1-s window per second
            if a is not None and uniform and "audible" in lab and a.shape[0] == lab["audible"].shape[0] * q_a:
                audio.append(
                    (a, torch.from_numpy(lab["audible"]), torch.from_numpy(lab["gain"].astype("float32")))
                )
        return probe_loss(self.tower_heads.probes, video, audio, image)
