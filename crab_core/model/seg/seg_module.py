"""Crab's segmentation module: seg-token states + CLIP features -> per-sample mask logits.

Pipeline (crab-reference.md section 1.5; reference-fixtures README section 4.f):

1. ``text_proj`` (Linear d_model->d_model, ReLU, Linear d_model->D) on the 6 seg-token states,
   grouped as ``(scales=2, tokens_per_scale=3)``;
2. token fusion per scale, ``sum_i s_i e_i`` accumulated from zeros;
3. frame-0 patch features of the two CLIP layers through one shared neck
   (1x1 conv, LayerNorm2d, 3x3 conv, LayerNorm2d);
4. per sample and level, :class:`MaskDecoderMultiScale`; level 1 is gated by level 0's logits;
5. level fusion ``sum_l w_l * bilinear(logits_l -> low_res)`` from zeros, then bilinear to
   ``image_size``.

Compatibility switches (crab-reference.md section 8):

* ``learnable_fusion=False`` (reference, bug 9): ``s_i = float32(1/3)`` and ``w_l = 0.5`` are fixed
  and unregistered. ``True``: registered parameters ``token_fusion`` ``(scales, tokens_per_scale)``
  and ``scale_fusion`` ``(scales,)`` with the same initial values (identical output at init).
* ``chain_query_generator`` (bug 10), see :mod:`.query_generator`.
* ``loss_reduction`` (bug 11), see :mod:`.losses`.
* ``decoder="prompt"`` (our training, issue #13): steps 2-5 are replaced by
  :class:`~.prompt_decoder.PromptMaskDecoder` (seg tokens as tokens of the two-way transformer, a
  frame stem for a pixel embedding at ``image_size / 2``); it needs the frames. ``"reference"`` is
  the reference's decoder, bit-exact for official weights.

The two random-PE matrices (:data:`PE_BUFFER_KEYS`) are persistent buffers; official checkpoints
lack them (bug 8).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from crab_core.config import CompatConfig, SegConfig
from crab_core.errors import CheckpointError

from .common import LayerNorm2d, PositionEmbeddingRandom
from .losses import mask_loss
from .mask_decoder import CLASS_TASKS, MaskDecoderMultiScale
from .prompt_decoder import PromptMaskDecoder

logger = logging.getLogger(__name__)

# State-dict keys (relative to the module) of the random-PE buffers, absent from official files.
PE_BUFFER_KEYS = (
    "pe_layer.positional_encoding_gaussian_matrix",
    "mask_decoder.pe1.positional_encoding_gaussian_matrix",
)
# Keys that only exist in our format (learnable_fusion=True).
FUSION_KEYS = ("token_fusion", "scale_fusion")


@dataclass
class SegOutput:
    """Result of :class:`SegModule`.

    Attributes:
        pred_masks: Per-sample ``(C, image_size, image_size)`` logits; ``C = num_avss_classes``
            for task ``'avss'``, else 1.
        mask_loss: Scalar loss when ``gt_mask`` was given, else ``None``.
        level_logits: ``[sample][level]`` decoder logits, ``(1, C, 2g, 2g)`` at level 0 and
            ``(1, C, 4g, 4g)`` at level 1 (``g`` = patch grid size).
        query_generator_out: ``[sample][level]`` ``(1, Q, D)`` query-generator outputs.
        text_hidden_fcs_out: ``(B, n_seg_tokens, D)`` projected seg-token states.
    """

    pred_masks: list[Tensor]
    mask_loss: Tensor | None = None
    level_logits: list[list[Tensor]] = field(default_factory=list)
    query_generator_out: list[list[Tensor]] = field(default_factory=list)
    text_hidden_fcs_out: Tensor | None = None


class SegModule(nn.Module):
    """SAM-style multi-scale segmentation head of Crab.

    Args:
        d_model: LLM hidden size (seg-token state width).
        vit_dim: CLIP hidden size of the two multi-scale features.
        prompt_embed_dim: Decoder width ``D`` (reference 256).
        mlp_dim: MLP width of the two-way transformer and query-generator FFN (reference 2048).
        num_heads: Attention heads (reference 8).
        attention_downsample_rate: Cross-attention down-projection (reference 2).
        decoder_depth: Two-way transformer depth.
        num_queries: Learned mask queries.
        query_generator_layers: Query-generator depth.
        low_res_mask_size: Size at which the levels are fused.
        image_size: Output mask size (= CLIP input size).
        patch_size: CLIP patch size (grid = image_size // patch_size).
        scales: Number of feature levels (2).
        tokens_per_scale: Seg tokens per level (3).
        num_avss_classes: Channels of the avss head (71).
        chain_query_generator: Fix bug 10.
        learnable_fusion: Fix bug 9 (register the fusion scalars).
        loss_reduction: ``"sum"`` (reference) or ``"mean"``.
        avss_balance: share of the class-balanced AVSS cross-entropy (a training option, see
            :mod:`.losses`; the trainer sets it per phase from ``Phase.avss_balance``).
        decoder: ``"reference"`` or ``"prompt"`` (see the module docstring).
        pixel_dim: pixel-embedding width of the prompt decoder.

    Example:
        >>> m = SegModule(64, 48, prompt_embed_dim=32, mlp_dim=64, num_heads=4, num_queries=5,
        ...               low_res_mask_size=28, image_size=56)
        >>> out = m(torch.randn(2, 6, 64), [torch.randn(2, 16, 48)] * 2, ["s4", "avss"])
        >>> [p.shape for p in out.pred_masks]
        [torch.Size([1, 56, 56]), torch.Size([71, 56, 56])]
    """

    def __init__(
        self,
        d_model: int,
        vit_dim: int,
        prompt_embed_dim: int = 256,
        mlp_dim: int = 2048,
        num_heads: int = 8,
        attention_downsample_rate: int = 2,
        decoder_depth: int = 2,
        num_queries: int = 300,
        query_generator_layers: int = 2,
        low_res_mask_size: int = 112,
        image_size: int = 224,
        patch_size: int = 14,
        scales: int = 2,
        tokens_per_scale: int = 3,
        num_avss_classes: int = 71,
        chain_query_generator: bool = False,
        learnable_fusion: bool = False,
        loss_reduction: str = "sum",
        avss_balance: float = 0.0,
        decoder: str = "reference",
        pixel_dim: int = 32,
    ) -> None:
        super().__init__()
        if image_size % patch_size:
            raise ValueError("image_size must be a multiple of patch_size")
        if loss_reduction not in ("sum", "mean"):
            raise ValueError(f"loss_reduction must be 'sum' or 'mean', got {loss_reduction!r}")
        if decoder not in ("reference", "prompt"):
            raise ValueError(f"decoder must be 'reference' or 'prompt', got {decoder!r}")
        d = prompt_embed_dim
        self.decoder = decoder
        self.grid = image_size // patch_size
        self.image_size, self.low_res_mask_size = image_size, low_res_mask_size
        self.scales, self.tokens_per_scale = scales, tokens_per_scale
        self.loss_reduction = loss_reduction
        self.avss_balance = avss_balance
        self.learnable_fusion = learnable_fusion

        self.text_proj = nn.Sequential(nn.Linear(d_model, d_model), nn.ReLU(), nn.Linear(d_model, d))
        if decoder == "reference":
            self.no_mask_embed = nn.Embedding(1, d)
        self.image_feature_neck = nn.Sequential(
            nn.Conv2d(vit_dim, d, kernel_size=1, bias=False),
            LayerNorm2d(d),
            nn.Conv2d(d, d, kernel_size=3, padding=1, bias=False),
            LayerNorm2d(d),
        )
        self.pe_layer = PositionEmbeddingRandom(d // 2)
        if decoder == "prompt":
            self.prompt_decoder = PromptMaskDecoder(
                d,
                scales * tokens_per_scale,
                scales,
                depth=decoder_depth,
                num_heads=num_heads,
                mlp_dim=mlp_dim,
                attention_downsample_rate=attention_downsample_rate,
                num_avss_classes=num_avss_classes,
                pixel_dim=pixel_dim,
                image_size=image_size,
            )
            return
        self.mask_decoder = MaskDecoderMultiScale(
            d,
            num_queries,
            depth=decoder_depth,
            num_heads=num_heads,
            mlp_dim=mlp_dim,
            attention_downsample_rate=attention_downsample_rate,
            scales=scales,
            query_generator_layers=query_generator_layers,
            num_avss_classes=num_avss_classes,
            chain_query_generator=chain_query_generator,
        )
        if learnable_fusion:
            self.token_fusion = nn.Parameter(torch.full((scales, tokens_per_scale), 1.0 / tokens_per_scale))
            self.scale_fusion = nn.Parameter(torch.full((scales,), 1.0 / scales))

    @classmethod
    def from_config(
        cls, seg: SegConfig, d_model: int, vit_dim: int, patch_size: int, compat: CompatConfig
    ) -> SegModule:
        """Build from a :class:`SegConfig`; the loss reduction is ``"sum"`` only in reference mode."""
        return cls(
            d_model=d_model,
            vit_dim=vit_dim,
            prompt_embed_dim=seg.prompt_embed_dim,
            mlp_dim=seg.mlp_dim,
            num_heads=seg.num_heads,
            attention_downsample_rate=seg.attention_downsample_rate,
            decoder_depth=seg.decoder_depth,
            num_queries=seg.num_queries,
            query_generator_layers=seg.query_generator_layers,
            low_res_mask_size=seg.low_res_mask_size,
            image_size=seg.image_size,
            patch_size=patch_size,
            scales=seg.scales,
            tokens_per_scale=seg.tokens_per_scale,
            num_avss_classes=seg.num_avss_classes,
            chain_query_generator=compat.chain_query_generator,
            learnable_fusion=compat.learnable_fusion,
            loss_reduction="sum" if compat.mode == "reference" else "mean",
            decoder=seg.decoder,
            pixel_dim=seg.pixel_dim,
        )

    def _fusion_weights(self, ref: Tensor) -> tuple[Tensor, Tensor]:
        """Token ``(scales, tokens_per_scale)`` and level ``(scales,)`` fusion weights.

        Reference mode: float32 ``1/tokens_per_scale`` and ``1/scales`` constants (the reference
        keeps them in plain Python lists, outside the state dict and the optimizer), cast to the
        activation dtype as the reference's 0-dim scalars effectively are.
        """
        if self.learnable_fusion:
            return self.token_fusion.to(ref.dtype), self.scale_fusion.to(ref.dtype)
        token_w = torch.full(
            (self.scales, self.tokens_per_scale), 1.0 / self.tokens_per_scale, device=ref.device
        ).to(ref.dtype)
        scale_w = torch.full((self.scales,), 1.0 / self.scales, device=ref.device).to(ref.dtype)
        return token_w, scale_w

    def _fuse_tokens(self, proj: Tensor, token_w: Tensor) -> Tensor:
        """``(B, scales * tokens_per_scale, D)`` -> ``(B, scales, D)`` (one object per sample)."""
        b, n, d = proj.shape
        if n != self.scales * self.tokens_per_scale:
            raise ValueError(f"expected {self.scales * self.tokens_per_scale} seg tokens, got {n}")
        grouped = proj.reshape(b, self.scales, self.tokens_per_scale, d)
        fused = torch.zeros(b, self.scales, d, dtype=proj.dtype, device=proj.device)
        for i in range(self.tokens_per_scale):
            fused = fused + token_w[:, i, None] * grouped[:, :, i]
        return fused

    def _grid_features(self, features: list[Tensor]) -> Tensor:
        """Frame-0 patch grids: list of ``(B, T*g*g, vit_dim)`` -> ``(B, scales, vit_dim, g, g)``."""
        if len(features) != self.scales:
            raise ValueError(f"expected {self.scales} multi-scale features, got {len(features)}")
        g = self.grid
        grids = []
        for feat in features:
            b, n, c = feat.shape
            if n % (g * g):
                raise ValueError(f"feature length {n} is not a multiple of {g}x{g} patches")
            grids.append(feat.reshape(b, n // (g * g), g, g, c)[:, 0].permute(0, 3, 1, 2))
        return torch.stack(grids, dim=1)

    def _decode_sample(
        self, neck: Tensor, prompts: Tensor, task: str, pe: Tensor, scale_w: Tensor
    ) -> tuple[Tensor, list[Tensor], list[Tensor]]:
        """Decode one sample: ``neck`` ``(scales, D, g, g)``, ``prompts`` ``(scales, D)``."""
        g, low = self.grid, self.low_res_mask_size
        dense = self.no_mask_embed.weight.reshape(1, -1, 1, 1).expand(1, -1, g, g)
        n_cls = self.mask_decoder.avss_classifier.out_channels if task in CLASS_TASKS else 1
        fused = torch.zeros(1, n_cls, low, low, dtype=neck.dtype, device=neck.device)
        logits: Tensor | None = None
        level_logits, qg_outs = [], []
        for level in range(self.scales):
            logits, qg_out = self.mask_decoder(
                neck[level].unsqueeze(0),
                pe,
                prompts[level].reshape(1, 1, -1),
                dense,
                level,
                task,
                previous_logits=logits,
            )
            level_logits.append(logits)
            qg_outs.append(qg_out)
            resized = F.interpolate(logits.float(), (low, low), mode="bilinear", align_corners=False)
            fused = fused + scale_w[level] * resized.to(logits)
        size = (self.image_size, self.image_size)
        mask = F.interpolate(fused.float(), size, mode="bilinear", align_corners=False).to(fused)
        return mask[0], level_logits, qg_outs

    def _forward_prompt(
        self,
        seg_embeddings: Tensor,
        multi_scale_features: list[Tensor],
        task_names: list[str],
        frames: Tensor | None,
    ) -> SegOutput:
        """The prompt decoder's path (``decoder="prompt"``): one batched decode, then bilinear to
        ``image_size``."""
        if frames is None:
            raise ValueError("the prompt decoder needs the frames (B, 3, image_size, image_size)")
        proj = self.text_proj(seg_embeddings)
        grids = self._grid_features(multi_scale_features)  # (B, scales, vit_dim, g, g)
        b, s = grids.shape[:2]
        neck = self.image_feature_neck(grids.flatten(0, 1)).unflatten(0, (b, s))
        pe = self.pe_layer((self.grid, self.grid)).unsqueeze(0)
        low = self.prompt_decoder(neck, proj, frames.to(neck.dtype), task_names, pe)
        size = (self.image_size, self.image_size)
        masks = [
            F.interpolate(m.unsqueeze(0).float(), size, mode="bilinear", align_corners=False)[0].to(m)
            for m in low
        ]
        return SegOutput(
            pred_masks=masks, level_logits=[[m.unsqueeze(0)] for m in low], text_hidden_fcs_out=proj
        )

    def forward(
        self,
        seg_embeddings: Tensor,
        multi_scale_features: list[Tensor],
        task_names: list[str],
        gt_mask: Tensor | None = None,
        frames: Tensor | None = None,
    ) -> SegOutput:
        """Predict masks (and the mask loss when ``gt_mask`` is given).

        Args:
            seg_embeddings: ``(B, scales * tokens_per_scale, d_model)`` LLM states of the seg tokens.
            multi_scale_features: ``scales`` tensors ``(B, P, vit_dim)``; the first ``g*g`` patches
                (frame 0) are used.
            task_names: ``B`` task names; ``'avss'`` selects the multi-class head.
            gt_mask: Optional ``(B, 1, image_size, image_size)`` targets.
            frames: ``(B, 3, image_size, image_size)`` CLIP-normalised frames (prompt decoder only).

        Returns:
            :class:`SegOutput`.
        """
        b = seg_embeddings.shape[0]
        if len(task_names) != b:
            raise ValueError(f"got {len(task_names)} task names for a batch of {b}")
        if self.decoder == "prompt":
            out = self._forward_prompt(seg_embeddings, multi_scale_features, task_names, frames)
            if gt_mask is not None:
                out.mask_loss = mask_loss(
                    out.pred_masks, gt_mask, task_names, self.loss_reduction, self.avss_balance
                )
            return out
        token_w, scale_w = self._fusion_weights(seg_embeddings)
        proj = self.text_proj(seg_embeddings)
        prompts = self._fuse_tokens(proj, token_w)
        grids = self._grid_features(multi_scale_features)
        pe = self.pe_layer((self.grid, self.grid)).unsqueeze(0)
        out = SegOutput(pred_masks=[], text_hidden_fcs_out=proj)
        for i in range(b):
            mask, lv, qg = self._decode_sample(
                self.image_feature_neck(grids[i]), prompts[i], task_names[i], pe, scale_w
            )
            out.pred_masks.append(mask)
            out.level_logits.append(lv)
            out.query_generator_out.append(qg)
        if gt_mask is not None:
            out.mask_loss = mask_loss(
                out.pred_masks, gt_mask, task_names, self.loss_reduction, self.avss_balance
            )
        return out


# Reference prefix -> our prefix (relative to ``seg_module.``). Every reference key starts with
# exactly one of these; identity rows are listed so that unknown keys can be rejected.
_PREFIX_TABLE = (
    ("text_hidden_fcs.0.0.", "text_proj.0."),
    ("text_hidden_fcs.0.2.", "text_proj.2."),
    ("mask_decoder.ms3_s4_classfier.", "mask_decoder.binary_classifier."),  # (sic) in the reference
    ("no_mask_embed.", "no_mask_embed."),
    ("image_feature_neck.", "image_feature_neck."),
    ("pe_layer.", "pe_layer."),
    ("mask_decoder.transformer.", "mask_decoder.transformer."),
    ("mask_decoder.avs_query_tokens.", "mask_decoder.avs_query_tokens."),
    ("mask_decoder.query_generator.", "mask_decoder.query_generator."),
    ("mask_decoder.hyper_mlp_out.", "mask_decoder.hyper_mlp_out."),
    ("mask_decoder.hyper_mlp.", "mask_decoder.hyper_mlp."),
    ("mask_decoder.output_upscaling.", "mask_decoder.output_upscaling."),
    ("mask_decoder.upsample_2x.", "mask_decoder.upsample_2x."),
    ("mask_decoder.pe1.", "mask_decoder.pe1."),
    ("mask_decoder.level_embed.", "mask_decoder.level_embed."),
    ("mask_decoder.avss_classifier.", "mask_decoder.avss_classifier."),
)


def _rename(key: str, table: tuple[tuple[str, str], ...]) -> str | None:
    for src, dst in table:
        if key.startswith(src):
            return dst + key[len(src) :]
    return None


def reference_to_ours(sd: dict[str, Tensor]) -> tuple[dict[str, Tensor], list[str]]:
    """Map reference seg-module keys (relative to ``seg_module.``) to :class:`SegModule` keys.

    Nothing is dropped: the reference uses every seg-module tensor. The two PE buffers
    (:data:`PE_BUFFER_KEYS`) are mapped when present; official checkpoints lack them.

    Raises:
        CheckpointError: For a key that is not a reference seg-module key.
    """
    out: dict[str, Tensor] = {}
    for key, value in sd.items():
        new = _rename(key, _PREFIX_TABLE)
        if new is None:
            raise CheckpointError(f"unexpected seg_module checkpoint key {key!r}")
        out[new] = value
    return out, []


def ours_to_reference(sd: dict[str, Tensor]) -> dict[str, Tensor]:
    """Inverse of :func:`reference_to_ours`.

    The learnable fusion parameters (:data:`FUSION_KEYS`) have no reference counterpart (the
    reference's scalars are fixed); they are left out with a warning.

    Raises:
        CheckpointError: For a key that is not a :class:`SegModule` key.
    """
    inverse = tuple((dst, src) for src, dst in _PREFIX_TABLE)
    out: dict[str, Tensor] = {}
    for key, value in sd.items():
        if key in FUSION_KEYS:
            logger.warning("seg_module.%s has no reference counterpart; not exported", key)
            continue
        new = _rename(key, inverse)
        if new is None:
            raise CheckpointError(f"unexpected SegModule key {key!r}")
        out[new] = value
    return out
