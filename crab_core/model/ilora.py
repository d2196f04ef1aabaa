"""Interaction-aware multi-head LoRA (I-LoRA) as a PEFT custom LoRA layer.

For a frozen linear layer ``W`` (out x in, optional bias ``b``) and an input ``x`` (..., in)::

    y = W x + b + sum_h g_h(x) * B_h A dropout(x) * (alpha / r),    g(x) = softmax(R x)

with one shared down-projection ``A`` (r x in), ``H`` up-projection heads ``B_h`` (out x r) and a
bias-free per-token router ``R`` (H x in). The softmax is taken in float32 on the *un-dropped*
input and cast back to the output dtype, as in the reference (``peft_hyper/tuners/lora.py``).

Storage and efficiency. The heads are stored side by side in ONE ``nn.Linear(H*r, out)`` whose
weight is ``[B_0 | B_1 | ... | B_{H-1}]`` (out, H*r); the router is an ``nn.Linear(in, H)``.
The forward computes ``z = A dropout(x)`` once (the reference recomputes it per head) and combines
all heads with a single GEMM::

    u = (scaling * g).unsqueeze(-1) * z.unsqueeze(-2)     # (..., H, r) -> (..., H*r)
    y = addmm(W x + b, u, B_stacked^T)

so no (..., out) tensor is materialised per head. Parameter names follow PEFT
(``lora_A.<adapter>.weight``, ``lora_B.<adapter>.weight``, ``lora_route.<adapter>.weight``),
so ``get_peft_model_state_dict``/``set_peft_model_state_dict`` and adapter save/load work.

Number of heads. PEFT 0.21 builds custom modules as ``cls(target, adapter_name, config=config,
r=..., lora_alpha=..., ...)``. ``H`` is read from ``config.num_heads``: use :class:`ILoraPeftConfig`
(a ``LoraConfig`` subclass with that field, serialised into ``adapter_config.json``). An explicit
``num_heads=`` keyword overrides it (e.g. ``functools.partial``).

Training-mode difference. One dropout mask is shared by all heads; the reference draws one mask
per head (its ``A`` is recomputed per head). Eval mode is identical.

Routing control (interpretability). A :class:`RoutingControl` (one object may be shared by all
layers): ``head_mask`` removes heads, ``forced_weights`` replaces the router output, ``capture``
receives the router readout and per-head contribution norms. Interventions are scoped:
:func:`scoped_routing` attaches controls to layers for the duration of a ``with`` block *in the
current context only* (a :class:`contextvars.ContextVar`: another thread or asyncio task running the
same shared model does not see them). A layer's :attr:`ILoraLinear.routing` reads the scoped control,
else the layer's own default (``None``: zero cost); assigning ``layer.routing`` sets that default,
which every caller sees (stand-alone layers, tests), so libraries and apps use the scopes
(:func:`crab_core.model.ilora_inject.routing`, :func:`crab_core.interpret.control.head_control`,
:func:`crab_core.interpret.capture.capture_routing`).
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field, fields
from types import MappingProxyType
from typing import Any

import torch
import torch.nn.functional as F
from peft import LoraConfig
from peft.tuners.lora.layer import LoraLayer
from peft.utils import CONFIG_NAME
from torch import Tensor, nn

logger = logging.getLogger(__name__)

CaptureFn = Callable[[str, Tensor, Tensor], None]


@dataclass
class ILoraPeftConfig(LoraConfig):
    """``LoraConfig`` with the I-LoRA head count (saved in ``adapter_config.json``)."""

    num_heads: int = field(default=3, metadata={"help": "Number of I-LoRA B heads (router outputs)."})

    @classmethod
    def from_adapter_dir(cls, path: str | os.PathLike[str]) -> ILoraPeftConfig:
        """Read ``adapter_config.json`` keeping ``num_heads`` (``LoraConfig.from_pretrained`` drops it).

        The returned config already has :class:`ILoraLinear` registered for ``nn.Linear``.
        """
        raw = cls.from_json_file(os.path.join(os.fspath(path), CONFIG_NAME))
        names = {f.name for f in fields(cls) if f.init}
        cfg = cls(**{k: v for k, v in raw.items() if k in names})
        cfg._register_custom_module({nn.Linear: ILoraLinear})
        return cfg


@dataclass
class RoutingControl:
    """Routing override / readout shared by one or more :class:`ILoraLinear` layers.

    Attributes:
        head_mask: (H,) bool or float; heads with 0/False contribute nothing. The remaining router
            weights are NOT renormalised unless ``renormalize`` is True.
        renormalize: rescale the masked weights to sum to 1 per token.
        forced_weights: (H,) fixed mix used instead of the router output (e.g. one-hot).
        capture: ``capture(layer_name, route_weights, head_norms)`` with ``route_weights`` (..., H)
            the router's own softmax output (before any override) and ``head_norms`` (..., H) the
            L2 norms over the out dim of each applied head contribution
            ``w_h * scaling * B_h A dropout(x)`` (``w`` after override/mask). Both detached.
            The name is the layer's ``ilora_name`` (set by ``inject_ilora``), suffixed
            ``@<adapter>`` for adapters other than ``default``.
    """

    head_mask: Tensor | None = None
    renormalize: bool = False
    forced_weights: Tensor | None = None
    capture: CaptureFn | None = None

    def apply(self, g: Tensor) -> Tensor:
        """Apply the override and the mask to router weights ``g`` (..., H)."""
        if self.forced_weights is not None:
            forced = self.forced_weights.to(device=g.device, dtype=g.dtype)
            g = forced.expand_as(g)
        if self.head_mask is not None:
            g = g * self.head_mask.to(device=g.device, dtype=g.dtype)
            if self.renormalize:
                g = g / g.sum(-1, keepdim=True).clamp_min(torch.finfo(g.dtype).tiny)
        return g


#: Routing controls of the current context, ``{layer: control}`` (set only by :func:`scoped_routing`).
_SCOPED_ROUTING: ContextVar[Mapping[nn.Module, RoutingControl | None]] = ContextVar(
    "crab_ilora_scoped_routing", default=MappingProxyType({})
)
_UNSET = object()


@contextmanager
def scoped_routing(controls: Mapping[nn.Module, RoutingControl | None]) -> Iterator[None]:
    """Use ``controls[layer]`` as each layer's routing inside the block, in this context only.

    Scopes nest (an inner scope overrides the layers it names, the others keep the outer
    controls) and are undone on exit, also after an exception. Other threads / asyncio tasks keep
    seeing their own scopes (or the layers' defaults): two requests on one shared model cannot see
    each other's interventions.

    Args:
        controls: ``{ILoraLinear: RoutingControl or None}``; None removes a control in the scope.
    """
    token = _SCOPED_ROUTING.set(MappingProxyType({**_SCOPED_ROUTING.get(), **controls}))
    try:
        yield
    finally:
        _SCOPED_ROUTING.reset(token)


class ILoraLinear(nn.Module, LoraLayer):
    """I-LoRA wrapper of an ``nn.Linear`` usable as a PEFT custom LoRA module.

    Args:
        base_layer: the frozen ``nn.Linear`` (in -> out).
        adapter_name: PEFT adapter name (usually ``"default"``).
        config: a ``LoraConfig``; ``num_heads`` is read from it (see :class:`ILoraPeftConfig`).
        r: rank.
        lora_alpha: scaling numerator (scaling = alpha / r, or alpha / sqrt(r) with rslora).
        num_heads: optional explicit head count overriding ``config.num_heads``.
        **kwargs: other PEFT keywords (ignored).

    Shapes: input (..., in) with any number of leading dims (2-D and 3-D alike); output (..., out).
    """

    adapter_layer_names = (*LoraLayer.adapter_layer_names, "lora_route")
    other_param_names = (*LoraLayer.other_param_names, "num_heads")

    def __init__(
        self,
        base_layer: nn.Module,
        adapter_name: str,
        config: LoraConfig,
        r: int = 0,
        lora_alpha: int = 1,
        num_heads: int | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__()
        kwargs.pop("lora_dropout", None)
        LoraLayer.__init__(self, base_layer, ephemeral_gpu_offload=False)
        if not isinstance(self.get_base_layer(), nn.Linear):
            raise TypeError(f"ILoraLinear wraps nn.Linear, got {type(self.get_base_layer()).__name__}")
        if getattr(config, "fan_in_fan_out", False):
            raise ValueError("ILoraLinear does not support fan_in_fan_out=True")
        self.fan_in_fan_out = False
        self.lora_route = nn.ModuleDict({})
        self.num_heads: dict[str, int] = {}
        self._routing: RoutingControl | None = None
        self.ilora_name = ""
        #: optional inference fast path ``fn(layer, result, x, adapter) -> Tensor | None`` (None: eager);
        #: see :mod:`crab_core.model.ilora_fused`
        self.fast_path: Callable[..., Tensor | None] | None = None
        self._active_adapter = adapter_name
        self.update_layer(adapter_name, r, lora_alpha=lora_alpha, config=config, num_heads=num_heads)

    @property
    def routing(self) -> RoutingControl | None:
        """The control in force for this layer: the current :func:`scoped_routing` scope's, else
        the layer's default (None)."""
        ctl = _SCOPED_ROUTING.get().get(self, _UNSET)
        return self._routing if ctl is _UNSET else ctl

    @routing.setter
    def routing(self, control: RoutingControl | None) -> None:
        """Set the layer's default control, seen by every caller outside a scope."""
        self._routing = control

    @classmethod
    def wrap(
        cls,
        base_layer: nn.Linear,
        r: int,
        alpha: float,
        dropout: float,
        num_heads: int,
        adapter_name: str = "default",
    ) -> ILoraLinear:
        """Wrap a plain ``nn.Linear`` outside of PEFT injection (tests, benchmarks)."""
        cfg = ILoraPeftConfig(r=r, lora_alpha=alpha, lora_dropout=dropout, num_heads=num_heads)
        return cls(base_layer, adapter_name, config=cfg, r=r, lora_alpha=alpha)

    def update_layer(
        self,
        adapter_name: str,
        r: int,
        lora_alpha: int,
        config: LoraConfig,
        num_heads: int | None = None,
        **kwargs: Any,
    ) -> None:
        """Create (or replace) the I-LoRA parameters of one adapter."""
        heads = num_heads if num_heads is not None else getattr(config, "num_heads", None)
        if heads is None:
            raise ValueError("I-LoRA needs num_heads: use ILoraPeftConfig or pass num_heads=")
        if r <= 0 or heads <= 0:
            raise ValueError(f"r and num_heads must be positive, got r={r}, num_heads={heads}")
        if config.use_dora or config.lora_bias:
            raise ValueError("I-LoRA supports neither DoRA nor lora_bias")
        self.r[adapter_name] = r
        self.lora_alpha[adapter_name] = lora_alpha
        self.num_heads[adapter_name] = int(heads)
        p = config.lora_dropout
        self.lora_dropout[adapter_name] = nn.Dropout(p=p) if p > 0.0 else nn.Identity()
        self.lora_A[adapter_name] = nn.Linear(self.in_features, r, bias=False)
        self.lora_B[adapter_name] = nn.Linear(heads * r, self.out_features, bias=False)
        self.lora_route[adapter_name] = nn.Linear(self.in_features, heads, bias=False)
        self.lora_bias[adapter_name] = False
        self.use_rslora[adapter_name] = config.use_rslora
        self.use_dora[adapter_name] = False
        self.scaling[adapter_name] = lora_alpha / (math.sqrt(r) if config.use_rslora else r)
        if config.init_lora_weights:
            self.reset_lora_parameters(adapter_name, config.init_lora_weights)
        self._move_adapter_to_device_of_base_layer(adapter_name)
        self.set_adapter(self.active_adapters, inference_mode=config.inference_mode)

    def reset_lora_parameters(self, adapter_name: str, init_lora_weights: Any = True) -> None:
        """Reference init: A and router Kaiming-uniform (a=sqrt(5)), every B head zero."""
        if adapter_name not in self.lora_A:
            return
        nn.init.kaiming_uniform_(self.lora_A[adapter_name].weight, a=math.sqrt(5))
        nn.init.kaiming_uniform_(self.lora_route[adapter_name].weight, a=math.sqrt(5))
        nn.init.zeros_(self.lora_B[adapter_name].weight)

    def head_weight(self, adapter_name: str = "default") -> Tensor:
        """The B heads as a (H, out, r) view of the stacked weight."""
        w = self.lora_B[adapter_name].weight
        h, r = self.num_heads[adapter_name], self.r[adapter_name]
        return w.view(self.out_features, h, r).permute(1, 0, 2)

    def merge(self, safe_merge: bool = False, adapter_names: list[str] | None = None) -> None:
        """Not possible: the routing weights depend on the input."""
        raise NotImplementedError("I-LoRA cannot be merged into the base weight (input-dependent routing)")

    def unmerge(self) -> None:
        """Nothing to undo (merging is never performed)."""

    def forward(self, x: Tensor, *args: Any, **kwargs: Any) -> Tensor:
        """Base output plus the routed I-LoRA update of every active adapter.

        Args:
            x: (..., in).

        Returns:
            (..., out).
        """
        if kwargs.pop("adapter_names", None) is not None:
            raise NotImplementedError("I-LoRA does not support mixed-adapter batches")
        result = self.base_layer(x, *args, **kwargs)
        if self.disable_adapters:
            return result
        for adapter in self.active_adapters:
            if adapter in self.lora_A:
                result = self._add_adapter(result, x, adapter)
        return result

    def _add_adapter(self, result: Tensor, x: Tensor, adapter: str) -> Tensor:
        if self.fast_path is not None:
            fused = self.fast_path(self, result, x, adapter)
            if fused is not None:
                return fused
        lora_a, lora_b = self.lora_A[adapter], self.lora_B[adapter]
        x = self._cast_input_dtype(x, lora_a.weight.dtype)
        logits, z = self._route_and_down(x, adapter)  # (..., H), (..., r): A computed once
        g = F.softmax(logits, dim=-1, dtype=torch.float32).to(result.dtype)
        ctl = self.routing
        w = g if ctl is None else ctl.apply(g)
        if ctl is not None and ctl.capture is not None:
            self._capture(ctl.capture, adapter, g, w, z)
        u = (w * self.scaling[adapter]).unsqueeze(-1) * z.unsqueeze(-2).to(w.dtype)  # (..., H, r)
        return self._add_heads(result, u.flatten(-2), lora_b.weight)

    @staticmethod
    def _add_heads(result: Tensor, u: Tensor, b_stacked: Tensor) -> Tensor:
        """``result + u @ b_stacked^T`` as one GEMM accumulating into ``result`` (..., out).

        Without autograd recording it accumulates in place into the fresh base output (no new
        (..., out) buffer); with autograd it is out of place (an in-place update of a view makes
        backward about twice as slow).
        """
        out_shape = result.shape
        flat = result.reshape(-1, out_shape[-1])
        u2 = u.reshape(-1, u.shape[-1]).to(b_stacked.dtype)
        if flat.dtype != b_stacked.dtype:
            return result + (u2 @ b_stacked.t()).to(result.dtype).view(out_shape)
        if torch.is_grad_enabled() and (flat.requires_grad or u2.requires_grad or b_stacked.requires_grad):
            return torch.addmm(flat, u2, b_stacked.t()).view(out_shape)
        return flat.addmm_(u2, b_stacked.t()).view(out_shape)

    def _route_and_down(self, x: Tensor, adapter: str) -> tuple[Tensor, Tensor]:
        """Router logits R x (..., H) and z = A dropout(x) (..., r).

        Without an active dropout both read the same x, so they share one GEMM on [A; R]
        (x is read once; in backward one grad-input GEMM and no extra add).
        """
        drop = self.lora_dropout[adapter]
        lora_a, route = self.lora_A[adapter], self.lora_route[adapter]
        if isinstance(drop, nn.Dropout) and drop.training and drop.p > 0:
            return route(x), lora_a(drop(x))
        r = lora_a.weight.shape[0]
        zr = F.linear(x, torch.cat([lora_a.weight, route.weight], dim=0))
        return zr[..., r:], zr[..., :r]

    @torch.no_grad()
    def _capture(self, fn: CaptureFn, adapter: str, g: Tensor, w: Tensor, z: Tensor) -> None:
        """Call ``fn`` with the router readout and per-head norms ||w_h s B_h z|| (..., H).

        ``||B_h z||^2 = z^T (B_h^T B_h) z``: the per-head Gram matrices (H, r, r) are cached until
        the B weights change, so capture costs one small GEMM per call.
        """
        gram = self._gram(adapter)  # (r, H*r): [G_0 | ... | G_{H-1}]
        zf = z.float()
        h, r = self.num_heads[adapter], self.r[adapter]
        sq = ((zf @ gram).unflatten(-1, (h, r)) * zf.unsqueeze(-2)).sum(-1).clamp_min(0.0)
        norms = w.float().abs() * self.scaling[adapter] * sq.sqrt()
        name = self.ilora_name if adapter == "default" else f"{self.ilora_name}@{adapter}"
        fn(name, g.detach(), norms.to(g.dtype))

    def _gram(self, adapter: str) -> Tensor:
        weight = self.lora_B[adapter].weight
        key = (adapter, weight.data_ptr(), weight._version, weight.dtype, weight.device)
        cache = self.__dict__.setdefault("_gram_cache", {})
        if cache.get("key") != key:
            heads = self.head_weight(adapter).detach().float()  # (H, out, r)
            gram = heads.transpose(1, 2) @ heads  # (H, r, r)
            cache["key"], cache["value"] = key, gram.permute(1, 0, 2).reshape(gram.shape[1], -1)
        return cache["value"]

    def __repr__(self) -> str:
        return "ilora." + super().__repr__()
