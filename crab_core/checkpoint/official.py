"""Loading the released Crab checkpoints (and the base LLaMA / CLIP / BEATs weights).

Released files (crab-reference.md section 5): ``finetune_weights.bin`` (I-LoRA + projectors),
``avs_finetune_weights.bin`` / ``avss_finetune_weights.bin`` (seg module + full embeddings and
``lm_head``) and the pretrain files (``visual_pretrain.bin``, ``audio_pretrain.bin``,
``segmentation_pretrain.bin``). They hold only part of the model; the rest comes from the base
models. Every load returns a :class:`LoadReport`; shape mismatches and unknown keys raise.

Compatibility (``CompatConfig(mode="reference")``, the crab-7b default) makes the model compute
what the released weights were trained to compute: fixed fusion scalars, the dead
query-generator layer, summed mask losses. Things the files cannot restore are reported as notes
(docs/deviations.md): the random positional-encoding buffers of the mask decoder and the
added-token rows of ``embed_tokens`` / ``lm_head`` when only ``finetune_weights.bin`` is loaded.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from pathlib import Path

import torch

from ..config import CrabConfig
from ..errors import CheckpointError
from .convert import LoadReport, load_mapped, raise_on_errors, reference_to_ours
from .io import read_state_dict, refusal_message

log = logging.getLogger(__name__)

PE_SEED = 42
EMBED_KEYS = ("llm.base_model.model.model.embed_tokens.weight", "llm.base_model.model.lm_head.weight")


def geometry_from_state_dict(sd: dict[str, torch.Tensor]) -> dict[str, int]:
    """Read the I-LoRA head count and the seg query count off the tensors (when present)."""
    out: dict[str, int] = {}
    for key, value in sd.items():
        if key.endswith("lora_route.weight") and "num_heads" not in out:
            out["num_heads"] = int(value.shape[0])
        elif key.endswith("mask_decoder.avs_query_tokens.weight"):
            out["num_queries"] = int(value.shape[0])
    return out


def config_for_files(config: CrabConfig, paths: Sequence[str | Path]) -> CrabConfig:
    """Return ``config`` with head and query counts taken from the checkpoint tensors.

    Reference-format files have no per-unit index embedding and no image grid, so ``unit_embeddings``
    and ``image_grid`` are set to 0, and their seg module is the reference's query decoder
    (``SegConfig.decoder="reference"``).
    """
    geo: dict[str, int] = {}
    for p in paths:
        geo.update(geometry_from_state_dict(_read(p)))
    lora, seg = config.lora, config.seg
    if "num_heads" in geo and geo["num_heads"] != lora.num_heads:
        log.info("I-LoRA heads from checkpoint: %d (config had %d)", geo["num_heads"], lora.num_heads)
        lora = dataclasses.replace(lora, num_heads=geo["num_heads"])
    if "num_queries" in geo and geo["num_queries"] != seg.num_queries:
        log.info("seg queries from checkpoint: %d (config had %d)", geo["num_queries"], seg.num_queries)
        seg = dataclasses.replace(seg, num_queries=geo["num_queries"])
    if seg.decoder != "reference":
        seg = dataclasses.replace(seg, decoder="reference")
    vl = dataclasses.replace(config.vl_qformer, unit_embeddings=0, image_grid=0)
    al = dataclasses.replace(config.al_qformer, unit_embeddings=0)
    return config.replace(lora=lora, seg=seg, vl_qformer=vl, al_qformer=al)


_CACHE: dict[str, dict[str, torch.Tensor]] = {}


def _read(path: str | Path) -> dict[str, torch.Tensor]:
    key = str(Path(path).resolve())
    if key not in _CACHE:
        _CACHE.clear()  # keep at most one file in memory
        _CACHE[key] = read_state_dict(path)
    return _CACHE[key]


def load_reference_files(
    model: torch.nn.Module, paths: Sequence[str | Path], report: LoadReport | None = None
) -> LoadReport:
    """Load reference-format files (any of the released ones) into ``model``, in order.

    Raises:
        CheckpointError: unreadable file, or any unexpected / shape-mismatched key.
    """
    report = report or LoadReport()
    for path in paths:
        sd = _read(path)
        try:
            ours, dropped, unexpected = reference_to_ours(sd)
        except CheckpointError as exc:
            raise CheckpointError(f"{path}: {exc}") from exc
        if not ours and not unexpected:
            raise CheckpointError(f"{path}: contains no tensors")
        part = LoadReport(sources=[str(path)], dropped=dropped, unexpected=list(unexpected))
        load_mapped(model, ours, part, allow_partial_rows=EMBED_KEYS)
        raise_on_errors(part, str(path))
        _merge(report, part)
    _CACHE.clear()
    _finish_report(model, report)
    return report


def _merge(into: LoadReport, part: LoadReport) -> None:
    into.sources += part.sources
    into.loaded = sorted(set(into.loaded) | set(part.loaded))
    into.dropped += part.dropped
    into.notes += part.notes


def _finish_report(model: torch.nn.Module, report: LoadReport) -> None:
    loaded = set(report.loaded)
    report.missing = sorted(k for k in model.state_dict() if k not in loaded and "rotary_emb" not in k)
    pe = [k for k in report.missing if k.endswith("positional_encoding_gaussian_matrix")]
    if pe and any(k.startswith("seg_module.") for k in loaded):
        reset_pe_buffers(model)
        report.notes.append(
            "seg positional-encoding buffers are not saved by the reference; drawn from "
            f"N(0,1) with seed {PE_SEED} (deterministic, not the training values)"
        )
    if any(k.startswith("llm.") and "lora_" in k for k in loaded) and not any(
        k in loaded for k in EMBED_KEYS
    ):
        report.notes.append(
            "added-token rows (<video_start>, <mask_0>, ...) of embed_tokens/lm_head are not in "
            "finetune_weights.bin; load the base LLM and an AVS file, or they stay as initialised"
        )


def reset_pe_buffers(model: torch.nn.Module, seed: int = PE_SEED) -> None:
    """Deterministically redraw the mask decoder's random-PE matrices (absent from official files)."""
    gen = torch.Generator().manual_seed(seed)
    for name, buf in model.named_buffers():
        if name.endswith("positional_encoding_gaussian_matrix"):
            buf.copy_(torch.randn(buf.shape, generator=gen).to(buf.dtype))


def load_base_llm(model: torch.nn.Module, files: Sequence[str | Path], report: LoadReport) -> LoadReport:
    """Load HF-format LLaMA shards (``model.layers.…``, ``lm_head.weight``) into the wrapped LLM."""
    return load_reference_files(model, files, report)


def load_hf_clip(model: torch.nn.Module, files: Sequence[str | Path], report: LoadReport) -> LoadReport:
    """Load CLIP vision weights from a HF ``CLIPModel`` / ``CLIPVisionModel`` safetensors file."""
    for path in files:
        sd = read_state_dict(path)
        ours = {}
        for k, v in sd.items():
            k = k.removeprefix("vision_model.") if k.startswith("vision_model.") else None
            if k is not None:
                ours["visual_encoder.vision_tower." + k] = v
        if not ours:
            raise CheckpointError(f"{path}: no CLIP vision_model.* tensors found")
        part = LoadReport(sources=[str(path)])
        load_mapped(model, ours, part)
        raise_on_errors(part, str(path))
        _merge(report, part)
    return report


def load_beats_checkpoint(model: torch.nn.Module, path: str | Path, report: LoadReport) -> LoadReport:
    """Load a BEATs release file (``{'cfg': ..., 'model': state_dict}``) with ``weights_only=True``."""
    from ..model.beats import reference_to_ours as beats_to_ours

    p = Path(path)
    try:
        obj = torch.load(str(p), map_location="cpu", weights_only=True)
    except Exception as exc:
        raise CheckpointError(refusal_message(p, exc)) from exc
    sd = obj.get("model") if isinstance(obj, dict) else None
    if not isinstance(sd, dict):
        raise CheckpointError(f"{p}: not a BEATs checkpoint (no 'model' state dict)")
    mapped, dropped = beats_to_ours(sd)
    part = LoadReport(sources=[str(p)], dropped=dropped)
    load_mapped(model, {"audio_encoder." + k: v for k, v in mapped.items()}, part)
    raise_on_errors(part, str(p))
    _merge(report, part)
    return report
