"""Frozen-tower feature cache: run CLIP / BEATs once per sample, train the rest from their outputs.

Crab keeps its encoders frozen after pretraining; so does crab-tiny once its towers are trained.
Their outputs are then computed once (:func:`compute_features`) and the projectors take them
directly (:func:`encode_from_features`), which computes what
:meth:`CrabModel.encode_media_batch` computes from the pixels and fbanks (up to the float16
rounding of the cached outputs).
"""

from __future__ import annotations

import logging

import numpy as np
import torch

from ..model.crab import CrabModel, EncodedMedia
from .collate import normalise
from .data import RawItem

log = logging.getLogger(__name__)


@torch.no_grad()
def tower_outputs(model: CrabModel, raws: list[RawItem]) -> list[dict]:
    """Encoder outputs of items with equal media shapes, stored as float16 on the CPU.

    Returns:
        Per item ``{"video": (T*P, C), "image": [3 x (P, C)], "audio": (T, n, C)}`` (present keys only).
    """
    out: list[dict] = [{} for _ in raws]
    dev, half = model.device, torch.float16
    if raws[0].video is not None:
        v = torch.stack([normalise(r.video) for r in raws]).to(dev, model.vision_dtype)
        last = model.visual_encoder(v)[-1].to("cpu", half)
        for i in range(len(raws)):
            out[i]["video"] = last[i]
    if raws[0].image is not None:
        im = torch.stack([normalise(r.image[None]) for r in raws]).to(dev, model.vision_dtype)
        feats = [f.to("cpu", half) for f in model.visual_encoder(im)]
        for i in range(len(raws)):
            out[i]["image"] = [f[i] for f in feats]
    if raws[0].audio is not None:
        a = torch.stack([torch.from_numpy(r.audio.astype(np.float32)) for r in raws]).to(
            dev, model.audio_dtype
        )
        tok = model.audio_encoder(a).to("cpu", half)
        for i in range(len(raws)):
            out[i]["audio"] = tok[i]
    return out


def compute_features(
    model: CrabModel, raws: list[RawItem], batch_size: int = 32, progress: bool = False
) -> dict[str, dict]:
    """``{item id: tower outputs}`` for every item (items grouped by media shape; an item with
    ``media_of`` gets the outputs of that item, which must be in ``raws``)."""
    from tqdm import tqdm

    was_training = model.training
    model.eval()
    groups: dict[tuple, list[RawItem]] = {}
    for r in raws:
        if r.media_of is not None:  # shares the media of another item: computed once, below
            continue
        key = tuple(None if a is None else a.shape for a in (r.video, r.audio, r.image))
        groups.setdefault(key, []).append(r)
    feats: dict[str, dict] = {}
    bar = tqdm(total=len(raws), desc="tower features", disable=not progress)
    for members in groups.values():
        for s in range(0, len(members), batch_size):
            chunk = members[s : s + batch_size]
            for r, f in zip(chunk, tower_outputs(model, chunk), strict=True):
                feats[r.id] = f
            bar.update(len(chunk))
    bar.close()
    for r in raws:
        if r.media_of is not None:
            feats[r.id] = feats[r.media_of]
    model.train(was_training)
    return feats


def encode_from_features(model: CrabModel, features: dict, need_seg: bool) -> list[EncodedMedia]:
    """Project cached tower outputs of one media group, as ``encode_media_batch`` does.

    Args:
        features: ``{"video": (B, T*P, C), "image": [3 x (B, P, C)], "audio": (B, T, n, C)}``, and
            ``"frame"`` ``(B, 3, S, S)``: the normalised image pixels (the prompt decoder's frame stem).
        need_seg: keep the image's two seg-scale maps for the mask decoder.
    """
    b = next(iter(features.values()))
    b = (b[0] if isinstance(b, list) else b).shape[0]
    outs = [EncodedMedia() for _ in range(b)]
    p = model.visual_encoder.patches_per_frame
    q_a = model.config.al_qformer.num_query_tokens
    for name in ("video", "image"):
        if name not in features:
            continue
        last = features[name][-1] if name == "image" else features[name]
        image = name == "image"
        proj = model.vl_projector(last.to(model.device, model.dtype), tokens_per_frame=p, image=image)
        for i in range(b):
            outs[i].features[name] = proj[i]
            outs[i].tokens_per_unit[name] = model.vl_projector.tokens_per_unit(image)
    if "audio" in features:
        proj = model.al_projector(features["audio"].to(model.device, model.dtype))
        for i in range(b):
            outs[i].features["audio"] = proj[i]
            outs[i].tokens_per_unit["audio"] = q_a
    if need_seg and "image" in features:
        seg = [f.to(model.device, model.vision_dtype)[:, :p] for f in features["image"][:2]]
        frame = features.get("frame")
        for i in range(b):
            outs[i].seg_features = [f[i] for f in seg]
            if frame is not None:
                outs[i].seg_frame = frame[i].to(model.device)
    return outs
