"""Reading a reference-fixture folder (README format of ``reference-fixtures/``).

A fixture folder holds ``config.json`` (tiny hyper-parameters), ``weights.safetensors`` (the
reference's own PeftModel key names) and one sub-folder per component with ``inputs`` /
``outputs`` safetensors. This module reads ``config.json`` (the geometry it describes:
:func:`crab_core.presets.reference_fixture`) and loads the weights through the same conversion path
as official checkpoints.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from ..config import CrabConfig
from ..errors import CheckpointError
from ..presets import reference_fixture
from .convert import LoadReport, load_mapped, raise_on_errors, reference_to_ours
from .io import read_state_dict


def read_fixture_config(folder: Path) -> dict:
    path = Path(folder) / "config.json"
    if not path.is_file():
        raise CheckpointError(f"{path}: fixture config.json not found")
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{path}: cannot read fixture config ({exc})") from exc


def config_from_fixture(raw: dict) -> CrabConfig:
    """Build a reference-mode :class:`CrabConfig` from a fixture ``config.json``
    (:func:`crab_core.presets.reference_fixture`; a missing key is a :class:`CheckpointError`)."""
    try:
        return reference_fixture(raw)
    except KeyError as exc:
        raise CheckpointError(f"fixture config.json lacks {exc}") from exc


def load_fixture_model(folder: Path, attn_implementation: str = "sdpa"):
    """Build the fixture's model and load ``weights.safetensors`` via :func:`reference_to_ours`.

    Returns:
        ``(model, config, raw_config, report)``; raises :class:`CheckpointError` on any unexpected,
        shape-mismatched or missing key (the fixture file is a complete state dict).
    """
    from ..model.builder import build_model

    folder = Path(folder)
    raw = read_fixture_config(folder)
    cfg = config_from_fixture(raw)
    weights = folder / raw.get("weights_file", {}).get("path", "weights.safetensors")
    model = build_model(cfg, attn_implementation=attn_implementation)
    sd = read_state_dict(weights, float32=True)
    ours, dropped, unexpected = reference_to_ours(sd)
    report = LoadReport(sources=[str(weights)], dropped=dropped, unexpected=list(unexpected))
    load_mapped(model, ours, report)
    raise_on_errors(report, str(weights))
    if report.missing:
        raise CheckpointError(
            f"{weights}: {len(report.missing)} model tensors not in the file, e.g. {report.missing[:3]}"
        )
    model.eval()
    return model, cfg, raw, report


def load_io(folder: Path, component: str) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """Inputs and outputs of one component sub-folder (float tensors as float32)."""
    sub = Path(folder) / component
    return (
        read_state_dict(sub / "inputs.safetensors", float32=True),
        read_state_dict(sub / "outputs.safetensors", float32=True),
    )


def load_meta(folder: Path, component: str) -> dict:
    path = Path(folder) / component / "meta.json"
    return json.loads(path.read_text()) if path.is_file() else {}
