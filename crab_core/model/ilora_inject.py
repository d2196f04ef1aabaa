"""Inject I-LoRA into an LLM through PEFT, enumerate the layers, and convert reference keys.

Key root. Our LoRA keys are relative to the **LLM itself** (the ``LlamaForCausalLM`` after
injection, i.e. ``peft_model.get_base_model()``), the same root as its own keys
``model.embed_tokens.weight`` / ``lm_head.weight``. After injection a wrapped Linear holds::

    model.layers.0.self_attn.q_proj.base_layer.weight        # frozen base (was ...q_proj.weight)
    model.layers.0.self_attn.q_proj.lora_A.default.weight    # (r, in)
    model.layers.0.self_attn.q_proj.lora_B.default.weight    # (out, H*r) = [B_0 | ... | B_{H-1}]
    model.layers.0.self_attn.q_proj.lora_route.default.weight  # (H, in)

so ``peft_model.get_base_model().load_state_dict(ours, strict=False)`` loads them, and the
``PeftModel``'s own keys are ``"base_model.model." + key``. :func:`llm_key_to_injected` renames
plain LLM keys of wrapped Linears (``...q_proj.weight`` -> ``...q_proj.base_layer.weight``).

The reference keys taken by :func:`reference_to_ours` are relative to the same root (the
reference's ``base_model.model.`` prefix stripped), e.g. ``model.layers.0.self_attn.q_proj.lora_A.weight``,
``...lora_B{h}.weight`` (out, r) and ``...lora_route.weight`` (H, in).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Iterator
from contextlib import contextmanager

import torch
from peft import PeftModel, get_peft_model
from torch import Tensor, nn

from crab_core.config import LORA_TARGETS
from crab_core.errors import CheckpointError
from crab_core.model.ilora import ILoraLinear, ILoraPeftConfig, RoutingControl, scoped_routing

logger = logging.getLogger(__name__)

_REF_KEY = re.compile(r"^(?P<prefix>(?:.*\.)?)lora_(?P<kind>A|route|B(?P<head>\d+))\.weight$")
_OUR_KEY = re.compile(r"^(?P<prefix>(?:.*\.)?)lora_(?P<kind>A|B|route)\.(?P<adapter>[^.]+)\.weight$")
_NAME_PREFIXES = ("base_model.model.", "model.")


def inject_ilora(
    model: nn.Module,
    r: int,
    alpha: float,
    dropout: float,
    num_heads: int,
    target_modules: Iterable[str] = LORA_TARGETS,
    adapter_name: str = "default",
) -> PeftModel:
    """Wrap every target ``nn.Linear`` of ``model`` with :class:`ILoraLinear` via ``get_peft_model``.

    Matching is by module-name suffix, as in the reference. Everything except the LoRA tensors is
    frozen (PEFT's default). Apply this before adding multimodal modules whose Linears share the
    target names (CLIP's ``q_proj``), as the reference does.

    Args:
        model: the LLM (e.g. ``LlamaForCausalLM``); modified in place and wrapped.
        r: LoRA rank. alpha: scaling numerator (scaling = alpha / r). dropout: LoRA dropout.
        num_heads: number of B heads H.
        target_modules: Linear names to wrap.
        adapter_name: PEFT adapter name.

    Returns:
        The ``PeftModel`` (``PeftModelForCausalLM`` when ``model`` can generate).
    """
    cfg = ILoraPeftConfig(
        r=r,
        lora_alpha=alpha,
        lora_dropout=dropout,
        num_heads=num_heads,
        target_modules=list(target_modules),
        bias="none",
        task_type="CAUSAL_LM" if hasattr(model, "generate") else None,
    )
    cfg._register_custom_module({nn.Linear: ILoraLinear})
    peft_model = get_peft_model(model, cfg, adapter_name=adapter_name)
    n = sum(1 for _ in iter_ilora_layers(peft_model))
    logger.info("I-LoRA injected into %d Linear layers (H=%d, r=%d, alpha=%s)", n, num_heads, r, alpha)
    return peft_model


def load_ilora_adapter(
    model: nn.Module, path: str, adapter_name: str = "default", is_trainable: bool = False
) -> PeftModel:
    """Load an I-LoRA adapter saved with ``peft_model.save_pretrained(path)`` onto ``model``.

    PEFT does not serialise custom-module registrations, so the config is rebuilt with
    :meth:`ILoraPeftConfig.from_adapter_dir` (which registers :class:`ILoraLinear`).
    """
    cfg = ILoraPeftConfig.from_adapter_dir(path)
    return PeftModel.from_pretrained(
        model, path, adapter_name=adapter_name, is_trainable=is_trainable, config=cfg
    )


def _short_name(name: str) -> str:
    for prefix in _NAME_PREFIXES:
        name = name.removeprefix(prefix)
    return name


def iter_ilora_layers(model: nn.Module) -> Iterator[tuple[str, ILoraLinear]]:
    """Yield ``(name, layer)`` for every I-LoRA layer, e.g. ``("layers.0.self_attn.q_proj", ...)``.

    Names drop the ``base_model.model.`` and ``model.`` prefixes. Each layer's ``ilora_name`` is
    set to the yielded name (it labels capture callbacks).
    """
    for full_name, module in model.named_modules():
        if isinstance(module, ILoraLinear):
            name = _short_name(full_name)
            module.ilora_name = name
            yield name, module


def set_routing(model: nn.Module, control: RoutingControl | None) -> None:
    """Set ``control`` as every I-LoRA layer's default (seen by every caller and thread); ``None``
    removes it. Scoped interventions use :func:`routing`."""
    for _, layer in iter_ilora_layers(model):
        layer.routing = control


@contextmanager
def routing(model: nn.Module, control: RoutingControl) -> Iterator[RoutingControl]:
    """Context manager: use ``control`` in every I-LoRA layer inside the block, in this context only
    (:func:`crab_core.model.ilora.scoped_routing`: other threads do not see it)."""
    with scoped_routing({layer: control for _, layer in iter_ilora_layers(model)}):
        yield control


def llm_key_to_injected(key: str, target_modules: Iterable[str] = LORA_TARGETS) -> str:
    """Rename a plain LLM key of a wrapped Linear to its name after injection.

    ``model.layers.0.self_attn.q_proj.weight`` -> ``model.layers.0.self_attn.q_proj.base_layer.weight``;
    other keys (``lm_head.weight``, norms, LoRA keys) are returned unchanged.
    """
    parts = key.split(".")
    if len(parts) >= 2 and parts[-1] in ("weight", "bias") and parts[-2] in set(target_modules):
        return ".".join([*parts[:-1], "base_layer", parts[-1]])
    return key


def reference_to_ours(
    sd: dict[str, Tensor], adapter_name: str = "default"
) -> tuple[dict[str, Tensor], list[str]]:
    """Map reference I-LoRA keys to ours (same root; see the module docstring).

    ``X.lora_A.weight`` -> ``X.lora_A.<adapter>.weight``; ``X.lora_route.weight`` ->
    ``X.lora_route.<adapter>.weight``; ``X.lora_B{0..H-1}.weight`` (out, r) are concatenated along
    dim 1 into ``X.lora_B.<adapter>.weight`` (out, H*r). ``X`` may be empty (a stand-alone layer).

    Returns:
        (our state dict, dropped reference keys). Nothing is dropped.

    Raises:
        CheckpointError: a key that is not an I-LoRA key, missing/non-contiguous heads, or a head
            count that disagrees with ``lora_route``.
    """
    out: dict[str, Tensor] = {}
    heads: dict[str, dict[int, Tensor]] = {}
    for key, value in sd.items():
        m = _REF_KEY.match(key)
        if m is None:
            raise CheckpointError(f"not a reference I-LoRA key: {key!r}")
        prefix, kind = m["prefix"], m["kind"]
        if m["head"] is not None:
            heads.setdefault(prefix, {})[int(m["head"])] = value
        else:
            out[f"{prefix}lora_{kind}.{adapter_name}.weight"] = value
    for prefix, by_head in heads.items():
        n = len(by_head)
        if sorted(by_head) != list(range(n)):
            raise CheckpointError(f"{prefix}lora_B heads are not 0..{n - 1}: {sorted(by_head)}")
        route = sd.get(f"{prefix}lora_route.weight")
        if route is not None and route.shape[0] != n:
            raise CheckpointError(f"{prefix}lora_route.weight has {route.shape[0]} rows but {n} B heads")
        out[f"{prefix}lora_B.{adapter_name}.weight"] = torch.cat([by_head[h] for h in range(n)], dim=1)
    return out, []


def ours_to_reference(sd: dict[str, Tensor]) -> dict[str, Tensor]:
    """Inverse of :func:`reference_to_ours` (any adapter name; H read from ``lora_route``).

    Raises:
        CheckpointError: a non-I-LoRA key, or a ``lora_B`` without its ``lora_route``.
    """
    out: dict[str, Tensor] = {}
    for key, value in sd.items():
        m = _OUR_KEY.match(key)
        if m is None:
            raise CheckpointError(f"not an I-LoRA key: {key!r}")
        prefix, kind, adapter = m["prefix"], m["kind"], m["adapter"]
        if kind != "B":
            out[f"{prefix}lora_{kind}.weight"] = value
            continue
        route = sd.get(f"{prefix}lora_route.{adapter}.weight")
        if route is None:
            raise CheckpointError(f"{key!r} needs {prefix}lora_route.{adapter}.weight to split the heads")
        n = route.shape[0]
        if value.shape[1] % n:
            raise CheckpointError(f"{key!r} width {value.shape[1]} is not a multiple of H={n}")
        for h, chunk in enumerate(value.chunk(n, dim=1)):
            out[f"{prefix}lora_B{h}.weight"] = chunk.contiguous()
    return out


def num_heads_from_state_dict(sd: dict[str, Tensor]) -> int:
    """H from the ``lora_route`` weights (reference or our names; all must agree).

    Raises:
        CheckpointError: no ``lora_route`` key, or inconsistent head counts.
    """
    counts = {v.shape[0] for k, v in sd.items() if re.search(r"lora_route(\.[^.]+)?\.weight$", k)}
    if not counts:
        raise CheckpointError("no lora_route weight in the state dict: cannot infer the I-LoRA head count")
    if len(counts) > 1:
        raise CheckpointError(f"inconsistent I-LoRA head counts in the state dict: {sorted(counts)}")
    return counts.pop()
