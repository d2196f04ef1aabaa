"""Visual and audio projectors: input LayerNorm -> query-only Q-Former -> MLP into the LLM width.

Mirrors the reference ``VLProjector`` / ``ALProjector`` (crab-reference.md section 1.4;
reference-fixtures README sections 4.b and 4.c). Every frame (visual) or audio segment is
compressed independently into ``Q`` tokens; no temporal embedding is added.

Checkpoint names: the reference calls these modules ``vl_projector.visual_*`` and
``al_projector.audio_*`` with BERT names inside the Q-Former; :func:`reference_to_ours` and
:func:`ours_to_reference` translate, dropping the BERT parts the query-only path never uses.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor, nn

from ..config import QFormerConfig
from ..errors import CheckpointError
from .qformer import QFormer, QFormerOutput

logger = logging.getLogger(__name__)

Modality = Literal["visual", "audio"]
_MODALITIES = ("visual", "audio")


@dataclass
class ProjectorOutput:
    """Projector result when cross-attentions are requested.

    Attributes:
        embeds: ``(B, T*Q, d_model)`` (or ``(B, Q, d_model)`` for a 3-D audio input).
        cross_attentions: One ``(B*T, heads, Q, n_patches)`` probability tensor per Q-Former layer.
    """

    embeds: Tensor
    cross_attentions: tuple[Tensor, ...]


def build_mlp(in_dim: int, out_dim: int, depth: int) -> nn.Sequential:
    """``Linear(in, out)`` then ``depth - 1`` times ``GELU, Linear(out, out)`` (reference ``build_mlp``)."""
    layers: list[nn.Module] = [nn.Linear(in_dim, out_dim)]
    for _ in range(1, depth):
        layers += [nn.GELU(), nn.Linear(out_dim, out_dim)]
    return nn.Sequential(*layers)


class QFormerProjector(nn.Module):
    """Per-frame / per-segment Q-Former compression followed by an MLP into the LLM width.

    Args:
        modality: ``"visual"`` (CLIP patches) or ``"audio"`` (BEATs tokens); selects the
            reference op order and the checkpoint prefix.
        encoder_width: Feature width ``C`` of the encoder (1024 CLIP-L, 768 BEATs).
        hidden_size: Q-Former width ``H`` (768).
        num_layers: Q-Former layers (2).
        num_heads: Q-Former heads (12).
        intermediate_size: Q-Former query-FFN width (3072).
        num_query_tokens: Queries ``Q`` per frame / segment (32).
        d_model: LLM hidden size ``D`` (4096).
        mlp_depth: Number of Linear layers in the MLP (2 = Linear, GELU, Linear).
        layer_norm_eps: Q-Former LayerNorm epsilon (1e-12); the input LayerNorm uses 1e-5.
        dropout: Q-Former hidden dropout (training only).
        attention_dropout: Q-Former attention dropout; defaults to ``dropout``.
        unit_embeddings: Size of a learned index embedding added to the ``Q`` output tokens of
            frame / segment ``t`` (indices past the table reuse its last row); 0 = none (reference).
        image_grid: ``G`` > 0: a single frame (the ``image`` input, ``image=True``) becomes ``G*G``
            tokens, the normalised patch map average-pooled to a ``G x G`` grid (one token per cell,
            in raster order), a Linear into the Q-Former width and the same MLP, instead of ``Q``
            Q-Former queries, which keep what is in a frame far better than where
            (``benchmarks/results/frame_token_boxes_mlp.md``). 0 = the reference (crab-tiny v5).

    Example:
        >>> import torch
        >>> proj = QFormerProjector("visual", 48, 32, 2, 4, 64, 4, d_model=64).eval()
        >>> proj(torch.randn(2, 32, 48), tokens_per_frame=16).shape
        torch.Size([2, 8, 64])
    """

    def __init__(
        self,
        modality: Modality,
        encoder_width: int,
        hidden_size: int,
        num_layers: int,
        num_heads: int,
        intermediate_size: int,
        num_query_tokens: int,
        d_model: int,
        mlp_depth: int = 2,
        layer_norm_eps: float = 1e-12,
        dropout: float = 0.1,
        attention_dropout: float | None = None,
        unit_embeddings: int = 0,
        image_grid: int = 0,
    ) -> None:
        super().__init__()
        if modality not in _MODALITIES:
            raise ValueError(f"modality must be one of {_MODALITIES}, got {modality!r}")
        self.modality = modality
        self.encoder_width = encoder_width
        self.d_model = d_model
        self.input_norm = nn.LayerNorm(encoder_width, eps=1e-5)
        self.qformer = QFormer(
            hidden_size,
            num_layers,
            num_heads,
            intermediate_size,
            encoder_width,
            num_query_tokens,
            layer_norm_eps,
            dropout,
            attention_dropout,
        )
        self.mlp = build_mlp(hidden_size, d_model, mlp_depth)
        self.image_grid = image_grid
        self.cell_proj = nn.Linear(encoder_width, hidden_size) if image_grid else None
        self._pool: dict[int, Tensor] = {}  # patches -> pooling weights (not a parameter, not saved)
        self.unit_embed = nn.Embedding(unit_embeddings, d_model) if unit_embeddings else None
        if self.unit_embed is not None:
            nn.init.normal_(self.unit_embed.weight, std=0.02)

    @classmethod
    def from_config(cls, cfg: QFormerConfig, d_model: int, modality: Modality) -> QFormerProjector:
        """Build from a :class:`~crab_core.config.QFormerConfig` and the LLM width."""
        return cls(
            modality,
            cfg.encoder_width,
            cfg.hidden_size,
            cfg.num_hidden_layers,
            cfg.num_attention_heads,
            cfg.intermediate_size,
            cfg.num_query_tokens,
            d_model,
            mlp_depth=cfg.mlp_depth,
            layer_norm_eps=cfg.layer_norm_eps,
            dropout=cfg.hidden_dropout_prob,
            attention_dropout=cfg.attention_probs_dropout_prob,
            unit_embeddings=cfg.unit_embeddings,
            image_grid=cfg.image_grid,
        )

    @property
    def num_query_tokens(self) -> int:
        return self.qformer.num_query_tokens

    def tokens_per_unit(self, image: bool = False) -> int:
        """LLM tokens per frame / segment: ``G*G`` for an image with ``image_grid``, else ``Q``."""
        return self.image_grid**2 if image and self.image_grid else self.num_query_tokens

    def pool_weights(self, patches: int) -> Tensor:
        """``(G*G, P)`` average-pooling weights of the image grid over a square patch map (built
        once per patch count and device, then reused)."""
        dev = self.cell_proj.weight.device
        cached = self._pool.get(patches)
        if cached is not None and cached.device == dev:
            return cached
        side = int(round(patches**0.5))
        if side * side != patches:
            raise ValueError(f"image_grid needs a square patch map, got {patches} patches")
        eye = torch.eye(patches, device=dev).reshape(patches, 1, side, side)
        self._pool[patches] = nn.functional.adaptive_avg_pool2d(eye, self.image_grid).reshape(patches, -1).T
        return self._pool[patches]

    def _frames(self, x: Tensor, tokens_per_frame: int | None) -> Tensor:
        """Flatten ``(B, T, n, C)`` or ``(B, T*P, C)`` to ``(B*T, n_or_P, C)``."""
        if x.shape[-1] != self.encoder_width:
            raise ValueError(f"expected feature width {self.encoder_width}, got shape {tuple(x.shape)}")
        if x.dim() == 4:
            if tokens_per_frame is not None and tokens_per_frame != x.shape[2]:
                raise ValueError(f"tokens_per_frame={tokens_per_frame} but input is {tuple(x.shape)}")
            return x.reshape(-1, x.shape[2], x.shape[3])
        if x.dim() != 3:
            raise ValueError(f"expected a 3-D or 4-D input, got shape {tuple(x.shape)}")
        if tokens_per_frame is None:
            return x
        if tokens_per_frame <= 0 or x.shape[1] % tokens_per_frame:
            raise ValueError(
                f"sequence length {x.shape[1]} is not a multiple of tokens_per_frame={tokens_per_frame}"
            )
        return x.reshape(-1, tokens_per_frame, x.shape[2])

    def encode_queries(
        self, x: Tensor, tokens_per_frame: int | None = None, return_cross_attentions: bool = False
    ) -> QFormerOutput:
        """Input LayerNorm and Q-Former, without the MLP.

        Args:
            x: ``(B, T*P, C)`` with ``tokens_per_frame=P``, ``(B, T, n, C)``, or ``(B, n, C)`` (one
                frame / segment per sample when ``tokens_per_frame`` is ``None``).
            tokens_per_frame: Patches per frame ``P`` for a flattened 3-D input.
            return_cross_attentions: Also return per-layer ``(B*T, heads, Q, n)`` probabilities.

        Returns:
            :class:`~crab_core.model.qformer.QFormerOutput`; ``last_hidden_state`` is ``(B*T, Q, H)``.
        """
        frames = self.input_norm(self._frames(x, tokens_per_frame))
        return self.qformer(frames, return_cross_attentions=return_cross_attentions)

    def forward(
        self,
        x: Tensor,
        tokens_per_frame: int | None = None,
        return_cross_attentions: bool = False,
        image: bool = False,
    ) -> Tensor | ProjectorOutput:
        """Project encoder features to LLM tokens.

        Args:
            x: Visual ``(B, T*P, C)`` (give ``tokens_per_frame=P``); audio ``(B, T, n, C)`` or
                ``(B, n, C)``; see :meth:`encode_queries`.
            tokens_per_frame: Patches per frame for a flattened 3-D input.
            return_cross_attentions: Return a :class:`ProjectorOutput` instead of a tensor (for the
                image grid: its pooling weights ``(B*T, 1, G*G, P)``, the cells' "attention").
            image: ``x`` is the single-frame image input (uses ``image_grid`` when set).

        Returns:
            ``(B, T*Q, d_model)`` tensor (``(B, Q, d_model)`` for a 3-D audio input), or a
            :class:`ProjectorOutput` when ``return_cross_attentions``.
        """
        if image and self.image_grid:
            frames = self.input_norm(self._frames(x, tokens_per_frame))  # (B*T, P, C)
            w = self.pool_weights(frames.shape[1]).to(frames.dtype)
            h = self.cell_proj(torch.einsum("gp,npc->ngc", w, frames))  # (B*T, G*G, H)
            enc = QFormerOutput(h, (w.expand(h.shape[0], 1, *w.shape),) if return_cross_attentions else None)
        else:
            enc = self.encode_queries(x, tokens_per_frame, return_cross_attentions)
            h = enc.last_hidden_state
        batch = x.shape[0]
        if self.modality == "visual":  # reference: MLP per frame, then (B, T*Q, D)
            out = self.mlp(h).reshape(batch, -1, self.d_model)
        else:  # reference: (B, T*Q, H) first, then MLP (a no-op reshape for 3-D input)
            out = self.mlp(h.reshape(batch, -1, h.shape[-1]))
        if self.unit_embed is not None:
            units = h.shape[0] // batch
            idx = torch.arange(units, device=out.device).clamp_max(self.unit_embed.num_embeddings - 1)
            out = out + self.unit_embed(idx).repeat_interleave(h.shape[1], 0).to(out.dtype)
        if return_cross_attentions:
            return ProjectorOutput(out, enc.cross_attentions or ())
        return out


# --------------------------------------------------------------------------------------------
# Checkpoint conversion
# --------------------------------------------------------------------------------------------

# Inside ``{p}_Qformer.bert.encoder.layer.{i}.`` (reference) <-> ``qformer.layers.{i}.`` (ours).
_LAYER_MAP = {
    "attention.self.query": "self_attn.q_proj",
    "attention.self.key": "self_attn.k_proj",
    "attention.self.value": "self_attn.v_proj",
    "attention.output.dense": "self_attn.out_proj",
    "attention.output.LayerNorm": "self_attn.norm",
    "crossattention.self.query": "cross_attn.q_proj",
    "crossattention.self.key": "cross_attn.k_proj",
    "crossattention.self.value": "cross_attn.v_proj",
    "crossattention.output.dense": "cross_attn.out_proj",
    "crossattention.output.LayerNorm": "cross_attn.norm",
    "intermediate_query.dense": "ffn.fc1",
    "output_query.dense": "ffn.fc2",
    "output_query.LayerNorm": "ffn.norm",
}
_LAYER_MAP_INV = {v: k for k, v in _LAYER_MAP.items()}

# Reference keys never used on the query-only path (relative to ``{p}_``):
# - BERT word / position embeddings and the ``position_ids`` buffer: queries carry no token ids;
# - the text FFN ``intermediate`` / ``output`` of each layer: only ``*_query`` runs on queries;
# - the ``cls`` MLM head, including the tied aliases ``decoder.weight`` / ``decoder.bias``.
_DROPPED = re.compile(
    r"Qformer\.(bert\.embeddings\.(word_embeddings\.weight|position_embeddings\.weight|position_ids)"
    r"|bert\.encoder\.layer\.\d+\.(intermediate|output)\.(dense|LayerNorm)\.(weight|bias)"
    r"|cls\..+)"
)
_REF_LAYER = re.compile(r"Qformer\.bert\.encoder\.layer\.(\d+)\.(.+)\.(weight|bias)")
_REF_MLP = re.compile(r"proj\.(\d+)\.(weight|bias)")
_OURS_LAYER = re.compile(r"qformer\.layers\.(\d+)\.(.+)\.(weight|bias)")
_OURS_MLP = re.compile(r"mlp\.(\d+)\.(weight|bias)")
_PARAM = r"\.(weight|bias)"


def _detect_modality(keys: list[str]) -> Modality:
    found = {m for m in _MODALITIES for k in keys if k.startswith(f"{m}_")}
    if len(found) != 1:
        raise CheckpointError(
            f"cannot tell visual from audio projector keys (prefixes found: {sorted(found)})"
        )
    return found.pop()


def _ref_rest_to_ours(rest: str) -> str | None:
    """Map a reference key without its ``{p}_`` prefix to our name (``None`` if unknown)."""
    if rest == "query_tokens":
        return "qformer.query_tokens"
    if m := re.fullmatch(r"ln" + _PARAM, rest):
        return f"input_norm.{m[1]}"
    if m := re.fullmatch(r"Qformer\.bert\.embeddings\.LayerNorm" + _PARAM, rest):
        return f"qformer.norm.{m[1]}"
    if (m := _REF_LAYER.fullmatch(rest)) and m[2] in _LAYER_MAP:
        return f"qformer.layers.{m[1]}.{_LAYER_MAP[m[2]]}.{m[3]}"
    if m := _REF_MLP.fullmatch(rest):
        return f"mlp.{m[1]}.{m[2]}"
    return None


def reference_to_ours(
    sd: dict[str, Tensor], modality: Modality | None = None
) -> tuple[dict[str, Tensor], list[str]]:
    """Convert a reference ``vl_projector.`` / ``al_projector.`` state dict to ours.

    Args:
        sd: Keys relative to the projector root, e.g. ``visual_query_tokens``,
            ``audio_Qformer.bert.encoder.layer.0.attention.self.query.weight``.
        modality: ``"visual"`` / ``"audio"``; detected from the ``visual_`` / ``audio_`` prefix
            when ``None``.

    Returns:
        ``(ours, dropped)``: our state dict (same tensors) and the reference keys deliberately
        dropped because the reference never uses them (see ``_DROPPED``).

    Raises:
        CheckpointError: A key is neither mapped nor known-unused, or the modality is ambiguous.
    """
    modality = modality or _detect_modality(list(sd))
    prefix = f"{modality}_"
    ours: dict[str, Tensor] = {}
    dropped: list[str] = []
    for key, value in sd.items():
        rest = key[len(prefix) :] if key.startswith(prefix) else None
        if rest is not None and _DROPPED.fullmatch(rest):
            dropped.append(key)
            continue
        name = _ref_rest_to_ours(rest) if rest is not None else None
        if name is None:
            raise CheckpointError(f"unexpected key in the {modality} projector checkpoint: {key!r}")
        ours[name] = value
    logger.debug("projector %s: mapped %d keys, dropped %d unused", modality, len(ours), len(dropped))
    return ours, dropped


def _ours_to_ref_rest(name: str) -> str | None:
    if name == "qformer.query_tokens":
        return "query_tokens"
    if m := re.fullmatch(r"input_norm" + _PARAM, name):
        return f"ln.{m[1]}"
    if m := re.fullmatch(r"qformer\.norm" + _PARAM, name):
        return f"Qformer.bert.embeddings.LayerNorm.{m[1]}"
    if (m := _OURS_LAYER.fullmatch(name)) and m[2] in _LAYER_MAP_INV:
        return f"Qformer.bert.encoder.layer.{m[1]}.{_LAYER_MAP_INV[m[2]]}.{m[3]}"
    if m := _OURS_MLP.fullmatch(name):
        return f"proj.{m[1]}.{m[2]}"
    return None


def ours_to_reference(sd: dict[str, Tensor], modality: Modality) -> dict[str, Tensor]:
    """Inverse of :func:`reference_to_ours` (dropped keys are not recreated).

    Args:
        sd: Our :class:`QFormerProjector` state dict.
        modality: ``"visual"`` or ``"audio"``: chooses the ``visual_`` / ``audio_`` prefix.

    Returns:
        Reference-named state dict, relative to ``vl_projector.`` / ``al_projector.``.

    Raises:
        CheckpointError: A key is not a projector key.
    """
    if modality not in _MODALITIES:
        raise ValueError(f"modality must be one of {_MODALITIES}, got {modality!r}")
    out: dict[str, Tensor] = {}
    for name, value in sd.items():
        rest = _ours_to_ref_rest(name)
        if rest is None and name.startswith("unit_embed."):
            raise CheckpointError(
                "the reference format has no per-unit index embedding "
                "(QFormerConfig.unit_embeddings > 0, e.g. crab-tiny); such a model "
                "cannot be written in the reference layout"
            )
        if rest is None:
            raise CheckpointError(f"unexpected projector key: {name!r}")
        out[f"{modality}_{rest}"] = value
    return out
