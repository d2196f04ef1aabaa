"""Our own model folder format: ``config.json`` + ``model.safetensors`` + ``tokenizer/``.

``model.safetensors`` holds the full state dict with our key names (PE buffers and fusion
weights included). Loading is strict: a missing, unexpected or mis-shaped tensor raises.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import torch

from ..errors import CheckpointError
from ..tokenizer import CrabTokenizer
from .convert import LoadReport, load_mapped, raise_on_errors
from .io import read_state_dict, write_state_dict
from .validate import check_weights, read_config
from .validate import read_card as read_card_file

log = logging.getLogger(__name__)

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
TOKENIZER_DIR = "tokenizer"
CARD_FILE = "training.json"


def save_pretrained(
    model,
    tokenizer: CrabTokenizer | None,
    folder: str | Path,
    dtype: torch.dtype | None = None,
    extra: dict | None = None,
) -> Path:
    """Write ``model`` (and its tokenizer) to ``folder``; ``dtype`` optionally casts floats (e.g. bf16)."""
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    model.config.to_json(out / CONFIG_FILE)
    sd = {
        k: (v.to(dtype) if dtype is not None and v.is_floating_point() else v)
        for k, v in model.state_dict().items()
        if "rotary_emb" not in k
    }
    write_state_dict(sd, out / WEIGHTS_FILE, metadata={"format": "crab-studio", "name": model.config.name})
    if tokenizer is not None:
        tokenizer.save(out / TOKENIZER_DIR)
    if extra is not None:
        (out / CARD_FILE).write_text(json.dumps(extra, indent=2))
    return out


def load_pretrained(folder: str | Path, device: str | torch.device = "cpu", dtype: torch.dtype | None = None):
    """Load ``(model, tokenizer, report)`` from a folder written by :func:`save_pretrained`.

    Raises:
        CheckpointError: missing files, or weights that do not fit the config exactly.
    """
    from ..model.builder import build_model, reset_rotary

    p = Path(folder)
    if not (p / CONFIG_FILE).is_file():
        raise CheckpointError(f"{p}: not a Crab model folder ({CONFIG_FILE} missing)")
    cfg = read_config(p / CONFIG_FILE)  # types, bounds, geometry: before anything is built
    if not (p / WEIGHTS_FILE).is_file():
        raise CheckpointError(f"{p}: not a Crab model folder ({WEIGHTS_FILE} missing)")
    check_weights(cfg, p / WEIGHTS_FILE, where=str(p / CONFIG_FILE))  # header shapes vs config, no allocation
    sd = read_state_dict(p / WEIGHTS_FILE)
    model = build_model(cfg, with_seg=any(k.startswith("seg_module.") for k in sd))
    report = LoadReport(sources=[str(p / WEIGHTS_FILE)])
    load_mapped(model, {k: v.float() if v.is_floating_point() else v for k, v in sd.items()}, report)
    raise_on_errors(report, str(p / WEIGHTS_FILE))
    if report.missing:
        raise CheckpointError(
            f"{p / WEIGHTS_FILE}: {len(report.missing)} tensors missing, e.g. {report.missing[:3]}"
        )
    if dtype is not None:
        model.to(dtype)
        reset_rotary(model)
    model.to(device).eval()
    tok = CrabTokenizer.from_dir(p / TOKENIZER_DIR, cfg) if (p / TOKENIZER_DIR).is_dir() else None
    return model, tok, report


def read_card(folder: str | Path) -> dict:
    """Training card (data, recipe, metrics) stored beside the weights, or ``{}`` when there is none.

    Raises:
        CheckpointError: the card exists but is not a valid JSON object (the message names the file).
    """
    path = Path(folder) / CARD_FILE
    return read_card_file(path) if path.is_file() else {}
