"""Assemble ``crab-7b`` from local files, Hugging Face Hub ids or URLs (downloads only when called).

Nothing here runs at import time. A source is one of:

- a local file or folder;
- a Hub repo id ``owner/name`` (a folder: ``snapshot_download`` of its weights and configs), e.g. the
  LLaMA and CLIP models; ``meta-llama/Llama-2-7b-chat-hf`` is gated: accept its licence on the Hub
  and set ``HF_TOKEN`` (huggingface_hub reads it from the environment);
- a file in a Hub repo ``owner/name/path/in/repo`` (``hf_hub_download``), e.g. the released Crab
  files ``ahsgdxhs/Crab/avs_finetune_weights.bin`` (:data:`OFFICIAL_CRAB_FILES`);
- an ``http(s)://`` or ``file://`` URL (downloaded once into :func:`cache_dir`), e.g. BEATs iter3+,
  which is released outside the Hub.

Downloads land in the normal HF cache (Hub sources) or in :func:`cache_dir` (URLs).
"""

from __future__ import annotations

import hashlib
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlparse

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
from .task_weights import TaskWeights, is_seg_file, load_task_weights

log = logging.getLogger(__name__)

DEFAULT_LLM = "meta-llama/Llama-2-7b-chat-hf"
DEFAULT_CLIP = "openai/clip-vit-large-patch14"
BEATS_FILE = "BEATs_iter3_plus_AS2M_finetuned_on_AS2M_cpt2.pt"
#: The Hub repo holding the released Crab weights.
OFFICIAL_REPO = "ahsgdxhs/Crab"
#: The released files: joint finetune (I-LoRA + projectors), the S4/MS3/Ref-AVS set, the AVSS set.
OFFICIAL_FILES = ("finetune_weights.bin", "avs_finetune_weights.bin", "avss_finetune_weights.bin")
OFFICIAL_CRAB_FILES = tuple(f"{OFFICIAL_REPO}/{f}" for f in OFFICIAL_FILES)
URL_SCHEMES = ("http://", "https://", "file://")


@dataclass
class OfficialSources:
    """Where the pieces of crab-7b come from (local paths, Hub ids, Hub files or URLs).

    Attributes:
        llm: LLaMA-2-7B-chat in HF format (folder or repo id; gated: needs ``HF_TOKEN``).
        clip: CLIP ViT-L/14 (folder or repo id).
        beats: the BEATs iter3+ ``.pt`` file (local path or URL).
        crab: released Crab files. Files without seg weights (``finetune_weights.bin``) are loaded
            in order for every task; the seg files are kept side by side and switched per task
            (:mod:`crab_core.checkpoint.task_weights`).
    """

    llm: str = DEFAULT_LLM
    clip: str = DEFAULT_CLIP
    beats: str | None = None
    crab: tuple[str, ...] = ()


def cache_dir() -> Path:
    """Where URL downloads go: ``$CRAB_CACHE``, else ``~/.cache/crab-studio``."""
    return Path(os.environ.get("CRAB_CACHE") or Path.home() / ".cache" / "crab-studio").expanduser()


def _hub_hint(exc: Exception) -> str:
    text = f"{type(exc).__name__}: {exc}".splitlines()[0]
    if any(s in text for s in ("Gated", "401", "403", "Unauthorized", "restricted")):
        text += " (a gated repo: accept its licence on huggingface.co and set HF_TOKEN)"
    return text


def download_url(url: str) -> Path:
    """Download ``url`` once into :func:`cache_dir` (the name keeps the URL's file name)."""
    name = Path(unquote(urlparse(url).path)).name or "download"
    target = cache_dir() / f"{hashlib.sha1(url.encode()).hexdigest()[:12]}-{name}"
    if target.is_file() and target.stat().st_size > 0:
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    log.info("downloading %s -> %s", url.split("?")[0], target)
    try:
        torch.hub.download_url_to_file(url, str(target), progress=False)
    except Exception as exc:  # URLError, HTTPError, OSError, ValueError
        raise CheckpointError(f"{url.split('?')[0]}: cannot download ({exc})") from exc
    return target


def hub_file(repo_id: str, filename: str) -> Path:
    """One file of a Hub repo (``hf_hub_download``, cached)."""
    try:
        from huggingface_hub import hf_hub_download

        return Path(hf_hub_download(repo_id=repo_id, filename=filename))
    except Exception as exc:
        raise CheckpointError(
            f"{repo_id}/{filename}: cannot download from the Hub ({_hub_hint(exc)})"
        ) from exc


def resolve(source: str, patterns: tuple[str, ...] = ("*.safetensors", "*.json", "*.model")) -> Path:
    """Return a local folder/file for ``source`` (see the module docstring); downloads only what is
    not local."""
    if source.startswith(URL_SCHEMES):
        return download_url(source)
    source = source.removeprefix("hf://")
    p = Path(source).expanduser()
    if p.exists():
        return p
    parts = source.split("/")
    if len(parts) < 2 or not all(parts) or source.startswith(("/", ".", "~")):
        raise CheckpointError(f"{source}: not a local path, a Hub repo id or a Hub file")
    if len(parts) > 2:
        return hub_file("/".join(parts[:2]), "/".join(parts[2:]))
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(source, allow_patterns=list(patterns)))
    except Exception as exc:
        raise CheckpointError(f"{source}: cannot download from the Hub ({_hub_hint(exc)})") from exc


def _shards(folder: Path) -> list[Path]:
    files = sorted(folder.glob("*.safetensors")) if folder.is_dir() else [folder]
    if not files:
        raise CheckpointError(f"{folder}: no .safetensors weights found")
    return files


def load_crab_7b_sets(
    sources: OfficialSources,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.bfloat16,
    with_seg: bool = True,
    config=None,
) -> tuple[torch.nn.Module, LoadReport, TaskWeights]:
    """Build crab-7b (reference compat mode), load every piece; returns ``(model, report, weights)``.

    The model is built on the meta device and materialised on ``device`` in ``dtype``. ``weights``
    holds the AVS / AVSS sets (:class:`TaskWeights`); the model holds the last seg file's set until
    :meth:`TaskWeights.apply` is called. ``config`` overrides the crab-7b preset (tests use the
    fixture-sized geometry).
    """
    from ..model.builder import build_model, materialize

    crab_files = [str(resolve(f)) for f in sources.crab]
    seg_files = [f for f in crab_files if is_seg_file(f)]
    base_files = [f for f in crab_files if f not in seg_files]
    base_cfg = config if config is not None else crab_7b()
    cfg = config_for_files(base_cfg, crab_files) if crab_files else base_cfg
    model = build_model(cfg, with_seg=with_seg, device="meta")
    model = materialize(model, device, dtype)
    report = LoadReport()
    load_base_llm(model, _shards(resolve(sources.llm)), report)
    load_hf_clip(model, _shards(resolve(sources.clip)), report)
    if sources.beats:
        load_beats_checkpoint(model, resolve(sources.beats), report)
    load_reference_files(model, base_files, report)
    weights = load_task_weights(model, seg_files if with_seg else [], report)
    log.info("crab-7b loaded:\n%s", report.summary())
    return model.eval(), report, weights


def load_crab_7b(
    sources: OfficialSources,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.bfloat16,
    with_seg: bool = True,
):
    """:func:`load_crab_7b_sets` without the per-task sets: returns ``(model, report)``."""
    model, report, _ = load_crab_7b_sets(sources, device, dtype, with_seg)
    return model, report
