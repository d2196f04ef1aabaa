"""Pure splicing of projected media features into token embeddings (reference section 1.1).

Placeholders (``<video>``, ``<audio>``, ``<image>``) are removed and replaced in place by their
feature rows; samples are spliced one by one and **left**-padded with the embedding of the pad
id; ``position_ids = cumsum(mask) - 1`` with pads clamped to 0.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import torch

from ..errors import TaskError

IGNORE_INDEX = -100

# Token kinds recorded per position (for interpretability and seg-token selection).
KIND_PAD, KIND_TEXT, KIND_VIDEO, KIND_AUDIO, KIND_IMAGE = 0, 1, 2, 3, 4
KIND_NAMES = {
    KIND_PAD: "pad",
    KIND_TEXT: "text",
    KIND_VIDEO: "video",
    KIND_AUDIO: "audio",
    KIND_IMAGE: "image",
}


@dataclass
class SplicedBatch:
    """Result of :func:`splice_batch`. All tensors are ``(B, L)`` except ``inputs_embeds``.

    Attributes:
        inputs_embeds: ``(B, L, D)`` spliced, left-padded embeddings.
        attention_mask: ``(B, L)`` int64, 0 on pads.
        position_ids: ``(B, L)`` int64, ``cumsum(mask) - 1`` with pads at 0.
        labels: ``(B, L)`` int64 or None; -100 on pads, features and unlabeled text.
        token_ids: ``(B, L)`` int64: the text id at text positions, the placeholder id at
            feature positions, the pad id at pads.
        kinds: ``(B, L)`` int64 token kind (``KIND_*``).
        unit_index: ``(B, L)`` int64: frame / second index of a feature row (its
            ``row // tokens_per_unit``), -1 for text and pads.
    """

    inputs_embeds: torch.Tensor
    attention_mask: torch.Tensor
    position_ids: torch.Tensor
    labels: torch.Tensor | None
    token_ids: torch.Tensor
    kinds: torch.Tensor
    unit_index: torch.Tensor

    def seg_token_mask(self, mask_token_ids: Sequence[int]) -> torch.Tensor:
        """``(B, L)`` bool: positions *preceding* each ``<mask_i>`` (the state that predicts it)."""
        is_mask = torch.isin(self.token_ids, torch.tensor(list(mask_token_ids), device=self.token_ids.device))
        sel = torch.zeros_like(is_mask)
        sel[:, :-1] = is_mask[:, 1:]
        return sel


def splice_batch(
    input_ids: Sequence[torch.Tensor],
    features: Sequence[Mapping[int, Sequence[torch.Tensor]]],
    embed: Callable[[torch.Tensor], torch.Tensor],
    pad_token_id: int,
    placeholder_kinds: Mapping[int, int],
    labels: Sequence[torch.Tensor] | None = None,
    tokens_per_unit: Mapping[int, int] | None = None,
) -> SplicedBatch:
    """Splice features at placeholders for a batch of samples and left-pad.

    Args:
        input_ids: per sample a ``(L_i,)`` int64 tensor of token ids.
        features: per sample, ``{placeholder_id: [feat_0, feat_1, ...]}`` with one ``(n, D)``
            tensor per occurrence of that placeholder, in order of appearance.
        embed: the LLM's token embedding function, ``(N,) -> (N, D)``.
        pad_token_id: id whose embedding fills pads.
        placeholder_kinds: ``{placeholder_id: KIND_*}`` for every placeholder id.
        labels: optional per-sample ``(L_i,)`` labels aligned with ``input_ids``.
        tokens_per_unit: ``{placeholder_id: rows per frame / second}`` for ``unit_index``.

    Raises:
        TaskError: when a sample's placeholder count differs from its feature count.
    """
    rows = [
        _splice_one(
            ids, feats, embed, placeholder_kinds, None if labels is None else labels[i], tokens_per_unit or {}
        )
        for i, (ids, feats) in enumerate(zip(input_ids, features))
    ]
    return _left_pad(rows, embed, pad_token_id, with_labels=labels is not None)


def _splice_one(ids, feats, embed, placeholder_kinds, labels, tokens_per_unit):
    ids = ids.long()
    is_ph = torch.isin(ids, torch.tensor(list(placeholder_kinds), device=ids.device))
    counts = {pid: int((ids == pid).sum()) for pid in placeholder_kinds}
    for pid, n in counts.items():
        got = len(feats.get(pid, ()))
        if got != n:
            raise TaskError(
                f"placeholder id {pid} appears {n} time(s) but {got} feature tensor(s) were given"
            )
    text_emb = embed(ids[~is_ph])
    used = {pid: 0 for pid in placeholder_kinds}
    parts, tok, kind, unit, lab = [], [], [], [], []
    text_pos = 0
    start = 0
    ph_positions = torch.nonzero(is_ph).flatten().tolist()
    for p in ph_positions + [len(ids)]:
        n_text = p - start
        if n_text:
            parts.append(text_emb[text_pos : text_pos + n_text])
            tok.append(ids[start:p])
            kind.append(torch.full((n_text,), 1, dtype=torch.long))
            unit.append(torch.full((n_text,), -1, dtype=torch.long))
            lab.append(labels[start:p].long() if labels is not None else None)
            text_pos += n_text
        if p == len(ids):
            break
        pid = int(ids[p])
        feat = feats[pid][used[pid]]
        used[pid] += 1
        n = feat.shape[0]
        parts.append(feat.to(text_emb.dtype))
        tok.append(torch.full((n,), pid, dtype=torch.long))
        kind.append(torch.full((n,), placeholder_kinds[pid], dtype=torch.long))
        per = tokens_per_unit.get(pid, n)
        unit.append(torch.arange(n, dtype=torch.long) // max(per, 1))
        lab.append(torch.full((n,), IGNORE_INDEX, dtype=torch.long) if labels is not None else None)
        start = p + 1
    out = {
        "emb": torch.cat(parts, 0),
        "tok": torch.cat(tok).to(ids.device),
        "kind": torch.cat(kind).to(ids.device),
        "unit": torch.cat(unit).to(ids.device),
        "lab": torch.cat([x.to(ids.device) for x in lab]) if labels is not None else None,
    }
    return out


def _left_pad(rows, embed, pad_token_id, with_labels):
    max_len = max(r["emb"].shape[0] for r in rows)
    device = rows[0]["emb"].device
    pad_vec = embed(torch.tensor([pad_token_id], device=device))[0]
    embs, masks, toks, kinds, units, labs = [], [], [], [], [], []
    for r in rows:
        n = r["emb"].shape[0]
        k = max_len - n
        embs.append(torch.cat([pad_vec.expand(k, -1).to(r["emb"].dtype), r["emb"]], 0))
        masks.append(torch.cat([torch.zeros(k, dtype=torch.long), torch.ones(n, dtype=torch.long)]))
        toks.append(torch.cat([torch.full((k,), pad_token_id, dtype=torch.long, device=device), r["tok"]]))
        kinds.append(torch.cat([torch.zeros(k, dtype=torch.long, device=device), r["kind"]]))
        units.append(torch.cat([torch.full((k,), -1, dtype=torch.long, device=device), r["unit"]]))
        if with_labels:
            labs.append(
                torch.cat([torch.full((k,), IGNORE_INDEX, dtype=torch.long, device=device), r["lab"]])
            )
    mask = torch.stack(masks).to(device)
    pos = (mask.cumsum(-1) - 1).clamp(min=0)
    return SplicedBatch(
        inputs_embeds=torch.stack(embs),
        attention_mask=mask,
        position_ids=pos,
        labels=torch.stack(labs) if with_labels else None,
        token_ids=torch.stack(toks),
        kinds=torch.stack(kinds),
        unit_index=torch.stack(units),
    )
