"""Safe reading of checkpoint files: safetensors, or torch zip pickles with ``weights_only=True``.

Every failure raises :class:`CheckpointError` naming the file and the problem; nothing here
ever unpickles arbitrary objects.
"""

from __future__ import annotations

import logging
import re
import zipfile
from pathlib import Path

import torch

from ..errors import CheckpointError

log = logging.getLogger(__name__)

MAX_CHECKPOINT_BYTES = 64 * 1024**3


def read_state_dict(path: str | Path, float32: bool = False) -> dict[str, torch.Tensor]:
    """Read a flat ``{name: tensor}`` mapping from a ``.safetensors``, ``.bin``/``.pt``/``.pth`` file.

    Args:
        path: the file.
        float32: cast floating tensors to float32 (the fixtures store exact bf16 values).

    Raises:
        CheckpointError: missing, empty, directory, truncated/corrupt, not a state dict,
            or containing non-tensor objects.
    """
    p = Path(path)
    if not p.exists():
        raise CheckpointError(f"{p}: checkpoint file not found")
    if p.is_dir():
        raise CheckpointError(f"{p}: is a directory, expected a checkpoint file")
    size = p.stat().st_size
    if size == 0:
        raise CheckpointError(f"{p}: file is empty")
    if size > MAX_CHECKPOINT_BYTES:
        raise CheckpointError(f"{p}: file is {size / 1024**3:.1f} GiB, larger than the allowed maximum")
    if p.suffix == ".safetensors":
        sd = _read_safetensors(p)
    else:
        sd = _read_torch(p)
    if float32:
        sd = {k: v.float() if v.is_floating_point() else v for k, v in sd.items()}
    return sd


def _read_safetensors(p: Path) -> dict[str, torch.Tensor]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(str(p))
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise CheckpointError(f"{p}: not a valid safetensors file ({exc})") from exc


def _read_torch(p: Path) -> dict[str, torch.Tensor]:
    if not zipfile.is_zipfile(p):
        raise CheckpointError(
            f"{p}: not a torch checkpoint (expected a zip archive written by torch.save; "
            "the file is truncated, corrupt or of another kind)"
        )
    try:
        obj = torch.load(str(p), map_location="cpu", weights_only=True, mmap=True)
    except Exception as exc:  # torch raises many types for corrupt or hostile pickles
        raise CheckpointError(refusal_message(p, exc)) from exc
    if isinstance(obj, dict) and "state_dict" in obj and isinstance(obj["state_dict"], dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict):
        raise CheckpointError(f"{p}: holds a {type(obj).__name__}, expected a dict of tensors")
    bad = [k for k, v in obj.items() if not isinstance(k, str) or not isinstance(v, torch.Tensor)]
    if bad:
        raise CheckpointError(f"{p}: entries that are not tensors: {bad[:5]}")
    return obj


def refusal_message(path: str | Path, exc: BaseException) -> str:
    """One line saying why ``path`` was refused by the safe (tensors-only) unpickler.

    torch's own message suggests retrying with the unsafe loader or allow-listing globals; that
    advice would run code from an untrusted file, so only the reason is kept (e.g.
    ``Unsupported global: GLOBAL os.system``).
    """
    reason = _unpickler_reason(str(exc)) or type(exc).__name__
    return (
        f"{path}: refused: not a plain tensor checkpoint ({reason}); only tensors are ever loaded "
        "from .bin/.pt files, convert trusted files to safetensors"
    )


_UNSAFE_HINT = re.compile(r"weights_only|add_safe_globals|safe_globals|arbitrary code|trust the source", re.I)


def _unpickler_reason(text: str) -> str:
    """The informative part of a torch load error, without torch's unsafe retry hints."""
    lines = [ln.strip(" \t-") for ln in text.splitlines() if ln.strip()]
    for ln in lines:
        if ln.startswith("WeightsUnpickler error:"):
            reason = ln.removeprefix("WeightsUnpickler error:").strip()
            # "Unsupported global: GLOBAL os.system was not an allowed global by default. Please use ..."
            reason = reason.split(" was not an allowed global", 1)[0]
            return reason.split(". ", 1)[0][:200]
    kept = [ln for ln in lines if not _UNSAFE_HINT.search(ln)]
    return kept[0][:200].rstrip(".") if kept else ""


def write_state_dict(
    sd: dict[str, torch.Tensor], path: str | Path, metadata: dict[str, str] | None = None
) -> Path:
    """Write ``sd`` as safetensors (contiguous copies; shared storage is broken up)."""
    from safetensors.torch import save_file

    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_suffix(p.suffix + ".tmp")
    save_file({k: v.detach().contiguous().clone() for k, v in sd.items()}, str(tmp), metadata=metadata)
    tmp.replace(p)
    return p
