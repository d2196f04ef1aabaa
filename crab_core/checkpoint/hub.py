"""Assemble ``crab-7b`` from local files or Hugging Face Hub ids (downloads only when called).

Nothing here runs at import time. Each source is a local path or a Hub repo id; a Hub id is
fetched with ``huggingface_hub.snapshot_download`` into the normal HF cache.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import torch

from ..errors import CheckpointError
from ..presets import crab_7b
from .convert import LoadReport
from .official import (
    config_for_files,
    load_base_llm,
    load_beats_checkpoint,
    load_hf_clip,
    load_reference_files,
)

log = logging.getLogger(__name__)

DEFAULT_LLM = "meta-llama/Llama-2-7b-chat-hf"
DEFAULT_CLIP = "openai/clip-vit-large-patch14"
BEATS_FILE = "BEATs_iter3_plus_AS2M_finetuned_on_AS2M_cpt2.pt"


@dataclass
class OfficialSources:
    """Where the pieces of crab-7b come from (local paths or Hub repo ids).

    Attributes:
        llm: LLaMA-2-7B-chat in HF format (folder or repo id).
        clip: CLIP ViT-L/14 (folder or repo id).
        beats: the BEATs iter3+ ``.pt`` file.
        crab: released Crab files in load order, e.g. ``finetune_weights.bin`` then
            ``avs_finetune_weights.bin`` for segmentation.
    """

    llm: str = DEFAULT_LLM
    clip: str = DEFAULT_CLIP
    beats: str | None = None
    crab: tuple[str, ...] = ()


def resolve(source: str, patterns: tuple[str, ...] = ("*.safetensors", "*.json", "*.model")) -> Path:
    """Return a local folder/file for ``source``; download a Hub repo id only when not local."""
    p = Path(source).expanduser()
    if p.exists():
        return p
    if source.count("/") != 1:
        raise CheckpointError(f"{source}: not a local path and not a Hub repo id")
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(source, allow_patterns=list(patterns)))
    except Exception as exc:
        raise CheckpointError(f"{source}: cannot download from the Hub ({exc})") from exc


def _shards(folder: Path) -> list[Path]:
    files = sorted(folder.glob("*.safetensors")) if folder.is_dir() else [folder]
    if not files:
        raise CheckpointError(f"{folder}: no .safetensors weights found")
    return files


def load_crab_7b(
    sources: OfficialSources,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.bfloat16,
    with_seg: bool = True,
):
    """Build crab-7b (reference compat mode) and load every piece; returns ``(model, report)``.

    The model is built on the meta device and materialised on ``device`` in ``dtype``.
    """
    from ..model.builder import build_model, materialize

    crab_files = [str(resolve(f)) for f in sources.crab]
    cfg = config_for_files(crab_7b(), crab_files) if crab_files else crab_7b()
    model = build_model(cfg, with_seg=with_seg, device="meta")
    model = materialize(model, device, dtype)
    report = LoadReport()
    load_base_llm(model, _shards(resolve(sources.llm)), report)
    load_hf_clip(model, _shards(resolve(sources.clip)), report)
    if sources.beats:
        load_beats_checkpoint(model, resolve(sources.beats), report)
    load_reference_files(model, crab_files, report)
    log.info("crab-7b loaded:\n%s", report.summary())
    return model.eval(), report
