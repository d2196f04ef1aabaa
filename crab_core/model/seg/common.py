"""Small building blocks of the SAM-style mask decoder (crab-reference.md section 1.5).

* :class:`LayerNorm2d` - channel LayerNorm for ``(B, C, H, W)`` maps (eps 1e-6, as SAM / ConvNeXt).
* :class:`MLP` - Linear MLP with ReLU between layers (MaskFormer / SAM ``MLP``).
* :class:`ConvMLP` - the same MLP made of 1x1 convolutions, acting on ``(B, C, H, W)``.
* :class:`PositionEmbeddingRandom` - random-Fourier-feature dense positional encoding (SAM).

The arithmetic follows the reference operation by operation so that float32 results match the
reference fixtures to ~1e-7; see the ``forward`` docstrings for the exact order.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class LayerNorm2d(nn.Module):
    """LayerNorm over the channel axis of an image-shaped tensor.

    Args:
        num_channels: ``C``.
        eps: Added to the (biased) variance; the reference uses 1e-6.

    Example:
        >>> LayerNorm2d(8)(torch.randn(2, 8, 4, 4)).shape
        torch.Size([2, 8, 4, 4])
    """

    def __init__(self, num_channels: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(num_channels))
        self.bias = nn.Parameter(torch.zeros(num_channels))
        self.eps = eps

    def forward(self, x: Tensor) -> Tensor:
        """Normalise ``x`` ``(B, C, H, W)`` over ``C``; returns the same shape."""
        mean = x.mean(1, keepdim=True)
        var = (x - mean).pow(2).mean(1, keepdim=True)
        x = (x - mean) / torch.sqrt(var + self.eps)
        return self.weight[:, None, None] * x + self.bias[:, None, None]


def _widths(input_dim: int, hidden_dim: int, output_dim: int, num_layers: int) -> list[tuple[int, int]]:
    hidden = [hidden_dim] * (num_layers - 1)
    return list(zip([input_dim] + hidden, hidden + [output_dim]))


class MLP(nn.Module):
    """``num_layers`` Linear layers with ReLU between them (none after the last).

    Args:
        input_dim: Input width.
        hidden_dim: Width of every hidden layer.
        output_dim: Output width.
        num_layers: Number of Linear layers (parameter names ``layers.{i}``).
    """

    def __init__(self, input_dim: int, hidden_dim: int, output_dim: int, num_layers: int) -> None:
        super().__init__()
        self.layers = nn.ModuleList(
            nn.Linear(i, o) for i, o in _widths(input_dim, hidden_dim, output_dim, num_layers)
        )

    def forward(self, x: Tensor) -> Tensor:
        """``(..., input_dim)`` -> ``(..., output_dim)``."""
        last = len(self.layers) - 1
        for i, layer in enumerate(self.layers):
            x = layer(x) if i == last else F.relu(layer(x))
        return x


class ConvMLP(nn.Module):
    """:class:`MLP` built from 1x1 convolutions (acts on the channel axis of ``(B, C, H, W)``).

    Args:
        input_dim: Input channels.
        hidden_dim: Channels of every hidden layer.
        output_dim: Output channels.
        num_layers: Number of 1x1 convolutions (parameter names ``layers.{i}``).
    """

    def __init__(self, input_dim: int, hidden_dim: int, output_dim: int, num_layers: int) -> None:
        super().__init__()
        self.layers = nn.ModuleList(
            nn.Conv2d(i, o, kernel_size=1) for i, o in _widths(input_dim, hidden_dim, output_dim, num_layers)
        )

    def forward(self, x: Tensor) -> Tensor:
        """``(B, input_dim, H, W)`` -> ``(B, output_dim, H, W)``."""
        last = len(self.layers) - 1
        for i, layer in enumerate(self.layers):
            x = layer(x) if i == last else F.relu(layer(x))
        return x


class PositionEmbeddingRandom(nn.Module):
    """Dense positional encoding with random spatial frequencies (SAM).

    The ``(2, num_pos_feats)`` Gaussian matrix is a *persistent buffer*: it is saved in our
    checkpoints. The reference never saved it (crab-reference.md section 8 item 8), so official
    checkpoints lack it and a loader must decide what to do.

    Args:
        num_pos_feats: Half of the output channel count.
    """

    def __init__(self, num_pos_feats: int) -> None:
        super().__init__()
        self.register_buffer("positional_encoding_gaussian_matrix", torch.randn(2, num_pos_feats))

    def forward(self, size: tuple[int, int]) -> Tensor:
        """Encode the pixel centres of an ``(h, w)`` grid.

        Returns:
            ``(2 * num_pos_feats, h, w)``: ``[sin, cos]`` of ``2 pi (2 xy - 1) @ G``.
        """
        h, w = size
        gauss = self.positional_encoding_gaussian_matrix
        grid = torch.ones((h, w), device=gauss.device, dtype=gauss.dtype)
        y = (grid.cumsum(dim=0) - 0.5) / h
        x = (grid.cumsum(dim=1) - 0.5) / w
        coords = 2 * torch.stack([x, y], dim=-1) - 1
        coords = (2 * math.pi) * (coords @ gauss)
        return torch.cat([torch.sin(coords), torch.cos(coords)], dim=-1).permute(2, 0, 1)
