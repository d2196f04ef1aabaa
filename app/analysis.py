"""Pure reductions of captured attention / attribution arrays to the quantities the views draw.

Token metadata follows :class:`crab_core.model.splice.SplicedBatch`: per position a kind name
(``video``, ``audio``, ``image``, ``text`` ...) and a unit index (frame / second, -1 otherwise).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass
class AttentionSummary:
    """What the attention views draw.

    Attributes:
        frames: ``(n_frames,)`` attention mass from the query tokens to each video frame's tokens.
        seconds: ``(n_seconds,)`` attention mass to each second's audio tokens.
        image: attention mass to the image tokens (0 when absent).
        interaction: ``(n_seconds, n_frames)`` mass from each second's audio tokens to each frame's
            video tokens (empty when audio precedes video, as causal attention then sees none).
        by_kind: total mass per token kind.
        query: which tokens were the queries (``answer`` or ``last prompt token``).
    """

    frames: np.ndarray
    seconds: np.ndarray
    image: float
    interaction: np.ndarray
    by_kind: dict[str, float]
    query: str


def _units(kinds: np.ndarray, units: np.ndarray, kind: str) -> int:
    sel = kinds == kind
    return int(units[sel].max()) + 1 if sel.any() else 0


def summarize_attention(
    attn: np.ndarray, kinds: Sequence[str], units: Sequence[int], n_prompt: int
) -> AttentionSummary:
    """Reduce an ``(L, L)`` attention matrix (mean over layers and heads, rows = queries).

    Args:
        attn: ``(L, L)`` row-stochastic causal attention over prompt + answer positions.
        kinds: ``(L,)`` kind names. units: ``(L,)`` frame / second indices.
        n_prompt: number of prompt positions; the rows after it (the answer) are the queries, or
            the last prompt row when there is no answer.
    """
    a = np.asarray(attn, np.float64)
    k = np.asarray(kinds).astype(str)
    u = np.asarray(units, np.int64)
    if a.shape[0] > n_prompt:
        q, query = a[n_prompt:].mean(0), "answer"
    else:
        q, query = a[n_prompt - 1], "last prompt token"
    n_f, n_s = _units(k, u, "video"), _units(k, u, "audio")
    frames = np.array([q[(k == "video") & (u == f)].sum() for f in range(n_f)])
    seconds = np.array([q[(k == "audio") & (u == s)].sum() for s in range(n_s)])
    inter = np.zeros((n_s, n_f))
    for s in range(n_s):
        rows = a[(k == "audio") & (u == s)]
        if len(rows):
            inter[s] = [rows[:, (k == "video") & (u == f)].sum(1).mean() for f in range(n_f)]
    by_kind = {str(name): float(q[k == name].sum()) for name in dict.fromkeys(k.tolist())}
    return AttentionSummary(frames, seconds, float(q[k == "image"].sum()), inter, by_kind, query)


def group_scores(
    scores: Sequence[float], kinds: Sequence[str], units: Sequence[int]
) -> tuple[list[str], list[float]]:
    """Sum per-position scores into groups ``video f0 .. video fN, audio s0 .., image, text``."""
    s = np.asarray(scores, np.float64)
    short = {"video": "f", "audio": "s"}
    groups: dict[str, float] = {}
    order = {"video": 0, "audio": 1, "image": 2, "text": 3}
    keys = []
    for val, kind, unit in zip(s, kinds, units):
        kind = str(kind)
        name = f"{kind} {short[kind]}{int(unit)}" if kind in short and unit >= 0 else kind
        if name not in groups:
            keys.append((order.get(kind, 9), int(unit), name))
            groups[name] = 0.0
        groups[name] += float(val)
    names = [n for *_, n in sorted(keys)]
    return names, [groups[n] for n in names]
