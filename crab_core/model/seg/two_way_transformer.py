"""SAM's two-way transformer (tokens <-> image), one instance per decoder level.

Design from segment-anything ``modeling/transformer.py``: each block runs token self-attention,
token->image cross-attention, a token MLP and image->token cross-attention, each followed by a
residual and a LayerNorm (eps 1e-5); the first block skips the positional encoding in its
self-attention (and its residual). A final token->image attention and LayerNorm close the stack.
Cross-attentions project to ``embedding_dim // attention_downsample_rate`` channels.
Parameter names equal the reference's.
"""

from __future__ import annotations

import math

from torch import Tensor, nn


class Attention(nn.Module):
    """Multi-head attention with separate projections and an optional internal down-projection.

    Args:
        embedding_dim: Input / output width ``D``.
        num_heads: Number of heads; must divide ``D // downsample_rate``.
        downsample_rate: Internal width is ``D // downsample_rate``.
    """

    def __init__(self, embedding_dim: int, num_heads: int, downsample_rate: int = 1) -> None:
        super().__init__()
        self.internal_dim = embedding_dim // downsample_rate
        self.num_heads = num_heads
        if self.internal_dim % num_heads:
            raise ValueError(f"num_heads={num_heads} must divide internal dim {self.internal_dim}")
        self.q_proj = nn.Linear(embedding_dim, self.internal_dim)
        self.k_proj = nn.Linear(embedding_dim, self.internal_dim)
        self.v_proj = nn.Linear(embedding_dim, self.internal_dim)
        self.out_proj = nn.Linear(self.internal_dim, embedding_dim)

    def _split(self, x: Tensor) -> Tensor:
        b, n, c = x.shape
        return x.reshape(b, n, self.num_heads, c // self.num_heads).transpose(1, 2)

    def forward(self, q: Tensor, k: Tensor, v: Tensor) -> Tensor:
        """Attend ``q`` ``(B, Nq, D)`` to ``k``/``v`` ``(B, Nk, D)``; returns ``(B, Nq, D)``."""
        q = self._split(self.q_proj(q))
        k = self._split(self.k_proj(k))
        v = self._split(self.v_proj(v))
        attn = (q @ k.permute(0, 1, 3, 2)) / math.sqrt(q.shape[-1])
        out = attn.softmax(dim=-1) @ v
        b, h, n, c = out.shape
        return self.out_proj(out.transpose(1, 2).reshape(b, n, h * c))


class MLPBlock(nn.Module):
    """``lin2(ReLU(lin1(x)))`` with hidden width ``mlp_dim``."""

    def __init__(self, embedding_dim: int, mlp_dim: int) -> None:
        super().__init__()
        self.lin1 = nn.Linear(embedding_dim, mlp_dim)
        self.lin2 = nn.Linear(mlp_dim, embedding_dim)
        self.act = nn.ReLU()

    def forward(self, x: Tensor) -> Tensor:
        """``(..., D)`` -> ``(..., D)``."""
        return self.lin2(self.act(self.lin1(x)))


class TwoWayAttentionBlock(nn.Module):
    """One two-way block (see module docstring).

    Args:
        embedding_dim: Width ``D``.
        num_heads: Attention heads.
        mlp_dim: Hidden width of the token MLP.
        attention_downsample_rate: Down-projection of the two cross-attentions.
        skip_first_layer_pe: First block: self-attention without PE and without residual.
    """

    def __init__(
        self,
        embedding_dim: int,
        num_heads: int,
        mlp_dim: int,
        attention_downsample_rate: int = 2,
        skip_first_layer_pe: bool = False,
    ) -> None:
        super().__init__()
        self.self_attn = Attention(embedding_dim, num_heads)
        self.norm1 = nn.LayerNorm(embedding_dim)
        self.cross_attn_token_to_image = Attention(embedding_dim, num_heads, attention_downsample_rate)
        self.norm2 = nn.LayerNorm(embedding_dim)
        self.mlp = MLPBlock(embedding_dim, mlp_dim)
        self.norm3 = nn.LayerNorm(embedding_dim)
        self.norm4 = nn.LayerNorm(embedding_dim)
        self.cross_attn_image_to_token = Attention(embedding_dim, num_heads, attention_downsample_rate)
        self.skip_first_layer_pe = skip_first_layer_pe

    def forward(
        self, queries: Tensor, keys: Tensor, query_pe: Tensor, key_pe: Tensor
    ) -> tuple[Tensor, Tensor]:
        """Update ``queries`` ``(B, Nq, D)`` and ``keys`` ``(B, Nk, D)``; PEs have the same shapes."""
        if self.skip_first_layer_pe:
            queries = self.self_attn(queries, queries, queries)
        else:
            q = queries + query_pe
            queries = queries + self.self_attn(q, q, queries)
        queries = self.norm1(queries)

        q = queries + query_pe
        k = keys + key_pe
        queries = self.norm2(queries + self.cross_attn_token_to_image(q, k, keys))

        queries = self.norm3(queries + self.mlp(queries))

        q = queries + query_pe
        k = keys + key_pe
        keys = self.norm4(keys + self.cross_attn_image_to_token(k, q, queries))
        return queries, keys


class TwoWayTransformer(nn.Module):
    """Stack of :class:`TwoWayAttentionBlock` plus a final token->image attention.

    Args:
        depth: Number of blocks.
        embedding_dim: Width ``D``.
        num_heads: Attention heads.
        mlp_dim: Token-MLP hidden width.
        attention_downsample_rate: Down-projection of the cross-attentions.

    Example:
        >>> t = TwoWayTransformer(2, 32, 4, 64)
        >>> hs, src = t(torch.randn(1, 32, 4, 4), torch.randn(1, 32, 4, 4), torch.randn(1, 5, 32))
        >>> hs.shape, src.shape
        (torch.Size([1, 5, 32]), torch.Size([1, 16, 32]))
    """

    def __init__(
        self, depth: int, embedding_dim: int, num_heads: int, mlp_dim: int, attention_downsample_rate: int = 2
    ) -> None:
        super().__init__()
        self.layers = nn.ModuleList(
            TwoWayAttentionBlock(
                embedding_dim, num_heads, mlp_dim, attention_downsample_rate, skip_first_layer_pe=(i == 0)
            )
            for i in range(depth)
        )
        self.final_attn_token_to_image = Attention(embedding_dim, num_heads, attention_downsample_rate)
        self.norm_final_attn = nn.LayerNorm(embedding_dim)

    def forward(
        self, image_embedding: Tensor, image_pe: Tensor, point_embedding: Tensor
    ) -> tuple[Tensor, Tensor]:
        """Run the transformer.

        Args:
            image_embedding: ``(B, D, h, w)`` image tokens.
            image_pe: ``(B, D, h, w)`` positional encoding of the image tokens.
            point_embedding: ``(B, N, D)`` query tokens (also used as their own PE).

        Returns:
            ``(queries (B, N, D), keys (B, h*w, D))``.
        """
        keys = image_embedding.flatten(2).permute(0, 2, 1)
        key_pe = image_pe.flatten(2).permute(0, 2, 1).to(keys)
        queries = point_embedding
        for layer in self.layers:
            queries, keys = layer(queries, keys, point_embedding, key_pe)
        q = queries + point_embedding
        k = keys + key_pe
        queries = self.norm_final_attn(queries + self.final_attn_token_to_image(q, k, keys))
        return queries, keys
