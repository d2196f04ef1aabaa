"""BEATs audio encoder (Chen et al. 2022) as used by Crab: normalised fbank in, patch tokens out.

Crab's ``AudioEncoder`` feeds a pre-computed, normalised 128-bin fbank (see ``crab_core.media.fbank``) to
BEATs with an all-False padding mask and ``feature_only=True``. This module reproduces that path:

``(N, L, 128)`` fbank -> 16x16 conv patches ``(N, C, L//16, 8)`` -> tokens in time-major order
(``t * 8 + f``) -> LayerNorm -> ``post_extract_proj`` -> weight-normed grouped positional conv (even kernel,
last step dropped) + GELU added to the input -> LayerNorm -> post-LN (deep-norm) transformer layers whose
attention scales queries by ``head_dim**-0.5 / 32``, subtracts the row max, multiplies by 32 and adds a
bucketed relative-position bias gated per query by ``grep_linear`` / ``grep_a``.

Parameter names equal the reference BEATs state dict (relative to ``...audio_encoder.audio_encoder.``),
with one difference: the relative-position table is shared by every layer. The reference registers the
same ``nn.Embedding`` under every layer, so its state dict repeats it as
``encoder.layers.{i}.self_attn.relative_attention_bias.weight`` for i > 0 (aliases). Here it is registered
once, in layer 0; ``reference_to_ours`` drops the aliases and ``ours_to_reference`` writes them back.
"""

from __future__ import annotations

import math
import re

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from crab_core.config import BeatsConfig
from crab_core.errors import CheckpointError, ConfigError

_ALPHA = 32.0  # BEATs attention stabiliser: q / 32, then (scores - rowmax) * 32
_ALIAS = re.compile(r"encoder\.layers\.(\d+)\.self_attn\.relative_attention_bias\.weight")
_LAYER_KEYS = (
    r"self_attn\.(q_proj|k_proj|v_proj|out_proj|grep_linear)\.(weight|bias)",
    r"self_attn\.grep_a",
    r"(self_attn_layer_norm|final_layer_norm|fc1|fc2)\.(weight|bias)",
)
_KNOWN_KEYS = re.compile(
    r"(patch_embedding\.(weight|bias)"
    r"|(layer_norm|post_extract_proj|predictor)\.(weight|bias)"
    r"|encoder\.pos_conv\.0\.(weight_g|weight_v|bias)"
    r"|encoder\.layer_norm\.(weight|bias)"
    r"|encoder\.layers\.0\.self_attn\.relative_attention_bias\.weight"
    r"|encoder\.layers\.\d+\.(" + "|".join(_LAYER_KEYS) + r"))"
)


def _activation(name: str):
    if name == "gelu":
        return F.gelu
    if name == "relu":
        return F.relu
    raise ConfigError(f"unsupported BEATs activation_fn {name!r} (expected 'gelu' or 'relu')")


def relative_position_buckets(length: int, num_buckets: int, max_distance: int) -> Tensor:
    """BEATs/T5 bidirectional relative-position buckets.

    Args:
        length: Sequence length (queries = keys).
        num_buckets: Total bucket count (half per direction).
        max_distance: Distance mapped to the last log-spaced bucket.

    Returns:
        ``(length, length)`` int64 bucket index of ``key - query``.
    """
    pos = torch.arange(length, dtype=torch.long)
    relative = pos[None, :] - pos[:, None]
    half = num_buckets // 2
    buckets = (relative > 0).to(torch.long) * half
    distance = relative.abs()
    max_exact = half // 2
    # distance 0 is always "small"; clamping it avoids log(0) without changing any selected value
    scaled = torch.log(distance.clamp_min(1).float() / max_exact) / math.log(max_distance / max_exact)
    large = (max_exact + (scaled * (half - max_exact)).to(torch.long)).clamp_max(half - 1)
    return buckets + torch.where(distance < max_exact, distance, large)


class _PosConv(nn.Module):
    """Grouped Conv1d whose weight is ``g * v / ||v||`` (norm over dims 0 and 1, i.e. per kernel tap)."""

    def __init__(self, dim: int, kernel: int, groups: int) -> None:
        super().__init__()
        self.kernel, self.groups = kernel, groups
        self.weight_g = nn.Parameter(torch.ones(1, 1, kernel))
        self.weight_v = nn.Parameter(torch.empty(dim, dim // groups, kernel))
        self.bias = nn.Parameter(torch.zeros(dim))
        nn.init.normal_(self.weight_v, std=math.sqrt(4.0 / (kernel * dim)))

    def forward(self, x: Tensor) -> Tensor:
        """``(N, D, T)`` -> ``(N, D, T)``: conv, drop the extra step of the even kernel, GELU."""
        weight = torch._weight_norm(self.weight_v, self.weight_g, 2)
        out = F.conv1d(x, weight, self.bias, padding=self.kernel // 2, groups=self.groups)
        if self.kernel % 2 == 0:
            out = out[:, :, :-1]
        return F.gelu(out)


class _Attention(nn.Module):
    """BEATs multi-head self-attention with gated relative-position bias."""

    def __init__(self, dim: int, heads: int, gru_rel_pos: bool, bias_table: nn.Embedding | None) -> None:
        super().__init__()
        self.heads, self.head_dim = heads, dim // heads
        self.scaling = self.head_dim**-0.5
        self.q_proj, self.k_proj = nn.Linear(dim, dim), nn.Linear(dim, dim)
        self.v_proj, self.out_proj = nn.Linear(dim, dim), nn.Linear(dim, dim)
        if bias_table is not None:
            self.relative_attention_bias = bias_table
        self.gru_rel_pos = gru_rel_pos
        if gru_rel_pos:
            self.grep_linear = nn.Linear(self.head_dim, 8)
            self.grep_a = nn.Parameter(torch.ones(1, heads, 1, 1))

    def _split(self, x: Tensor) -> Tensor:
        n, t, _ = x.shape
        return x.view(n, t, self.heads, self.head_dim).transpose(1, 2)

    def forward(self, x: Tensor, position_bias: Tensor | None, dropout: float = 0.0) -> Tensor:
        """Self-attention.

        Args:
            x: ``(N, T, D)`` tokens.
            position_bias: ``(H, T, T)`` ungated relative-position bias, or None.
            dropout: Attention-probability dropout (training only).

        Returns:
            ``(N, T, D)``.
        """
        q = self.q_proj(x) * self.scaling * (1.0 / _ALPHA)
        q, k, v = self._split(q), self._split(self.k_proj(x)), self._split(self.v_proj(x))
        scores = q @ k.transpose(-1, -2)  # (N, H, T, T)
        scores = (scores - scores.amax(dim=-1, keepdim=True)) * _ALPHA
        if position_bias is not None:
            bias = position_bias.unsqueeze(0)
            if self.gru_rel_pos:
                n, h, t, d = q.shape
                gates = self.grep_linear(q * _ALPHA / self.scaling).view(n, h, t, 2, 4).sum(-1)
                gate_a, gate_b = torch.sigmoid(gates).chunk(2, dim=-1)
                bias = (gate_a * (gate_b * self.grep_a - 1.0) + 2.0) * bias
            scores = scores + bias
        probs = F.dropout(F.softmax(scores, dim=-1), p=dropout, training=self.training)
        out = (probs @ v).transpose(1, 2).reshape(x.shape)
        return self.out_proj(out)


class _Layer(nn.Module):
    """Transformer layer: post-LN with deep-norm residual scaling (or pre-LN when ``layer_norm_first``)."""

    def __init__(
        self, dim: int, ffn: int, heads: int, activation: str, layer_norm_first: bool,
        residual_scale: float, gru_rel_pos: bool, bias_table: nn.Embedding | None, dropout: float,
    ) -> None:  # fmt: skip
        super().__init__()
        self.self_attn = _Attention(dim, heads, gru_rel_pos, bias_table)
        self.self_attn_layer_norm = nn.LayerNorm(dim)
        self.fc1, self.fc2 = nn.Linear(dim, ffn), nn.Linear(ffn, dim)
        self.final_layer_norm = nn.LayerNorm(dim)
        self.activation = _activation(activation)
        self.layer_norm_first, self.residual_scale, self.dropout = layer_norm_first, residual_scale, dropout

    def _drop(self, x: Tensor) -> Tensor:
        return F.dropout(x, p=self.dropout, training=self.training)

    def forward(self, x: Tensor, position_bias: Tensor | None) -> Tensor:
        """``(N, T, D)`` -> ``(N, T, D)``."""
        if self.layer_norm_first:
            x = x + self._drop(self.self_attn(self.self_attn_layer_norm(x), position_bias, self.dropout))
            hidden = self.activation(self.fc1(self.final_layer_norm(x)))
            return x + self._drop(self.fc2(self._drop(hidden)))
        x = x * self.residual_scale + self._drop(self.self_attn(x, position_bias, self.dropout))
        x = self.self_attn_layer_norm(x)
        hidden = self._drop(self.activation(self.fc1(x)))
        return self.final_layer_norm(x * self.residual_scale + self._drop(self.fc2(hidden)))


class _Encoder(nn.Module):
    """Positional conv + LayerNorm + transformer stack (names match the reference ``encoder.*``)."""

    def __init__(
        self, dim: int, layers: int, ffn: int, heads: int, activation: str, layer_norm_first: bool,
        deep_norm: bool, conv_pos: int, conv_pos_groups: int, relative_position_embedding: bool,
        num_buckets: int, max_distance: int, gru_rel_pos: bool, dropout: float,
    ) -> None:  # fmt: skip
        super().__init__()
        self.pos_conv = nn.ModuleList([_PosConv(dim, conv_pos, conv_pos_groups)])
        self.num_buckets, self.max_distance = num_buckets, max_distance
        table = nn.Embedding(num_buckets, heads) if relative_position_embedding else None
        scale = math.pow(2 * layers, 0.25) if deep_norm else 1.0
        self.layers = nn.ModuleList(
            _Layer(dim, ffn, heads, activation, layer_norm_first, scale, gru_rel_pos,
                   table if i == 0 else None, dropout)
            for i in range(layers)
        )  # fmt: skip
        self.layer_norm = nn.LayerNorm(dim)
        self.layer_norm_first, self.dropout = layer_norm_first, dropout

    def _position_bias(self, length: int, device: torch.device) -> Tensor | None:
        table = getattr(self.layers[0].self_attn, "relative_attention_bias", None)
        if table is None:
            return None
        buckets = relative_position_buckets(length, self.num_buckets, self.max_distance).to(device)
        return table(buckets).permute(2, 0, 1)  # (H, T, T)

    def forward(self, x: Tensor) -> Tensor:
        """``(N, T, D)`` -> ``(N, T, D)``."""
        x = x + self.pos_conv[0](x.transpose(1, 2)).transpose(1, 2)
        if not self.layer_norm_first:
            x = self.layer_norm(x)
        x = F.dropout(x, p=self.dropout, training=self.training)
        bias = self._position_bias(x.shape[1], x.device)
        for layer in self.layers:
            x = layer(x, bias)
        return self.layer_norm(x) if self.layer_norm_first else x


class BEATs(nn.Module):
    """BEATs encoder on a pre-computed normalised fbank (Crab's ``AudioEncoder``, ``feature_only=True``).

    Args:
        input_patch_size: Square patch size of the conv patch embedding (16).
        embed_dim: Patch-embedding width (512 in iter3+).
        conv_bias: Whether the patch-embedding conv has a bias.
        encoder_layers: Number of transformer layers.
        encoder_embed_dim: Transformer width D (768).
        encoder_ffn_embed_dim: FFN width.
        encoder_attention_heads: Number of heads.
        activation_fn: ``'gelu'`` (exact erf) or ``'relu'``.
        layer_norm_first: Pre-LN layers (False for the released checkpoints).
        deep_norm: Scale residuals by ``(2 * encoder_layers) ** 0.25``.
        conv_pos: Positional-conv kernel size.
        conv_pos_groups: Positional-conv groups.
        relative_position_embedding: Use the bucketed relative-position bias.
        num_buckets: Relative-position buckets.
        max_distance: Relative-position max distance.
        gru_rel_pos: Gate the bias per query with ``grep_linear`` / ``grep_a``.
        finetuned_model: Create the (unused) AudioSet ``predictor`` head so checkpoints load strictly.
        predictor_class: Output classes of ``predictor``.
        dropout: Dropout everywhere (0 in eval; the reference uses 0).
    """

    def __init__(
        self,
        input_patch_size: int = 16,
        embed_dim: int = 512,
        conv_bias: bool = False,
        encoder_layers: int = 12,
        encoder_embed_dim: int = 768,
        encoder_ffn_embed_dim: int = 3072,
        encoder_attention_heads: int = 12,
        activation_fn: str = "gelu",
        layer_norm_first: bool = False,
        deep_norm: bool = True,
        conv_pos: int = 128,
        conv_pos_groups: int = 16,
        relative_position_embedding: bool = True,
        num_buckets: int = 320,
        max_distance: int = 800,
        gru_rel_pos: bool = True,
        finetuned_model: bool = True,
        predictor_class: int = 527,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if encoder_embed_dim % encoder_attention_heads:
            raise ConfigError("BEATs encoder_embed_dim must be divisible by encoder_attention_heads")
        _activation(activation_fn)
        self.patch = input_patch_size
        self.patch_embedding = nn.Conv2d(
            1, embed_dim, kernel_size=input_patch_size, stride=input_patch_size, bias=conv_bias
        )
        self.layer_norm = nn.LayerNorm(embed_dim)
        self.post_extract_proj = (
            nn.Linear(embed_dim, encoder_embed_dim) if embed_dim != encoder_embed_dim else None
        )
        self.dropout = dropout
        self.encoder = _Encoder(
            encoder_embed_dim, encoder_layers, encoder_ffn_embed_dim, encoder_attention_heads,
            activation_fn, layer_norm_first, deep_norm, conv_pos, conv_pos_groups,
            relative_position_embedding, num_buckets, max_distance, gru_rel_pos, dropout,
        )  # fmt: skip
        self.predictor = nn.Linear(encoder_embed_dim, predictor_class) if finetuned_model else None
        self.embed_dim = encoder_embed_dim

    @classmethod
    def from_config(cls, cfg: BeatsConfig) -> BEATs:
        """Build from a :class:`crab_core.config.BeatsConfig`."""
        names = (
            "input_patch_size", "embed_dim", "conv_bias", "encoder_layers", "encoder_embed_dim",
            "encoder_ffn_embed_dim", "encoder_attention_heads", "activation_fn", "layer_norm_first",
            "deep_norm", "conv_pos", "conv_pos_groups", "relative_position_embedding", "num_buckets",
            "max_distance", "gru_rel_pos", "finetuned_model", "predictor_class",
        )  # fmt: skip
        return cls(**{name: getattr(cfg, name) for name in names})

    def _tokens(self, fbank: Tensor) -> Tensor:
        """``(N, L, F)`` -> ``(N, (L // p) * (F // p), embed_dim)`` patch tokens, time-major."""
        patches = self.patch_embedding(fbank.unsqueeze(1))  # (N, C, L//p, F//p)
        tokens = patches.reshape(patches.shape[0], patches.shape[1], -1).transpose(1, 2)
        tokens = self.layer_norm(tokens)
        if self.post_extract_proj is not None:
            tokens = self.post_extract_proj(tokens)
        return F.dropout(tokens, p=self.dropout, training=self.training)

    def forward(self, fbank: Tensor) -> Tensor:
        """Encode normalised fbanks (all frames valid; the reference's padding mask is all False).

        Args:
            fbank: ``(N, L, 128)`` or ``(B, T, L, 128)`` normalised fbank, any L >= patch size.

        Returns:
            ``(N, n_tokens, D)`` or ``(B, T, n_tokens, D)`` with ``n_tokens = (L // 16) * 8``
            (token index = time * 8 + frequency), e.g. 48 tokens for 1 s (L=98), 96 for 2 s (L=198).
        """
        if fbank.dim() == 4:
            b, t = fbank.shape[:2]
            out = self.forward(fbank.reshape(b * t, *fbank.shape[2:]))
            return out.reshape(b, t, *out.shape[1:])
        if fbank.dim() != 3:
            raise ValueError(f"BEATs expects (N, L, F) or (B, T, L, F) fbank, got {tuple(fbank.shape)}")
        if fbank.shape[1] < self.patch or fbank.shape[2] < self.patch:
            raise ValueError(
                f"fbank {tuple(fbank.shape)} is smaller than one {self.patch}x{self.patch} patch"
            )
        return self.encoder(self._tokens(fbank))


def reference_to_ours(sd: dict[str, Tensor]) -> tuple[dict[str, Tensor], list[str]]:
    """Map a reference BEATs state dict (keys relative to the BEATs root) to :class:`BEATs` keys.

    Names are identical except that the shared relative-position table appears once (layer 0). The
    reference's ``encoder.layers.{i}.self_attn.relative_attention_bias.weight`` for i > 0 are aliases of the
    layer-0 tensor (one ``nn.Embedding`` registered under every layer), so they are dropped.

    Args:
        sd: Reference tensors, e.g. ``patch_embedding.weight``, ``encoder.pos_conv.0.weight_g``.

    Returns:
        ``(ours, dropped)``: our state dict and the dropped alias keys.

    Raises:
        CheckpointError: For a key that is neither a BEATs parameter nor a known alias.
    """
    ours: dict[str, Tensor] = {}
    dropped: list[str] = []
    for key, value in sd.items():
        alias = _ALIAS.fullmatch(key)
        if alias is not None and int(alias.group(1)) > 0:
            dropped.append(key)
        elif _KNOWN_KEYS.fullmatch(key):
            ours[key] = value
        else:
            raise CheckpointError(f"unexpected BEATs checkpoint key {key!r}")
    return ours, dropped


def ours_to_reference(sd: dict[str, Tensor]) -> dict[str, Tensor]:
    """Inverse of :func:`reference_to_ours`: same keys, plus the per-layer aliases of the shared table.

    Args:
        sd: :class:`BEATs` state dict.

    Returns:
        Reference-named tensors, loadable by the reference BEATs with ``strict=True``.
    """
    out = dict(sd)
    table = sd.get("encoder.layers.0.self_attn.relative_attention_bias.weight")
    if table is not None:
        layers = {int(m.group(1)) for k in sd if (m := re.match(r"encoder\.layers\.(\d+)\.", k))}
        for i in sorted(layers - {0}):
            out[f"encoder.layers.{i}.self_attn.relative_attention_bias.weight"] = table
    return out
