"""Prompt-token mask decoder: the corrected, SAM-style form our own training uses
(``SegConfig.decoder="prompt"``).

The reference's decoder (:mod:`.mask_decoder`) feeds the fused seg-token prompt as the *only key*
of its query generator's cross-attention; with one key the softmax is 1, every query receives the
same shift before a LayerNorm, and the masks cannot depend on which object the prompt names
(issue #13: prompt-swap IoU 1.00 on crab-tiny v4). Here the prompt is what SAM makes of it:

1. the ``S = scales * tokens_per_scale`` projected seg-token states, each plus a learned
   per-position embedding, are *tokens* of a :class:`TwoWayTransformer`, next to learned output
   tokens: one ``binary`` token, or ``num_avss_classes`` class tokens for ``'avss'``;
2. the image tokens are the CLIP grids of both scales through the shared neck, summed with a
   learned per-scale weight, plus the dense ``no_mask_embed``;
3. the pixel embedding is built at a quarter of the frame's resolution: the transformer's image
   output (``g x g``) resized bilinearly to ``image_size / 4`` and added to a convolutional stem on
   the frame itself (two stride-2 3x3 convolutions), then a 2x transposed convolution to
   ``image_size / 2`` with ``pixel_dim`` channels (the reference's pixel embedding has ``D/8``);
4. each output token through a 3-layer hypernetwork MLP gives a ``pixel_dim`` vector; its dot
   product with the pixel embedding is that token's mask logit map.

The frame stem exists because the CLIP grid is coarse: at 112 px / 14-px patches an 8 x 8 grid
caps S4 IoU at 0.18 for a ground-truth mask pooled to the grid and upsampled back (0.86 at 32 x 32;
issue #13). Official checkpoints never use this module.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .common import MLP, LayerNorm2d
from .mask_decoder import CLASS_TASKS
from .two_way_transformer import TwoWayTransformer


class FrameStem(nn.Module):
    """``(B, 3, S, S)`` normalised frame -> ``(B, C, S/4, S/4)`` features (two stride-2 convolutions)."""

    def __init__(self, out_dim: int) -> None:
        super().__init__()
        mid = max(out_dim // 2, 8)
        self.net = nn.Sequential(
            nn.Conv2d(3, mid, kernel_size=3, stride=2, padding=1),
            LayerNorm2d(mid),
            nn.GELU(),
            nn.Conv2d(mid, out_dim, kernel_size=3, stride=2, padding=1),
            LayerNorm2d(out_dim),
            nn.GELU(),
        )

    def forward(self, frame: Tensor) -> Tensor:
        return self.net(frame)


class PromptMaskDecoder(nn.Module):
    """SAM-style decoder with the seg tokens as transformer tokens and a frame-resolution pixel path.

    Args:
        transformer_dim: Width ``D``.
        num_prompt_tokens: Seg tokens per sample (``scales * tokens_per_scale``).
        scales: CLIP feature levels fused into the image tokens.
        depth / num_heads / mlp_dim / attention_downsample_rate: two-way transformer geometry.
        num_avss_classes: Class tokens (and output channels) of the ``'avss'`` head.
        pixel_dim: Channels of the pixel embedding and of the hypernetwork's output.
        image_size: Frame size ``S`` (a multiple of 4); masks come out at ``S / 2``.

    Example:
        >>> dec = PromptMaskDecoder(32, 6, 2, num_heads=4, mlp_dim=64, num_avss_classes=5, pixel_dim=16,
        ...                         image_size=32)
        >>> grids = torch.randn(2, 2, 32, 4, 4)
        >>> dec(grids, torch.randn(2, 6, 32), torch.randn(2, 3, 32, 32), ["s4", "avss"])[1].shape
        torch.Size([5, 16, 16])
    """

    def __init__(
        self,
        transformer_dim: int,
        num_prompt_tokens: int,
        scales: int,
        depth: int = 2,
        num_heads: int = 8,
        mlp_dim: int = 2048,
        attention_downsample_rate: int = 2,
        num_avss_classes: int = 71,
        pixel_dim: int = 32,
        image_size: int = 224,
    ) -> None:
        super().__init__()
        if image_size % 4:
            raise ValueError(f"image_size must be a multiple of 4, got {image_size}")
        d = transformer_dim
        self.image_size = image_size
        self.prompt_embed = nn.Embedding(num_prompt_tokens, d)
        self.binary_token = nn.Embedding(1, d)
        self.class_tokens = nn.Embedding(num_avss_classes, d)
        self.scale_weight = nn.Parameter(torch.full((scales,), 1.0 / scales))
        self.no_mask_embed = nn.Embedding(1, d)
        self.transformer = TwoWayTransformer(depth, d, num_heads, mlp_dim, attention_downsample_rate)
        self.stem = FrameStem(pixel_dim)
        self.image_to_pixel = nn.Conv2d(d, pixel_dim, kernel_size=1)
        self.pixel_fuse = nn.Sequential(
            nn.Conv2d(pixel_dim, pixel_dim, kernel_size=3, padding=1), LayerNorm2d(pixel_dim), nn.GELU()
        )
        self.output_upscaling = nn.Sequential(
            nn.ConvTranspose2d(pixel_dim, pixel_dim, kernel_size=2, stride=2),
            LayerNorm2d(pixel_dim),
            nn.GELU(),
        )
        self.hyper_mlp = MLP(d, d, pixel_dim, 3)

    @property
    def num_avss_classes(self) -> int:
        return self.class_tokens.num_embeddings

    def _pixels(self, keys: Tensor, grid: int, frames: Tensor) -> Tensor:
        """Transformer image output ``(B, g*g, D)`` + frames ``(B, 3, S, S)`` ->
        ``(B, pixel_dim, S/2, S/2)``."""
        b, _, d = keys.shape
        img = keys.transpose(1, 2).reshape(b, d, grid, grid)
        quarter = self.image_size // 4
        img = F.interpolate(
            self.image_to_pixel(img), size=(quarter, quarter), mode="bilinear", align_corners=False
        )
        stem = self.stem(frames.to(img.dtype))
        if stem.shape[-1] != quarter:
            stem = F.interpolate(stem, size=(quarter, quarter), mode="bilinear", align_corners=False)
        return self.output_upscaling(self.pixel_fuse(img + stem))

    def _decode(
        self, image: Tensor, pe: Tensor, prompts: Tensor, frames: Tensor, out_tokens: Tensor
    ) -> Tensor:
        """One group of samples sharing their output tokens ``(N, D)``; returns ``(B, N, S/2, S/2)``."""
        b = image.shape[0]
        n_out = out_tokens.shape[0]
        tokens = torch.cat([out_tokens.unsqueeze(0).expand(b, -1, -1), prompts], dim=1)
        hs, keys = self.transformer(image, pe.expand(b, -1, -1, -1), tokens)
        hyper = self.hyper_mlp(hs[:, :n_out])  # (B, N, pixel_dim)
        pixels = self._pixels(keys, image.shape[-1], frames)  # (B, pixel_dim, S/2, S/2)
        _, c, h, w = pixels.shape
        return (hyper @ pixels.view(b, c, h * w)).view(b, n_out, h, w)

    def forward(
        self, grids: Tensor, prompts: Tensor, frames: Tensor, task_names: list[str], pe: Tensor | None = None
    ) -> list[Tensor]:
        """Decode a batch.

        Args:
            grids: ``(B, scales, D, g, g)`` neck features of the CLIP levels.
            prompts: ``(B, S, D)`` projected seg-token states.
            frames: ``(B, 3, image_size, image_size)`` CLIP-normalised frames.
            task_names: ``B`` names; ``'avss'`` selects the class tokens, anything else the binary token.
            pe: ``(1, D, g, g)`` dense positional encoding of the grid (zeros when None).

        Returns:
            Per sample ``(C, image_size / 2, image_size / 2)`` logits, ``C = num_avss_classes`` for
            ``'avss'``, else 1.
        """
        b, _, d, g, _ = grids.shape
        w = self.scale_weight.to(grids.dtype).view(1, -1, 1, 1, 1)
        image = (grids * w).sum(1) + self.no_mask_embed.weight.view(1, d, 1, 1)
        if pe is None:
            pe = torch.zeros(1, d, g, g, dtype=grids.dtype, device=grids.device)
        prompts = prompts + self.prompt_embed.weight.unsqueeze(0).to(prompts.dtype)
        out: list[Tensor | None] = [None] * b
        avss = [i for i, t in enumerate(task_names) if t in CLASS_TASKS]
        binary = [i for i, t in enumerate(task_names) if t not in CLASS_TASKS]
        for rows, tok in ((binary, self.binary_token.weight), (avss, self.class_tokens.weight)):
            if not rows:
                continue
            idx = torch.tensor(rows, device=grids.device)
            logits = self._decode(image[idx], pe, prompts[idx], frames[idx], tok.to(prompts.dtype))
            for k, i in enumerate(rows):
                out[i] = logits[k]
        return out  # type: ignore[return-value]
