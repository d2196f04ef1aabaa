"""Linear probes on the projected media tokens: auxiliary losses that keep them informative.

A scratch LLM learns to read its media tokens slowly when those tokens hardly vary between clips
(what the first crab-tiny showed: the projectors' outputs carried little of what the towers knew).
These heads read the LLM-space tokens of one frame / one audio second with a single linear map
and predict SynthAV's per-second ground truth:

* video frame ``(Q_v, D)`` tokens -> per class: visible (BCE) and its box ``(x1, y1, x2, y2) / S``
  (L1, on the visible classes only);
* audio second ``(Q_a, D)`` tokens -> per class: audible (BCE) and loudness ``gain_db / 10``
  (MSE, on the audible classes only);
* with the image grid (``QFormerConfig.image_grid``), the single frame's ``(G*G, D)`` grid tokens
  (ARIG's input) -> per class: visible and its box, as for a video frame. Without it ARIG's tokens
  never got a box signal: the frame probe only reads video frames.

:class:`SegTokenProbe` reads the LLM's last-layer states of the six seg tokens (the mask decoder's
prompt) and predicts which classes the target mask holds (BCE; none for an empty target). In
crab-tiny v3 those states carried the class weakly (34 % of their variance across S4 samples,
spread 0.24 of their mean norm; v4: 30 %, ``seg_selection_v4.md``) and the decoder ignores them; a
500-step I-LoRA phase with this probe raises the class share to 0.73, yet the decoder still does not
learn to select the sounding object within the seg stage (``benchmarks/results/seg_selection.md``),
so the shipped recipe does not use it.

Being linear, a probe can only succeed when the information is linearly readable from the tokens,
which is what attention in the LLM needs. The heads train with the projectors (``probe_weight`` of
a :class:`~crab_core.training.recipe.Phase`) and are discarded with the tower heads.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .data import NUM_CLASSES


def frame_targets(maps: torch.Tensor, num_classes: int = NUM_CLASSES) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-class visibility and boxes of class maps.

    Args:
        maps: ``(N, S, S)`` integer class maps (0 = background, ``c + 1`` = class ``c``).

    Returns:
        ``visible`` ``(N, K)`` float {0, 1} and ``boxes`` ``(N, K, 4)`` float ``(x1, y1, x2, y2)``
        in ``[0, 1]`` (zeros where not visible).
    """
    s = maps.shape[-1]
    onehot = maps.long().unsqueeze(1) == torch.arange(1, num_classes + 1, device=maps.device).view(
        1, -1, 1, 1
    )
    cols, rows = onehot.any(2), onehot.any(3)  # (N, K, S): x occupancy, y occupancy
    visible = cols.any(-1)
    pos = torch.arange(s, device=maps.device, dtype=torch.float32)
    big = torch.full_like(pos, float(s))

    def span(occ: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        lo = torch.where(occ, pos, big).amin(-1)
        hi = torch.where(occ, pos, -big).amax(-1) + 1
        return lo, hi

    (x1, x2), (y1, y2) = span(cols), span(rows)
    boxes = torch.stack([x1, y1, x2, y2], -1) / s
    boxes = torch.where(visible.unsqueeze(-1), boxes, torch.zeros_like(boxes))
    return visible.float(), boxes


def audio_label_loss(
    logit: torch.Tensor, loud: torch.Tensor, audible: torch.Tensor, gain: torch.Tensor
) -> torch.Tensor:
    """BCE(audible) + MSE(gain_db / 10) on the audible classes; every argument ``(N, K)``."""
    bce = F.binary_cross_entropy_with_logits(logit, audible)
    mse = (((loud - gain / 10.0) ** 2) * audible).sum() / audible.sum().clamp_min(1.0)
    return bce + mse


class MediaProbes(nn.Module):
    """Linear read-outs of one frame's / one audio second's projected tokens.

    Args:
        d_model: LLM width ``D`` (projector output).
        video_queries: tokens per frame ``Q_v``.
        audio_queries: tokens per audio second ``Q_a``.
        num_classes: object classes ``K``.
        image_tokens: tokens of the single-frame image input (``G*G`` with the image grid); 0 = no
            image probe (the v5 geometry: its initialisation is unchanged).
    """

    def __init__(
        self,
        d_model: int,
        video_queries: int,
        audio_queries: int,
        num_classes: int = NUM_CLASSES,
        image_tokens: int = 0,
    ) -> None:
        super().__init__()
        self.k, self.q_v, self.q_a, self.q_i = num_classes, video_queries, audio_queries, image_tokens
        self.video = nn.Linear(video_queries * d_model, 5 * num_classes)
        self.audio = nn.Linear(audio_queries * d_model, 2 * num_classes)
        self.image = nn.Linear(image_tokens * d_model, 5 * num_classes) if image_tokens else None

    def video_loss(
        self, tokens: torch.Tensor, maps: torch.Tensor, head: nn.Linear | None = None
    ) -> torch.Tensor:
        """``tokens`` ``(N, Q, D)``, ``maps`` ``(N, S, S)`` -> BCE(visible) + L1(box | visible), read by
        ``head`` (default: the video-frame head)."""
        out = (head or self.video)(tokens.float().flatten(1)).view(-1, self.k, 5)
        visible, boxes = frame_targets(maps, self.k)
        bce = F.binary_cross_entropy_with_logits(out[..., 0], visible)
        l1 = ((out[..., 1:].sigmoid() - boxes).abs().sum(-1) * visible).sum() / visible.sum().clamp_min(1.0)
        return bce + l1

    def audio_loss(self, tokens: torch.Tensor, audible: torch.Tensor, gain: torch.Tensor) -> torch.Tensor:
        """``tokens`` ``(N, Q_a, D)``; ``audible`` / ``gain`` (dB) ``(N, K)`` ->
        BCE + MSE(gain / 10 | audible)."""
        out = self.audio(tokens.float().flatten(1)).view(-1, self.k, 2)
        return audio_label_loss(out[..., 0], out[..., 1], audible, gain)


def probe_loss(
    probes: MediaProbes,
    video: list[tuple[torch.Tensor, torch.Tensor]],
    audio: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]],
    image: list[tuple[torch.Tensor, torch.Tensor]] = (),
) -> torch.Tensor:
    """Summed probe losses of a batch.

    Args:
        video: per item ``(tokens (T*Q_v, D), maps (T, S, S))``.
        audio: per item ``(tokens (T*Q_a, D), audible (T, K), gain (T, K))``.
        image: per item ``(tokens (Q_i, D), map (1, S, S))`` (used when ``probes.image`` exists).
    """
    loss = sum(p.sum() * 0 for p in probes.parameters())
    if image and probes.image is not None:
        tok = torch.stack([t for t, _ in image])
        loss = loss + probes.video_loss(tok, torch.cat([m for _, m in image]).to(tok.device), probes.image)
    if video:
        tok = torch.cat([t.reshape(-1, probes.q_v, t.shape[-1]) for t, _ in video])
        loss = loss + probes.video_loss(tok, torch.cat([m for _, m in video]).to(tok.device))
    if audio:
        tok = torch.cat([t.reshape(-1, probes.q_a, t.shape[-1]) for t, _, _ in audio])
        dev = tok.device
        loss = loss + probes.audio_loss(
            tok,
            torch.cat([a for _, a, _ in audio]).to(dev).float(),
            torch.cat([g for _, _, g in audio]).to(dev).float(),
        )
    return loss


class SegTokenProbe(nn.Module):
    """Linear read-out of the seg-token states: which classes the target mask holds.

    Args:
        d_model: LLM width ``D``.
        num_tokens: seg tokens per answer (6).
        num_classes: object classes ``K``.
    """

    def __init__(self, d_model: int, num_tokens: int, num_classes: int = NUM_CLASSES) -> None:
        super().__init__()
        self.head = nn.Linear(num_tokens * d_model, num_classes)

    def forward(self, states: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """``states`` ``(R, num_tokens, D)``, ``targets`` ``(R, K)`` {0, 1} -> BCE."""
        logits = self.head(states.float().flatten(1))
        return F.binary_cross_entropy_with_logits(logits, targets.to(logits))
