"""Router capture: per token, layer and adapted projection, the H router weights and head norms.

:func:`capture_routing` attaches a capture callback to every I-LoRA layer for the duration of a
block, through the scoped routing (:func:`crab_core.model.ilora.scoped_routing`: this context only,
other threads are not recorded), so it leaves nothing behind, even after an exception. With
capture off the layers run with ``routing=None`` (no cost).

Cached decoding feeds the prompt once (prefill) and then one token per step; each layer is
called once per forward, so the recorder joins the calls along the sequence axis. A generated
EOS ends decoding without being fed back, so it has no routing readout.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor, nn

from ..config import LORA_TARGETS
from ..model.ilora import RoutingControl, scoped_routing
from ..model.ilora_inject import iter_ilora_layers
from ..model.splice import KIND_NAMES, SplicedBatch

_NAME = re.compile(r"layers\.(?P<layer>\d+)\..*?(?P<proj>[A-Za-z0-9]+_proj)(?:@.*)?$")
#: Token kinds of a trace (prompt kinds from the splice, then generated ones).
TOKEN_KINDS = ("text", "video", "audio", "image", "answer", "seg")


@dataclass
class RoutingTrace:
    """Routing of one sample: every fed token x layer x adapted projection x head.

    Attributes:
        layers: LLM layer indices ``(n_layers,)``. projections: adapted projection names.
        weights: ``(N, n_layers, n_proj, H)`` float32 router softmax (before any override);
            NaN where a (layer, projection) pair has no adapter.
        norms: same shape: ``||w_h * s * B_h A x||`` of each applied head (after override/mask).
        kinds: ``(N,)`` token kinds (:data:`TOKEN_KINDS`). units: ``(N,)`` frame (video) or
            second (audio) index, -1 otherwise. token_ids: ``(N,)`` ids (placeholder id for media).
        positions: ``(N,)`` position in the spliced sequence (answer tokens continue the prompt).
        labels: ``(N,)`` short display strings (``"video f3"``, ``"audio s7"``, token text).
    """

    layers: list[int]
    projections: list[str]
    weights: np.ndarray
    norms: np.ndarray
    kinds: np.ndarray
    units: np.ndarray
    token_ids: np.ndarray
    positions: np.ndarray
    labels: list[str] = field(default_factory=list)

    @property
    def num_heads(self) -> int:
        return int(self.weights.shape[-1])

    @property
    def num_tokens(self) -> int:
        return int(self.weights.shape[0])

    def mask(self, kinds: str | Sequence[str]) -> np.ndarray:
        """``(N,)`` bool: tokens of the given kind(s)."""
        kinds = [kinds] if isinstance(kinds, str) else list(kinds)
        return np.isin(self.kinds, kinds)

    def mean_by_kind(self, values: str = "weights") -> dict[str, np.ndarray]:
        """Mean over the tokens of each present kind: ``{kind: (n_layers, n_proj, H)}``."""
        arr = getattr(self, values)
        return {k: np.nanmean(arr[self.kinds == k], axis=0) for k in TOKEN_KINDS if (self.kinds == k).any()}

    def mean_by_unit(self, kind: str, values: str = "weights") -> np.ndarray:
        """Mean over each frame's / second's tokens: ``(n_units, n_layers, n_proj, H)``."""
        arr = getattr(self, values)
        sel = self.kinds == kind
        n = int(self.units[sel].max()) + 1 if sel.any() else 0
        return (
            np.stack([np.nanmean(arr[sel & (self.units == u)], axis=0) for u in range(n)])
            if n
            else np.zeros((0, *arr.shape[1:]), np.float32)
        )

    def to_json(self) -> dict:
        """Plain JSON (lists) of the whole trace."""

        def clean(a):
            return np.where(np.isnan(a), None, np.round(a, 6).astype(object)).tolist()

        return {
            "layers": self.layers,
            "projections": self.projections,
            "weights": clean(self.weights),
            "norms": clean(self.norms),
            "kinds": self.kinds.tolist(),
            "units": self.units.tolist(),
            "token_ids": self.token_ids.tolist(),
            "positions": self.positions.tolist(),
            "labels": self.labels,
        }


class RoutingRecorder:
    """Collects the raw per-call readouts of every I-LoRA layer (filled inside :func:`capture_routing`)."""

    def __init__(self) -> None:
        self.calls: dict[str, list[tuple[Tensor, Tensor]]] = {}

    def __call__(self, name: str, route: Tensor, norms: Tensor) -> None:
        self.calls.setdefault(name, []).append((route, norms))

    @property
    def num_forwards(self) -> int:
        return max((len(v) for v in self.calls.values()), default=0)

    def joined(self, name: str) -> tuple[Tensor, Tensor]:
        """All calls of one layer joined along the token axis: two ``(B, N, H)`` float32 tensors."""
        parts = self.calls[name]
        route = torch.cat([r.float().reshape(r.shape[0], -1, r.shape[-1]) for r, _ in parts], 1)
        norms = torch.cat([n.float().reshape(n.shape[0], -1, n.shape[-1]) for _, n in parts], 1)
        return route, norms

    def trace(
        self,
        batch: SplicedBatch,
        generated: Sequence[int] = (),
        index: int = 0,
        tokenizer=None,
        seg_token_ids: Sequence[int] = (),
    ) -> RoutingTrace:
        """Build the :class:`RoutingTrace` of sample ``index`` of a (prefill + decode) run.

        Args:
            batch: the spliced prompt batch the generation started from.
            generated: the ids produced for this sample (EOS included or not).
            index: the sample's row in the batch.
            tokenizer: optional, to label text tokens with their text.
            seg_token_ids: ids labelled ``seg`` instead of ``answer`` (``<mask_*>`` and its tags).
        """
        names = [n for n in self.calls if _NAME.search(n)]
        if not names:
            raise ValueError("nothing was captured: run the model inside capture_routing()")
        parsed = {n: _NAME.search(n) for n in names}
        layers = sorted({int(m["layer"]) for m in parsed.values()})
        found = {m["proj"] for m in parsed.values()}
        projs = [p for p in LORA_TARGETS if p in found] + sorted(found - set(LORA_TARGETS))
        valid = batch.attention_mask[index].bool().cpu()
        length = batch.attention_mask.shape[1]
        first = self.joined(names[0])[0]
        n_fed = min(max(first.shape[1] - length, 0), len(generated))
        keep = torch.cat([valid, torch.ones(n_fed, dtype=torch.bool)])
        heads = first.shape[-1]
        weights = np.full((int(keep.sum()), len(layers), len(projs), heads), np.nan, np.float32)
        norms = weights.copy()
        for n in names:
            route, norm = self.joined(n)
            li, pj = layers.index(int(parsed[n]["layer"])), projs.index(parsed[n]["proj"])
            weights[:, li, pj] = route[index, : length + n_fed][keep].cpu().numpy()
            norms[:, li, pj] = norm[index, : length + n_fed][keep].cpu().numpy()
        kinds, units, ids, labels = _prompt_labels(batch, index, valid, tokenizer)
        gen = [int(t) for t in list(generated)[:n_fed]]
        seg = set(int(t) for t in seg_token_ids)
        kinds += ["seg" if t in seg else "answer" for t in gen]
        units += [-1] * n_fed
        ids += gen
        labels += [_text(tokenizer, t) for t in gen]
        n_prompt = int(valid.sum())
        positions = np.concatenate([np.arange(n_prompt), n_prompt + np.arange(n_fed)])
        return RoutingTrace(
            layers,
            projs,
            weights,
            norms,
            np.array(kinds),
            np.array(units, np.int64),
            np.array(ids, np.int64),
            positions.astype(np.int64),
            labels,
        )


def _text(tokenizer, token_id: int) -> str:
    if tokenizer is None:
        return str(token_id)
    return tokenizer.decode([token_id]).strip() or repr(tokenizer.decode([token_id]))


def _prompt_labels(batch: SplicedBatch, index: int, valid: Tensor, tokenizer):
    kinds_t = batch.kinds[index].cpu()[valid].tolist()
    units = batch.unit_index[index].cpu()[valid].tolist()
    ids = batch.token_ids[index].cpu()[valid].tolist()
    kinds = [KIND_NAMES[k] for k in kinds_t]
    short = {"video": "f", "audio": "s", "image": "i"}
    labels = [
        f"{k} {short[k]}{u}" if k in short else _text(tokenizer, t) for k, u, t in zip(kinds, units, ids)
    ]
    return kinds, units, ids, labels


def _llm_of(model: nn.Module) -> nn.Module:
    return getattr(model, "llm", model)


@contextmanager
def capture_routing(model: nn.Module) -> Iterator[RoutingRecorder]:
    """Record router weights and head norms of every I-LoRA layer while the block runs.

    Composes with an active routing override (:func:`crab_core.model.ilora_inject.routing`, e.g. a
    head ablation): the override stays in force, the capture is added, and an outer capture
    callback keeps being called. Everything is restored on exit, also on error.

    Args:
        model: a :class:`~crab_core.model.crab.CrabModel` or its (PEFT) LLM.

    Yields:
        The :class:`RoutingRecorder`; call ``recorder.trace(batch, generated)`` afterwards.
    """
    layers = [layer for _, layer in iter_ilora_layers(_llm_of(model))]
    recorder = RoutingRecorder()
    replaced: dict[int, RoutingControl] = {}
    scope = {}
    for layer in layers:
        prev = layer.routing  # the control in force in this context
        if id(prev) not in replaced:
            replaced[id(prev)] = _with_capture(prev, recorder)
        scope[layer] = replaced[id(prev)]
    with scoped_routing(scope):  # this context only: other threads are not captured
        yield recorder


def _with_capture(prev: RoutingControl | None, recorder: RoutingRecorder) -> RoutingControl:
    if prev is None:
        return RoutingControl(capture=recorder)
    outer = prev.capture

    def both(name, route, norms):
        outer(name, route, norms)
        recorder(name, route, norms)

    return dataclasses.replace(prev, capture=recorder if outer is None else both)
