"""Frozen CLIP vision tower returning multi-layer patch features (CLS dropped)."""

from __future__ import annotations

import torch
from torch import nn
from transformers import CLIPVisionConfig, CLIPVisionModel


class VisualEncoder(nn.Module):
    """CLIP ViT patch features from several hidden layers.

    ``select_layers`` index ``hidden_states`` of ``CLIPVisionModel`` (0 = embeddings after
    ``pre_layrnorm``); the CLS token is dropped and ``post_layernorm`` is never applied, as in
    the reference. By convention the last selected layer feeds the LLM and the first two feed
    the segmentation decoder.

    transformers 5 flattens ``CLIPVisionModel`` (no ``vision_model.`` level); the reference keys
    ``vision_tower.vision_model.*`` are mapped by :func:`reference_to_ours`.

    Example:
        >>> enc = VisualEncoder(hidden_size=48, intermediate_size=96, num_hidden_layers=4,
        ...                     num_attention_heads=4, image_size=56, patch_size=14,
        ...                     select_layers=(1, 2, 3))
        >>> feats = enc(torch.randn(2, 3, 3, 56, 56))  # 3 x (2, 3*16, 48)
    """

    def __init__(
        self,
        hidden_size: int,
        intermediate_size: int,
        num_hidden_layers: int,
        num_attention_heads: int,
        image_size: int,
        patch_size: int,
        select_layers: tuple[int, ...] = (14, 22, 23),
        hidden_act: str = "quick_gelu",
        layer_norm_eps: float = 1e-5,
        projection_dim: int = 768,
        attn_implementation: str = "sdpa",
    ) -> None:
        super().__init__()
        cfg = CLIPVisionConfig(
            hidden_size=hidden_size,
            intermediate_size=intermediate_size,
            num_hidden_layers=num_hidden_layers,
            num_attention_heads=num_attention_heads,
            image_size=image_size,
            patch_size=patch_size,
            hidden_act=hidden_act,
            layer_norm_eps=layer_norm_eps,
            projection_dim=projection_dim,
        )
        cfg._attn_implementation = attn_implementation
        self.vision_tower = CLIPVisionModel(cfg)
        self.select_layers = tuple(select_layers)
        self.hidden_size = hidden_size
        self.patches_per_frame = (image_size // patch_size) ** 2
        # Only the deepest selected layer is needed: drop the blocks above it.
        self._max_layer = max(self.select_layers)

    @classmethod
    def from_config(cls, cfg, attn_implementation: str = "sdpa") -> VisualEncoder:
        return cls(
            cfg.hidden_size,
            cfg.intermediate_size,
            cfg.num_hidden_layers,
            cfg.num_attention_heads,
            cfg.image_size,
            cfg.patch_size,
            cfg.select_layers,
            cfg.hidden_act,
            cfg.layer_norm_eps,
            cfg.projection_dim,
            attn_implementation,
        )

    def forward(self, pixels: torch.Tensor) -> list[torch.Tensor]:
        """Encode frames.

        Args:
            pixels: ``(B, T, 3, S, S)`` normalised frames, or ``(B, 3, S, S)`` (T = 1).

        Returns:
            One tensor per selected layer, each ``(B, T * P, C)`` with P patches per frame.
        """
        if pixels.dim() == 4:
            pixels = pixels.unsqueeze(1)
        b, t = pixels.shape[:2]
        flat = pixels.reshape(b * t, *pixels.shape[2:]).to(self.vision_tower.dtype)
        vm = self.vision_tower
        hidden = vm.pre_layrnorm(vm.embeddings(flat))
        states = [hidden]
        for layer in vm.encoder.layers[: self._max_layer]:
            out = layer(hidden, attention_mask=None)
            hidden = out[0] if isinstance(out, tuple) else out
            states.append(hidden)
        return [
            states[i][:, 1:].reshape(b, t * self.patches_per_frame, self.hidden_size)
            for i in self.select_layers
        ]


def reference_to_ours(sd: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], list[str]]:
    """Map reference keys (relative to ``visual_encoder.``) to ours; nothing is dropped."""
    out = {}
    for key, value in sd.items():
        out[key.replace("vision_tower.vision_model.", "vision_tower.", 1)] = value
    return out, []


def ours_to_reference(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Inverse of :func:`reference_to_ours`."""
    return {k.replace("vision_tower.", "vision_tower.vision_model.", 1): v for k, v in sd.items()}
