"""Multi-scale, query-based SAM-style mask decoder (reference ``MaskDecoderMultiScale``).

One call decodes one level ``l`` of one sample (crab-reference.md section 1.5 step 4):

1. queries = ``QueryGenerator(avs_query_tokens, prompt_l)`` + ``level_embed[l]``;
2. level 0: ``src`` = neck features + dense embedding, PE given by the caller;
   level > 0: ``src`` = ``upsample_2x``(neck features) gated by ``sigmoid(mean_c(previous logits)) + 1``,
   plus the dense embedding resized bilinearly, PE from ``pe1``;
3. ``TwoWayTransformer[l]``; the query outputs go through ``hyper_mlp`` (D -> D/8), the image
   tokens through ``output_upscaling`` (2x, D -> D/8); their product gives one map per query;
4. ``hyper_mlp_out`` (1x1 convs, Q -> D -> D -> D/8) and a 1x1 classifier: ``avss_classifier``
   (``num_avss_classes``) when the task name is exactly ``'avss'``, else ``binary_classifier``
   (1 channel; the reference's ``ms3_s4_classfier``).

The reference hard-codes ``repeat_interleave(prev, 256)`` for the gate; broadcasting makes the
width free here (identical values).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ...tasks import seg_tasks
from .common import MLP, ConvMLP, LayerNorm2d, PositionEmbeddingRandom
from .query_generator import QueryGenerator
from .two_way_transformer import TwoWayTransformer

#: tasks whose masks are class maps (the AVSS head); the others use the binary head
CLASS_TASKS = frozenset(seg_tasks("classes"))


class MaskDecoderMultiScale(nn.Module):
    """Per-level query decoder producing class logits at twice the level's resolution.

    Args:
        transformer_dim: Width ``D`` (multiple of 8).
        num_queries: Learned mask queries ``Q``.
        depth: Two-way transformer depth.
        num_heads: Heads of the two-way transformer and the query generator.
        mlp_dim: MLP width of the two-way transformer and the query-generator FFN.
        attention_downsample_rate: Cross-attention down-projection of the two-way transformer.
        scales: Number of levels (one transformer each).
        query_generator_layers: Query-generator depth.
        num_avss_classes: Output channels of the avss head.
        chain_query_generator: Fix the reference's un-chained query generator.
    """

    def __init__(
        self,
        transformer_dim: int,
        num_queries: int,
        depth: int = 2,
        num_heads: int = 8,
        mlp_dim: int = 2048,
        attention_downsample_rate: int = 2,
        scales: int = 2,
        query_generator_layers: int = 2,
        num_avss_classes: int = 71,
        chain_query_generator: bool = False,
    ) -> None:
        super().__init__()
        if transformer_dim % 8:
            raise ValueError(f"transformer_dim must be a multiple of 8, got {transformer_dim}")
        d, d8 = transformer_dim, transformer_dim // 8
        self.num_queries = num_queries
        self.transformer = nn.ModuleList(
            TwoWayTransformer(depth, d, num_heads, mlp_dim, attention_downsample_rate) for _ in range(scales)
        )
        self.avs_query_tokens = nn.Embedding(num_queries, d)
        self.query_generator = QueryGenerator(
            query_generator_layers, d, num_heads, mlp_dim, chain=chain_query_generator
        )
        self.hyper_mlp_out = ConvMLP(num_queries, d, d8, 3)
        self.hyper_mlp = MLP(d, d, d8, 3)
        self.output_upscaling = nn.Sequential(
            nn.ConvTranspose2d(d, d8, kernel_size=2, stride=2), LayerNorm2d(d8), nn.GELU()
        )
        self.upsample_2x = nn.Sequential(
            nn.ConvTranspose2d(d, d, kernel_size=2, stride=2), LayerNorm2d(d), nn.GELU()
        )
        self.pe1 = PositionEmbeddingRandom(d // 2)
        self.level_embed = nn.Embedding(scales, d)
        self.binary_classifier = nn.Conv2d(d8, 1, kernel_size=1, bias=False)
        self.avss_classifier = nn.Conv2d(d8, num_avss_classes, kernel_size=1, bias=False)

    def _image_source(
        self,
        image_embedding: Tensor,
        image_pe: Tensor,
        dense: Tensor,
        level: int,
        previous_logits: Tensor | None,
    ) -> tuple[Tensor, Tensor]:
        if level == 0:
            return image_embedding + dense, image_pe
        if previous_logits is None:
            raise ValueError("levels > 0 need the previous level's logits")
        src = self.upsample_2x(image_embedding)
        h, w = src.shape[-2:]
        gate = previous_logits.mean(dim=1, keepdim=True).sigmoid() + 1  # (B, 1, h, w)
        src = gate * src
        pe = self.pe1((h, w)).unsqueeze(0)
        dense = F.interpolate(dense.float(), size=(h, w), mode="bilinear", align_corners=False).to(dense)
        return src + dense, pe

    def forward(
        self,
        image_embedding: Tensor,
        image_pe: Tensor,
        prompt: Tensor,
        dense: Tensor,
        level: int,
        task_name: str,
        previous_logits: Tensor | None = None,
    ) -> tuple[Tensor, Tensor]:
        """Decode one level.

        Args:
            image_embedding: ``(B, D, h, w)`` neck features of this level (``h = w`` = grid size).
            image_pe: ``(1, D, h, w)`` dense PE, used at level 0 only (level > 0 uses ``pe1``).
            prompt: ``(B, 1, D)`` fused seg-token embedding of this level.
            dense: ``(B, D, h, w)`` dense prompt embedding (``no_mask_embed`` broadcast).
            level: Level index.
            task_name: ``'avss'`` selects the avss head, anything else the binary head.
            previous_logits: ``(B, C, 2h', 2w')`` logits of the previous level (level > 0).

        Returns:
            ``(logits (B, C, 2H, 2W), query_generator_out (B, Q, D))`` where ``H, W`` is the size of
            ``src`` at this level (``h`` at level 0, ``2h`` after ``upsample_2x``).
        """
        b = prompt.shape[0]
        queries = self.avs_query_tokens.weight.unsqueeze(0).expand(b, -1, -1)
        qg_out = self.query_generator(queries, prompt)
        level_idx = torch.full((b, 1), level, dtype=torch.long, device=qg_out.device)
        tokens = qg_out + self.level_embed(level_idx)

        src, pe = self._image_source(image_embedding, image_pe, dense, level, previous_logits)
        pos = pe.expand(b, -1, -1, -1) if pe.shape[0] != b else pe
        _, c, h, w = src.shape
        hs, keys = self.transformer[level](src, pos, tokens)

        hyper = self.hyper_mlp(hs[:, : self.num_queries])  # (B, Q, D/8)
        upscaled = self.output_upscaling(keys.transpose(1, 2).reshape(b, c, h, w))  # (B, D/8, 2h, 2w)
        _, c8, h2, w2 = upscaled.shape
        masks = (hyper @ upscaled.view(b, c8, h2 * w2)).view(b, -1, h2, w2)  # (B, Q, 2h, 2w)
        masks = self.hyper_mlp_out(masks)
        head = self.avss_classifier if task_name in CLASS_TASKS else self.binary_classifier
        return head(masks), qg_out
