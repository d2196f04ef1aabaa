"""Map reference / official checkpoint keys onto our modules, with a full report.

Reference names (``base_model.model.model.vl_projector.…``) are routed by prefix to the
component that owns them; each component's ``reference_to_ours`` renames its keys. Nothing is
loaded silently: :class:`LoadReport` lists loaded, missing, unexpected, shape-mismatched and
deliberately dropped keys.
"""

from __future__ import annotations

import importlib
import logging
from collections import defaultdict
from dataclasses import dataclass, field

import torch
from torch import nn

from ..errors import CheckpointError

log = logging.getLogger(__name__)

PEFT_PREFIX = "base_model.model."

# (reference prefix after PEFT_PREFIX, our module attribute, component module, extra kwargs)
ROUTES: tuple[tuple[str, str, str, dict], ...] = (
    ("model.visual_encoder.", "visual_encoder", "crab_core.model.vision", {}),
    ("model.audio_encoder.audio_encoder.", "audio_encoder", "crab_core.model.beats", {}),
    ("model.vl_projector.", "vl_projector", "crab_core.model.projector", {"modality": "visual"}),
    ("model.al_projector.", "al_projector", "crab_core.model.projector", {"modality": "audio"}),
    ("model.seg_module.", "seg_module", "crab_core.model.seg.seg_module", {}),
)
LLM_ATTR = "llm"
# Our LLM is a PeftModel: its keys are "base_model.model." + the injected LlamaForCausalLM keys.
LLM_ROOT = "base_model.model."


@dataclass
class LoadReport:
    """What a load did. Keys are ours (``component.…``) except ``unexpected``/``dropped``."""

    sources: list[str] = field(default_factory=list)
    loaded: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    mismatched: list[tuple[str, tuple, tuple]] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def missing_by_component(self) -> dict[str, int]:
        out: dict[str, int] = defaultdict(int)
        for k in self.missing:
            out[k.split(".", 1)[0]] += 1
        return dict(out)

    def summary(self) -> str:
        lines = [
            f"sources: {', '.join(self.sources) or '-'}",
            f"loaded: {len(self.loaded)} tensors; dropped by design: {len(self.dropped)}",
        ]
        miss = self.missing_by_component()
        if miss:
            lines.append("not in the file(s): " + ", ".join(f"{c} {n}" for c, n in sorted(miss.items())))
        if self.unexpected:
            lines.append(f"UNEXPECTED keys ({len(self.unexpected)}): {self.unexpected[:8]}")
        if self.mismatched:
            lines.append(f"SHAPE MISMATCH ({len(self.mismatched)}): {self.mismatched[:4]}")
        lines += [f"note: {n}" for n in self.notes]
        return "\n".join(lines)


def reference_to_ours(sd: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], list[str], list[str]]:
    """Rename a reference/official state dict to our top-level keys.

    Returns:
        ``(ours, dropped, unexpected)``: our keys (``vl_projector.…``, ``llm.…``), reference
        keys dropped by design, and keys no component claims.
    """
    groups: dict[str, dict[str, torch.Tensor]] = defaultdict(dict)
    unexpected: list[str] = []
    original: dict[str, str] = {}
    for key, value in sd.items():
        k = key[len(PEFT_PREFIX) :] if key.startswith(PEFT_PREFIX) else key
        original[k] = key
        for prefix, attr, _, _ in ROUTES:
            if k.startswith(prefix):
                groups[attr][k[len(prefix) :]] = value
                break
        else:
            if k.startswith("model.") or k.startswith("lm_head."):
                groups[LLM_ATTR][k] = value
            else:
                unexpected.append(key)
    ours: dict[str, torch.Tensor] = {}
    dropped: list[str] = []
    for prefix, attr, module, kwargs in ROUTES:
        if attr in groups:
            mapped, drop = _component(module).reference_to_ours(groups[attr], **kwargs)
            ours.update({f"{attr}.{k}": v for k, v in mapped.items()})
            dropped += [original.get(prefix + d, prefix + d) for d in drop]
    if LLM_ATTR in groups:
        ours.update({f"{LLM_ATTR}.{k}": v for k, v in llm_reference_to_ours(groups[LLM_ATTR]).items()})
    return ours, dropped, unexpected


def llm_reference_to_ours(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """LLaMA + I-LoRA keys (``model.layers.…``, ``lm_head.weight``) to our PeftModel keys."""
    from ..model import ilora_inject

    lora = {k: v for k, v in sd.items() if ".lora_" in k}
    out = {LLM_ROOT + ilora_inject.llm_key_to_injected(k): v for k, v in sd.items() if k not in lora}
    if lora:
        mapped, _ = ilora_inject.reference_to_ours(lora)
        out.update({LLM_ROOT + k: v for k, v in mapped.items()})
    return out


def llm_ours_to_reference(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Inverse of :func:`llm_reference_to_ours`."""
    from ..model import ilora_inject

    plain = {k.removeprefix(LLM_ROOT): v for k, v in sd.items()}
    lora = {k: v for k, v in plain.items() if ".lora_" in k}
    out = {k.replace(".base_layer.", "."): v for k, v in plain.items() if k not in lora}
    if lora:
        out.update(ilora_inject.ours_to_reference(lora))
    return out


def ours_to_reference(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Inverse mapping: our state dict to the reference's PeftModel key names."""
    out: dict[str, torch.Tensor] = {}
    groups: dict[str, dict[str, torch.Tensor]] = defaultdict(dict)
    for key, value in sd.items():
        attr, rest = key.split(".", 1)
        groups[attr][rest] = value
    for prefix, attr, module, kwargs in ROUTES:
        if attr in groups:
            back = _component(module).ours_to_reference(groups[attr], **kwargs)
            out.update({PEFT_PREFIX + prefix + k: v for k, v in back.items()})
    if LLM_ATTR in groups:
        out.update({PEFT_PREFIX + k: v for k, v in llm_ours_to_reference(groups[LLM_ATTR]).items()})
    return out


def _component(name: str):
    return importlib.import_module(name)


def load_mapped(
    model: nn.Module,
    ours: dict[str, torch.Tensor],
    report: LoadReport,
    allow_partial_rows: tuple[str, ...] = (),
) -> LoadReport:
    """Copy mapped tensors into ``model``; shape mismatches are collected, never ignored.

    Args:
        allow_partial_rows: our keys (e.g. the embedding) where a file tensor with fewer rows
            fills the first rows (a base-vocabulary LLaMA file into the resized vocabulary).
    """
    state = model.state_dict()
    with torch.no_grad():
        for key, value in ours.items():
            if key not in state:
                report.unexpected.append(key)
                continue
            target = state[key]
            if tuple(target.shape) == tuple(value.shape):
                target.copy_(value.to(target.dtype))
                report.loaded.append(key)
            elif (
                key in allow_partial_rows
                and value.shape[1:] == target.shape[1:]
                and value.shape[0] < target.shape[0]
            ):
                target[: value.shape[0]].copy_(value.to(target.dtype))
                report.loaded.append(key)
                report.notes.append(
                    f"{key}: file has {value.shape[0]} rows, model {target.shape[0]}; "
                    "the added-token rows keep their initialisation"
                )
            else:
                report.mismatched.append((key, tuple(value.shape), tuple(target.shape)))
    loaded = set(report.loaded)
    report.missing = sorted(k for k in state if k not in loaded and not _is_nonpersistent(k))
    return report


def _is_nonpersistent(key: str) -> bool:
    return key.endswith("rotary_emb.inv_freq")


def raise_on_errors(report: LoadReport, where: str) -> None:
    """Raise :class:`CheckpointError` when a load had unexpected or mismatched keys."""
    problems = []
    if report.mismatched:
        k, f, m = report.mismatched[0]
        problems.append(
            f"{len(report.mismatched)} shape mismatch(es), e.g. {k}: file {list(f)} vs model {list(m)}"
        )
    if report.unexpected:
        problems.append(f"{len(report.unexpected)} unexpected key(s), e.g. {report.unexpected[0]}")
    if problems:
        raise CheckpointError(f"{where}: " + "; ".join(problems))
