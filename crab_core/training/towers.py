"""Tower pretraining for models without pretrained encoders (crab-tiny starts from scratch).

Crab starts from pretrained CLIP and BEATs. crab-tiny has neither, so its first phase trains the
two towers with supervised heads on SynthAV's ground truth, the way CLIP / BEATs learned
perception before Crab used them frozen:

* vision: a dense head on the CLIP layers the seg decoder and the projector read predicts, for
  every ``sub x sub`` pixel block of every patch, the class painted there (0 = background);
* audio: a head pooling the BEATs tokens of each 1-s window with one attention per class
  predicts which classes sound (BCE) and how loud (gain in dB / 10, MSE on the sounding ones).
  (A mean over the tokens learns slower: validation BCE 0.178 vs 0.116 after 250 steps,
  benchmarks/tiny_training_choices.py.)

With ``probes`` (:class:`~crab_core.training.probes.MediaProbes`) the projectors train in the same
phase: the last CLIP layer of each frame and the BEATs tokens of each second go through the
projectors and linear probes must read the frame's classes / boxes and the second's audible
classes / loudness from the LLM-space tokens.

The heads are discarded after training; only the towers (and projectors) are kept.
"""

from __future__ import annotations

from collections.abc import Collection

import torch
import torch.nn.functional as F
from torch import nn

from ..model.crab import CrabModel
from ..tasks import get_task
from .collate import Batch, normalise
from .data import NUM_CLASSES
from .probes import MediaProbes, SegTokenProbe, audio_label_loss


class TowerHeads(nn.Module):
    """Supervised heads for the vision and audio towers.

    Args:
        vis_dim: CLIP hidden size ``C``.
        aud_dim: BEATs embed dim.
        patch: CLIP patch size.
        sub: pixel block side of the dense labels (patch must be a multiple).
        num_layers: number of CLIP layers with a dense head (the selected layers, last first).
        num_classes: number of object classes (background excluded).
        probes: optional linear probes on the projected media tokens.
        seg_probe: optional linear probe on the seg-token states (:class:`SegTokenProbe`).
    """

    def __init__(
        self,
        vis_dim: int,
        aud_dim: int,
        patch: int,
        sub: int = 2,
        num_layers: int = 2,
        num_classes: int = NUM_CLASSES,
        probes: MediaProbes | None = None,
        seg_probe: SegTokenProbe | None = None,
    ) -> None:
        super().__init__()
        self.probes = probes
        self.seg_probe = seg_probe
        self.patch, self.sub, self.num_classes = patch, sub, num_classes
        self.cells = (patch // sub) ** 2
        self.dense = nn.ModuleList(
            nn.Linear(vis_dim, self.cells * (num_classes + 1)) for _ in range(num_layers)
        )
        self.audio_attn = nn.Linear(aud_dim, num_classes)  # per-class attention logits over the tokens
        self.audio = nn.Sequential(
            nn.Linear(aud_dim, aud_dim), nn.GELU(), nn.Linear(aud_dim, 2 * num_classes)
        )

    def dense_loss(self, feats: list[torch.Tensor], maps: torch.Tensor) -> torch.Tensor:
        """Cross-entropy of the dense heads.

        Args:
            feats: selected CLIP layers, each ``(N, P, C)``.
            maps: ``(N, S, S)`` long class maps (0 = background).
        """
        n, s = maps.shape[0], maps.shape[-1]
        g, c = s // self.patch, self.patch // self.sub
        # (N, S, S) -> labels of sub-blocks, ordered (patch row, patch col, cell row, cell col)
        lab = maps[:, self.sub // 2 :: self.sub, self.sub // 2 :: self.sub]  # (N, g*c, g*c)
        lab = lab.reshape(n, g, c, g, c).permute(0, 1, 3, 2, 4).reshape(n, g * g, c * c)
        loss = maps.new_zeros((), dtype=torch.float32)
        for head, f in zip(self.dense, reversed(feats), strict=False):
            logits = head(f.float()).reshape(n, g * g, c * c, self.num_classes + 1)
            loss = loss + F.cross_entropy(logits.reshape(-1, self.num_classes + 1), lab.reshape(-1))
        return loss

    def audio_loss(self, tokens: torch.Tensor, audible: torch.Tensor, gain: torch.Tensor) -> torch.Tensor:
        """``tokens`` ``(N, n, D)``; ``audible`` / ``gain`` ``(N, classes)``."""
        t = tokens.float()  # (N, n, D)
        w = self.audio_attn(t).softmax(1)  # (N, n, K)
        k = self.num_classes
        per = self.audio(torch.einsum("nik,nid->nkd", w, t))  # (N, K, 2K): class k reads its own pooled token
        idx = torch.arange(k, device=t.device)
        return audio_label_loss(per[:, idx, idx], per[:, idx, k + idx], audible, gain)


def tower_loss(
    model: CrabModel,
    heads: TowerHeads,
    batch: Batch,
    max_frames: int = 64,
    trainable: Collection[str] | None = None,
) -> dict[str, torch.Tensor]:
    """Supervised tower losses of a micro-batch (SynthAV items with tower labels).

    A tower is skipped when neither it nor its projector (under the probes) trains. Video frames with
    their class maps and 1-s audio windows with their per-second labels are pooled over the batch (at
    most ``max_frames`` frames, chosen evenly). ``trainable``: the training components (names of
    :data:`crab_core.training.module.COMPONENTS`); default: read from ``requires_grad``, which FSDP
    hides inside its forward (every parameter view there requires grad).
    """
    frames, maps, auds, audible, gain = [], [], [], [], []
    probes = heads.probes

    # a frozen tower is only run when its projector trains under the probes
    def trains(name: str) -> bool:
        return name in trainable if trainable is not None else _trains(getattr(model, name))

    want_v = trains("visual_encoder") or (probes is not None and trains("vl_projector"))
    want_a = trains("audio_encoder") or (probes is not None and trains("al_projector"))
    for it in batch.items:
        r, lab = it.raw, it.raw.labels
        if want_v and r.video is not None and "patch" in lab:
            frames.append(normalise(r.video))
            maps.append(torch.from_numpy(lab["patch"]).long())
        uniform = get_task(r.task).variant().audio_mode == "uniform"  # 1-s windows, one per second
        if (
            want_a
            and r.audio is not None
            and "audible" in lab
            and uniform
            and r.audio.shape[0] == lab["audible"].shape[0]
        ):
            auds.append(torch.from_numpy(r.audio.astype("float32")))
            audible.append(torch.from_numpy(lab["audible"]).float())
            gain.append(torch.from_numpy(lab["gain"].astype("float32")))
    dev = model.device
    zero = sum(p.sum() * 0 for p in heads.parameters())
    out = {"vision_loss": zero, "audio_loss": zero, "probe_loss": zero}
    if frames:
        x, m = torch.cat(frames), torch.cat(maps)
        if x.shape[0] > max_frames:
            keep = torch.linspace(0, x.shape[0] - 1, max_frames).long()
            x, m = x[keep], m[keep]
        feats = model.visual_encoder(x.unsqueeze(1).to(dev, model.vision_dtype))
        out["vision_loss"] = heads.dense_loss(feats, m.to(dev))
        if heads.probes is not None and trains("vl_projector"):
            tok = model.vl_projector(feats[-1].to(model.dtype))  # (N, Q_v, D): one frame each
            out["probe_loss"] = out["probe_loss"] + heads.probes.video_loss(tok, m.to(dev))
            if heads.probes.image is not None:  # the same frames as image-grid tokens (N, G*G, D)
                tok = model.vl_projector(feats[-1].to(model.dtype), image=True)
                out["probe_loss"] = out["probe_loss"] + heads.probes.video_loss(
                    tok, m.to(dev), heads.probes.image
                )
    if auds and audible[0].shape[0] > 0:
        a = torch.cat(auds).to(dev, model.audio_dtype)  # (N, F, 128) one 1-s window each
        tokens = model.audio_encoder(a)
        aud, gn = torch.cat(audible).to(dev), torch.cat(gain).to(dev)
        out["audio_loss"] = heads.audio_loss(tokens, aud, gn)
        if heads.probes is not None and trains("al_projector"):
            tok = model.al_projector(tokens.to(model.dtype))  # (N, Q_a, D): one second each
            out["probe_loss"] = out["probe_loss"] + heads.probes.audio_loss(tok, aud, gn)
    out["loss"] = out["vision_loss"] + out["audio_loss"] + out["probe_loss"]
    return out


def _trains(module: torch.nn.Module) -> bool:
    return any(p.requires_grad for p in module.parameters())
