"""Fused inference path of :class:`~crab_core.model.ilora.ILoraLinear`: fewer, larger kernels per layer.

The eager I-LoRA update of one layer (``ILoraLinear._add_adapter``) launches, besides the base GEMM,
a weight concatenation ``[A; R]``, the down/router GEMM, the float32 softmax, its cast, the scaling,
the head outer product and the stacked-B ``addmm``: about 8 kernels, i.e. ~1,800 launches per token
for crab-7b's 224 adapted Linears, which at decode time (one token, memory-bound GEMVs of a few µs)
costs more than the arithmetic. This path keeps the same arithmetic and removes what can go:

- ``[s A; R]`` (r + H, in) is concatenated once and cached (refreshed when ``A`` or ``R`` change),
  with the LoRA scaling ``s = alpha / r`` folded into the ``A`` rows when ``s`` is a power of two
  (multiplying by a power of two is exact, so the result is bit-identical to the eager order);
- one GEMM gives ``z`` (..., r) and the router logits (..., H); the softmax (float32, cast back as in
  the reference), the outer product ``g ⊗ z`` and the stacked-B ``addmm`` into the base output follow.

Eager: base GEMM + 4 kernels (+1 cast in bf16). Under ``torch.compile`` the softmax, cast and outer
product fuse into one kernel, i.e. base GEMM + [A; R] GEMM + 1 pointwise + B GEMM, and CUDA graphs
(``mode="reduce-overhead"``) remove the launch cost of what is left (:mod:`crab_core.model.fast_decode`).

The path is used only where it is exact: inference (no autograd recording), no active dropout and no
:class:`~crab_core.model.ilora.RoutingControl` (head masks and captures take the eager path). It is
enabled per model with :func:`enable_fused_ilora` and removed with :func:`disable_fused_ilora`; the
layer calls it through its ``fast_path`` attribute.

Example:
    >>> n = enable_fused_ilora(model.llm)  # doctest: +SKIP
    >>> out = model.generate([sample])  # same tokens, fewer kernels  # doctest: +SKIP
"""

from __future__ import annotations

import logging
import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .ilora import ILoraLinear

log = logging.getLogger(__name__)


def _power_of_two(value: float) -> bool:
    if value <= 0:
        return False
    mantissa, _ = math.frexp(value)
    return mantissa == 0.5


class FusedILora:
    """Cached fused weights of one :class:`ILoraLinear` and its inference update.

    Per adapter the cache holds ``w_ar`` (r + H, in): ``[s A; R]`` (or ``[A; R]`` when the scaling is
    not a power of two) and the weight versions it was built from.
    """

    def __init__(self) -> None:
        self._cache: dict[str, tuple[Tensor, bool, tuple]] = {}

    @staticmethod
    def _key(layer: ILoraLinear, adapter: str) -> tuple:
        a, route = layer.lora_A[adapter].weight, layer.lora_route[adapter].weight
        return (a.data_ptr(), a._version, a.dtype, a.device, route.data_ptr(), route._version)

    def refresh(self, layer: ILoraLinear, adapter: str) -> tuple[Tensor, bool]:
        """The cached ``(w_ar, scaling_folded)`` of ``adapter``, rebuilt when ``A`` or ``R`` changed."""
        key = self._key(layer, adapter)
        hit = self._cache.get(adapter)
        if hit is not None and hit[2] == key:
            return hit[0], hit[1]
        scaling = layer.scaling[adapter]
        fold = _power_of_two(scaling)
        with torch.no_grad():
            a = layer.lora_A[adapter].weight
            route = layer.lora_route[adapter].weight
            w_ar = torch.cat([a * scaling if fold else a, route], dim=0).contiguous()
        self._cache[adapter] = (w_ar, fold, key)
        return w_ar, fold

    def applicable(self, layer: ILoraLinear, adapter: str, x: Tensor) -> bool:
        """True where the fused update is exactly the eager one (inference, no dropout, no routing).

        Inside a compiled region the routing control is not read (a ``ContextVar`` lookup breaks the
        graph): :class:`~crab_core.model.fast_decode.StaticDecoder` checks it eagerly
        (:func:`any_routing`) and does not run its compiled step while a control is in force.
        """
        if not torch.compiler.is_compiling() and layer.routing is not None:
            return False
        drop = layer.lora_dropout[adapter]
        if isinstance(drop, nn.Dropout) and drop.training and drop.p > 0:
            return False
        # the cached [s A; R] is a constant: gradients would not reach A and R
        a, route = layer.lora_A[adapter].weight, layer.lora_route[adapter].weight
        return not (torch.is_grad_enabled() and (a.requires_grad or route.requires_grad))

    def __call__(self, layer: ILoraLinear, result: Tensor, x: Tensor, adapter: str) -> Tensor | None:
        """``result + I-LoRA(x)`` (..., out), or None when the eager path must run.

        Args:
            layer: the I-LoRA layer. result: (..., out) base output. x: (..., in) layer input.
            adapter: adapter name.
        """
        if not self.applicable(layer, adapter, x):
            return None
        if torch.compiler.is_compiling():
            w_ar, fold = self._cache[adapter][:2]  # refreshed eagerly by prepare() before compiled calls
        else:
            w_ar, fold = self.refresh(layer, adapter)
        r = layer.r[adapter]
        zr = F.linear(x.to(w_ar.dtype), w_ar)  # (..., r + H): [s z | logits]
        g = F.softmax(zr[..., r:], dim=-1, dtype=torch.float32).to(result.dtype)  # (..., H)
        if not fold:
            g = g * layer.scaling[adapter]
        u = g.unsqueeze(-1) * zr[..., :r].unsqueeze(-2).to(g.dtype)  # (..., H, r)
        return ILoraLinear._add_heads(result, u.flatten(-2), layer.lora_B[adapter].weight)


def _layers(model: nn.Module) -> list[ILoraLinear]:
    return [m for m in model.modules() if isinstance(m, ILoraLinear)]


def enable_fused_ilora(model: nn.Module) -> int:
    """Route every I-LoRA layer of ``model`` through :class:`FusedILora`; returns the layer count."""
    layers = _layers(model)
    for layer in layers:
        if not isinstance(getattr(layer, "fast_path", None), FusedILora):
            layer.fast_path = FusedILora()
    prepare_fused_ilora(model)
    log.info("fused I-LoRA path on %d layers", len(layers))
    return len(layers)


def prepare_fused_ilora(model: nn.Module) -> None:
    """Build / refresh every fused cache eagerly (call before a compiled region runs the layers)."""
    for layer in _layers(model):
        fused = getattr(layer, "fast_path", None)
        if isinstance(fused, FusedILora):
            for adapter in layer.active_adapters:
                if adapter in layer.lora_A:
                    fused.refresh(layer, adapter)


def any_routing(model: nn.Module) -> bool:
    """True when a :class:`~crab_core.model.ilora.RoutingControl` is in force on a layer of ``model``."""
    return any(layer.routing is not None for layer in _layers(model))


def disable_fused_ilora(model: nn.Module) -> None:
    """Back to the eager I-LoRA path on every layer (drops the cached weights)."""
    for layer in _layers(model):
        layer.fast_path = None
