"""BLIP-2 Q-Former, query-only path, as used by Crab's visual and audio projectors.

The reference (``models/Qformer.py`` of BLIP-2, crab-reference.md section 1.4) builds a full
``BertLMHeadModel`` but only ever feeds it learned query embeddings. On that path:

* the embeddings are ``LayerNorm(query_tokens)`` (no word or position embeddings);
* every layer runs self-attention over the queries, cross-attention from the queries to the
  encoder states (K/V projected from ``encoder_width``) and the *query* FFN
  (``intermediate_query`` / ``output_query``); the text FFN is never evaluated;
* each sub-block is a BERT post-LN residual: ``LN(x + Dropout(Linear(f(x))))`` with LN eps 1e-12;
* the activation is the exact (erf) GELU.

This file implements exactly that path with compact modules and no text-side parameters.
``transformers``' ``Blip2QFormerModel`` is deliberately not reused: it always allocates the
unused text FFN and differs between transformers releases.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn


@dataclass
class QFormerOutput:
    """Result of :class:`QFormer`.

    Attributes:
        last_hidden_state: ``(N, Q, hidden_size)`` query outputs of the last layer.
        cross_attentions: ``None`` unless requested; else one ``(N, heads, Q, n)`` tensor of
            softmax cross-attention probabilities per layer (before attention dropout).
    """

    last_hidden_state: Tensor
    cross_attentions: tuple[Tensor, ...] | None = None


class QFormerAttention(nn.Module):
    """Multi-head attention followed by BERT's post-LN residual output block.

    ``out = LayerNorm(x + Dropout(out_proj(softmax(q k^T / sqrt(d)) v)))``.

    Args:
        hidden_size: Query width ``H``.
        num_heads: Number of attention heads (must divide ``H``).
        kv_width: Width of the key/value source (``H`` for self-attention, the encoder width for
            cross-attention).
        layer_norm_eps: Epsilon of the output LayerNorm.
        dropout: Dropout on the output projection (training only).
        attention_dropout: Dropout on the attention probabilities (training only).
    """

    def __init__(
        self,
        hidden_size: int,
        num_heads: int,
        kv_width: int,
        layer_norm_eps: float,
        dropout: float,
        attention_dropout: float,
    ) -> None:
        super().__init__()
        if hidden_size % num_heads != 0:
            raise ValueError(f"num_heads={num_heads} must divide hidden_size={hidden_size}")
        self.num_heads = num_heads
        self.head_dim = hidden_size // num_heads
        self.q_proj = nn.Linear(hidden_size, hidden_size)
        self.k_proj = nn.Linear(kv_width, hidden_size)
        self.v_proj = nn.Linear(kv_width, hidden_size)
        self.out_proj = nn.Linear(hidden_size, hidden_size)
        self.norm = nn.LayerNorm(hidden_size, eps=layer_norm_eps)
        self.dropout = nn.Dropout(dropout)
        self.attention_dropout = attention_dropout

    def _split(self, x: Tensor) -> Tensor:
        n, length, _ = x.shape
        return x.view(n, length, self.num_heads, self.head_dim).transpose(1, 2)

    def forward(
        self, x: Tensor, context: Tensor | None = None, need_weights: bool = False
    ) -> tuple[Tensor, Tensor | None]:
        """Attend from ``x`` to ``context`` (``x`` itself when ``None``).

        Args:
            x: ``(N, Q, H)`` queries.
            context: ``(N, n, kv_width)`` keys/values source, or ``None`` for self-attention.
            need_weights: Also return the attention probabilities.

        Returns:
            ``(out, probs)``: ``out`` is ``(N, Q, H)``; ``probs`` is ``(N, heads, Q, n)`` or ``None``.
        """
        kv = x if context is None else context
        q = self._split(self.q_proj(x))
        k = self._split(self.k_proj(kv))
        v = self._split(self.v_proj(kv))
        p_drop = self.attention_dropout if self.training else 0.0
        probs = None
        if need_weights:
            # Explicit path (as the reference's eager BERT attention) so the probabilities exist.
            scores = torch.matmul(q, k.transpose(-1, -2)) / math.sqrt(self.head_dim)
            probs = scores.softmax(dim=-1)
            ctx = torch.matmul(F.dropout(probs, p_drop, self.training), v)
        else:
            ctx = F.scaled_dot_product_attention(q, k, v, dropout_p=p_drop)
        n, _, length, _ = ctx.shape
        ctx = ctx.transpose(1, 2).reshape(n, length, self.num_heads * self.head_dim)
        return self.norm(x + self.dropout(self.out_proj(ctx))), probs


class QFormerFeedForward(nn.Module):
    """Query FFN with post-LN residual: ``LN(x + Dropout(fc2(GELU(fc1(x)))))`` (erf GELU).

    Args:
        hidden_size: Width ``H``.
        intermediate_size: Hidden width of the FFN.
        layer_norm_eps: Epsilon of the LayerNorm.
        dropout: Dropout on ``fc2``'s output (training only).
    """

    def __init__(
        self, hidden_size: int, intermediate_size: int, layer_norm_eps: float, dropout: float
    ) -> None:
        super().__init__()
        self.fc1 = nn.Linear(hidden_size, intermediate_size)
        self.fc2 = nn.Linear(intermediate_size, hidden_size)
        self.norm = nn.LayerNorm(hidden_size, eps=layer_norm_eps)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        """Map ``(N, Q, H)`` to ``(N, Q, H)``."""
        return self.norm(x + self.dropout(self.fc2(F.gelu(self.fc1(x)))))


class QFormerLayer(nn.Module):
    """Self-attention -> cross-attention to the encoder states -> query FFN.

    Args:
        hidden_size: Query width ``H``.
        num_heads: Attention heads of both attentions.
        intermediate_size: FFN hidden width.
        encoder_width: Width of the encoder states (cross-attention K/V input).
        layer_norm_eps: LayerNorm epsilon.
        dropout: Hidden dropout.
        attention_dropout: Attention-probability dropout.
    """

    def __init__(
        self,
        hidden_size: int,
        num_heads: int,
        intermediate_size: int,
        encoder_width: int,
        layer_norm_eps: float,
        dropout: float,
        attention_dropout: float,
    ) -> None:
        super().__init__()
        self.self_attn = QFormerAttention(
            hidden_size, num_heads, hidden_size, layer_norm_eps, dropout, attention_dropout
        )
        self.cross_attn = QFormerAttention(
            hidden_size, num_heads, encoder_width, layer_norm_eps, dropout, attention_dropout
        )
        self.ffn = QFormerFeedForward(hidden_size, intermediate_size, layer_norm_eps, dropout)

    def forward(
        self, x: Tensor, encoder_states: Tensor, need_weights: bool = False
    ) -> tuple[Tensor, Tensor | None]:
        """Run one layer.

        Args:
            x: ``(N, Q, H)`` query states.
            encoder_states: ``(N, n, encoder_width)``.
            need_weights: Also return the cross-attention probabilities ``(N, heads, Q, n)``.

        Returns:
            ``(x, cross_probs)`` with ``x`` of shape ``(N, Q, H)``.
        """
        x, _ = self.self_attn(x)
        x, probs = self.cross_attn(x, encoder_states, need_weights=need_weights)
        return self.ffn(x), probs


class QFormer(nn.Module):
    """Query-only BLIP-2 Q-Former with cross-attention in every layer.

    Args:
        hidden_size: Query width ``H`` (768 in Crab).
        num_layers: Number of layers (2 in Crab).
        num_heads: Attention heads (12 in Crab).
        intermediate_size: Query-FFN hidden width (3072 in Crab).
        encoder_width: Width ``E`` of the encoder states (1024 CLIP, 768 BEATs).
        num_query_tokens: Number ``Q`` of learned queries (32 in Crab).
        layer_norm_eps: LayerNorm epsilon (BERT: 1e-12).
        dropout: Hidden dropout (training only).
        attention_dropout: Attention-probability dropout; defaults to ``dropout``.

    Example:
        >>> import torch
        >>> qf = QFormer(32, 2, 4, 64, encoder_width=48, num_query_tokens=4).eval()
        >>> qf(torch.randn(3, 16, 48)).last_hidden_state.shape
        torch.Size([3, 4, 32])
    """

    def __init__(
        self,
        hidden_size: int,
        num_layers: int,
        num_heads: int,
        intermediate_size: int,
        encoder_width: int,
        num_query_tokens: int,
        layer_norm_eps: float = 1e-12,
        dropout: float = 0.1,
        attention_dropout: float | None = None,
    ) -> None:
        super().__init__()
        attention_dropout = dropout if attention_dropout is None else attention_dropout
        self.query_tokens = nn.Parameter(torch.zeros(1, num_query_tokens, hidden_size))
        self.norm = nn.LayerNorm(hidden_size, eps=layer_norm_eps)
        self.dropout = nn.Dropout(dropout)
        self.layers = nn.ModuleList(
            QFormerLayer(
                hidden_size,
                num_heads,
                intermediate_size,
                encoder_width,
                layer_norm_eps,
                dropout,
                attention_dropout,
            )
            for _ in range(num_layers)
        )
        self.reset_parameters()

    @property
    def num_query_tokens(self) -> int:
        return self.query_tokens.shape[1]

    def reset_parameters(self, std: float = 0.02) -> None:
        """BERT initialisation: N(0, std) for Linear weights and the queries, zero biases, LN 1/0."""
        nn.init.normal_(self.query_tokens, std=std)
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.normal_(module.weight, std=std)
                nn.init.zeros_(module.bias)
            elif isinstance(module, nn.LayerNorm):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)

    def forward(self, encoder_states: Tensor, return_cross_attentions: bool = False) -> QFormerOutput:
        """Compress encoder states into ``Q`` query vectors.

        Args:
            encoder_states: ``(N, n, encoder_width)`` (already normalised by the caller).
            return_cross_attentions: Collect the per-layer cross-attention probabilities.

        Returns:
            :class:`QFormerOutput` with ``last_hidden_state`` of shape ``(N, Q, H)``.
        """
        n = encoder_states.shape[0]
        x = self.dropout(self.norm(self.query_tokens.expand(n, -1, -1)))
        probs: list[Tensor] = []
        for layer in self.layers:
            x, p = layer(x, encoder_states, need_weights=return_cross_attentions)
            if p is not None:
                probs.append(p)
        return QFormerOutput(x, tuple(probs) if return_cross_attentions else None)
