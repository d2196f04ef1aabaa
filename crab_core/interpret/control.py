"""Scoped routing control: remove or force I-LoRA heads in some layers for the duration of a block.

:func:`head_control` attaches one :class:`~crab_core.model.ilora.RoutingControl` to the I-LoRA
layers of the chosen LLM layers for the duration of the block, through the library's scoped routing
(:func:`crab_core.model.ilora.scoped_routing`, a context variable): the intervention is seen only by
code running in the same context (thread / asyncio task), so two requests on one shared model never
see each other's, and it is gone on exit (also after an exception). It composes with
:func:`crab_core.interpret.capture.capture_routing` entered inside it (the capture sees the
override). Apps and reports describe an intervention with :class:`HeadControl` and never touch the
layers' ``routing`` attribute themselves.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import nn

from ..errors import TaskError
from ..model.ilora import RoutingControl, scoped_routing
from ..model.ilora_inject import iter_ilora_layers

#: ``layers.<i>.`` in an I-LoRA layer name (``layers.0.self_attn.q_proj``).
_LAYER = re.compile(r"(?:^|\.)layers\.(\d+)\.")
MODES = ("ablate", "force")


@dataclass(frozen=True)
class HeadControl:
    """A routing intervention.

    Attributes:
        mode: ``ablate`` removes ``heads`` (the others keep their router weights, renormalised to
            sum to 1 when ``renormalize``); ``force`` routes every token to ``heads`` in equal
            parts (one head: that head alone at weight 1).
        heads: head indices. layers: LLM layer indices it applies to (None: every layer).
    """

    mode: str = "ablate"
    heads: tuple[int, ...] = ()
    layers: tuple[int, ...] | None = None
    renormalize: bool = False

    @classmethod
    def only(cls, head: int) -> HeadControl:
        """Every token routed to ``head`` alone."""
        return cls("force", (head,))

    @classmethod
    def without(cls, head: int) -> HeadControl:
        """``head`` removed, the others unchanged."""
        return cls("ablate", (head,))

    @property
    def name(self) -> str:
        """Short label: ``only h0``, ``without h1``, ``without h0,h2 (renormalised)``, ``forced to h0,h1``."""
        hs = ",".join(f"h{h}" for h in self.heads)
        if self.mode == "force":
            base = f"only {hs}" if len(self.heads) == 1 else f"forced to {hs}"
        else:
            base = f"without {hs}" + (" (renormalised)" if self.renormalize else "")
        return base if self.layers is None else f"{base} in L{','.join(map(str, self.layers))}"

    def routing_control(self, num_heads: int) -> RoutingControl:
        """The layer-level :class:`RoutingControl` for a model with ``num_heads`` heads.

        Raises:
            TaskError: no head, a head outside ``0..num_heads-1``, an unknown mode, or removing
                every head with ``renormalize`` (nothing left to renormalise).
        """
        bad = [h for h in self.heads if not 0 <= h < num_heads]
        if bad or not self.heads:
            raise TaskError(f"choose heads among 0..{num_heads - 1} (got {list(self.heads)})")
        if self.mode not in MODES:
            raise TaskError(f"unknown head control mode {self.mode!r} (ablate or force)")
        sel = torch.zeros(num_heads)
        sel[list(self.heads)] = 1.0
        if self.mode == "force":
            return RoutingControl(forced_weights=sel / sel.sum())
        if self.renormalize and sel.sum() == num_heads:
            raise TaskError("cannot renormalise after removing every head")
        return RoutingControl(head_mask=1.0 - sel, renormalize=self.renormalize)

    def describe(self) -> str:
        """One sentence: ``without head(s) 0 in all layers``."""
        where = "all layers" if self.layers is None else "layers " + ", ".join(map(str, self.layers))
        verb = "without" if self.mode == "ablate" else "forced to"
        return f"{verb} head(s) {', '.join(map(str, self.heads))} in {where}"


def layer_index(name: str) -> int | None:
    """LLM layer of an I-LoRA layer name (``layers.3.mlp.up_proj`` -> 3; None when absent)."""
    m = _LAYER.search(name)
    return int(m.group(1)) if m else None


def _llm(model: nn.Module) -> nn.Module:
    return getattr(model, "llm", model)


def num_layers_with_heads(model: nn.Module) -> list[int]:
    """Sorted LLM layer indices that hold I-LoRA layers."""
    return sorted({i for n, _ in iter_ilora_layers(_llm(model)) if (i := layer_index(n)) is not None})


@contextmanager
def head_control(model: nn.Module, control: HeadControl | None) -> Iterator[list[str]]:
    """Apply ``control`` to the I-LoRA layers of its LLM layers inside the block.

    Args:
        model: a :class:`~crab_core.model.crab.CrabModel` or its (PEFT) LLM.
        control: the intervention; None leaves the model as it is.

    Yields:
        The names of the I-LoRA layers that were changed.

    Raises:
        TaskError: for an invalid control, or layers the model does not have.
    """
    if control is None:
        yield []
        return
    num_heads = None
    chosen: list[tuple[str, nn.Module]] = []
    for name, layer in iter_ilora_layers(_llm(model)):
        num_heads = num_heads or next(iter(layer.num_heads.values()))
        if control.layers is None or layer_index(name) in control.layers:
            chosen.append((name, layer))
    if num_heads is None:
        raise TaskError("the model has no I-LoRA layer to control")
    ctl = control.routing_control(num_heads)
    if control.layers is not None:
        known = set(num_layers_with_heads(model))
        missing = sorted(set(control.layers) - known)
        if missing:
            raise TaskError(f"no I-LoRA layer {missing}; layers are {sorted(known)}")
    with scoped_routing({layer: ctl for _, layer in chosen}):
        yield [n for n, _ in chosen]


__all__ = ["HeadControl", "head_control", "layer_index", "num_layers_with_heads"]
