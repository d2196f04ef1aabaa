"""Query generator: conditions the learned mask queries on one seg-prompt embedding.

Each layer is post-LN: self-attention over the queries, cross-attention to the sparse prompt
(``(1, 1, D)`` per level), then a GELU FFN; residual + LayerNorm (eps 1e-5) after each. Attention
is ``nn.MultiheadAttention`` (packed ``in_proj_weight`` = q, k, v), exactly as the reference, so
checkpoints map one to one. Matrices are Xavier-uniform initialised.

Reference bug (crab-reference.md section 8 item 10): the reference feeds the *original* queries
to every layer and returns the last layer's output, so only the last layer has any effect and
the others get no gradient. ``chain=False`` reproduces this (and skips the dead layers, whose
output would be discarded anyway); ``chain=True`` feeds each layer the previous layer's output.
"""

from __future__ import annotations

from torch import Tensor, nn


class QueryGeneratorLayer(nn.Module):
    """One post-LN attention layer.

    Args:
        embed_dim: Width ``D``.
        num_heads: Attention heads.
        hidden_dim: FFN hidden width.
    """

    def __init__(self, embed_dim: int, num_heads: int, hidden_dim: int) -> None:
        super().__init__()
        self.self_attn = nn.MultiheadAttention(embed_dim, num_heads, batch_first=True)
        self.cross_attn = nn.MultiheadAttention(embed_dim, num_heads, batch_first=True)
        self.ffn = nn.Sequential(
            nn.Linear(embed_dim, hidden_dim), nn.GELU(), nn.Linear(hidden_dim, embed_dim)
        )
        self.norm1 = nn.LayerNorm(embed_dim)
        self.norm2 = nn.LayerNorm(embed_dim)
        self.norm3 = nn.LayerNorm(embed_dim)

    def forward(self, query: Tensor, prompt: Tensor) -> Tensor:
        """``query`` ``(B, Q, D)``, ``prompt`` ``(B, S, D)`` -> ``(B, Q, D)``."""
        query = self.norm1(query + self.self_attn(query, query, query)[0])
        query = self.norm2(query + self.cross_attn(query, prompt, prompt)[0])
        return self.norm3(query + self.ffn(query))


class QueryGenerator(nn.Module):
    """``num_layers`` :class:`QueryGeneratorLayer` (parameter names ``layers.{i}``).

    Args:
        num_layers: Number of layers (>= 1).
        embed_dim: Width ``D``.
        num_heads: Attention heads.
        hidden_dim: FFN hidden width.
        chain: Feed each layer the previous output (fixed) instead of the original queries
            (reference behaviour).

    Example:
        >>> qg = QueryGenerator(2, 32, 4, 64)
        >>> qg(torch.randn(1, 10, 32), torch.randn(1, 1, 32)).shape
        torch.Size([1, 10, 32])
    """

    def __init__(
        self, num_layers: int, embed_dim: int, num_heads: int, hidden_dim: int, chain: bool = False
    ) -> None:
        super().__init__()
        if num_layers < 1:
            raise ValueError("QueryGenerator needs at least one layer")
        self.chain = chain
        self.layers = nn.ModuleList(
            QueryGeneratorLayer(embed_dim, num_heads, hidden_dim) for _ in range(num_layers)
        )
        for p in self.parameters():
            if p.dim() > 1:
                nn.init.xavier_uniform_(p)

    def forward(self, queries: Tensor, prompt: Tensor) -> Tensor:
        """Condition ``queries`` ``(B, Q, D)`` on ``prompt`` ``(B, S, D)``; returns ``(B, Q, D)``."""
        if not self.chain:
            # Reference: every layer gets the original queries; only the last output survives.
            return self.layers[-1](queries, prompt)
        for layer in self.layers:
            queries = layer(queries, prompt)
        return queries
