"""Trainer checkpoints that survive a crash at any point, and the recipe check on resume.

Layout under a run folder: ``checkpoint/`` (the current one) and, while saving,
``checkpoint.tmp/`` (being written) and briefly ``checkpoint.old/`` (the previous one). A folder
is complete once its ``trainer_state.json`` exists: it is written last, through a temporary file
renamed into place. A save is:

1. write ``checkpoint.tmp/`` completely (accelerate state, then the state file);
2. rename ``checkpoint/`` to ``checkpoint.old/``;
3. rename ``checkpoint.tmp/`` to ``checkpoint/``;
4. delete ``checkpoint.old/``.

Every point of that sequence leaves a complete folder behind: :func:`recover` picks
``checkpoint/`` when complete, else a complete ``checkpoint.tmp/`` (a crash between 2 and 3), else
a complete ``checkpoint.old/``, renames it to ``checkpoint/`` and removes the leftovers.

Example:
    >>> recipe_diff({"lr": 1e-3, "phases": [{"steps": 2}]}, {"lr": 1e-3, "phases": [{"steps": 3}]})
    ['phases[0].steps: 2 in the checkpoint, 3 now']
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from pathlib import Path

from ..errors import CheckpointError

log = logging.getLogger(__name__)

CKPT_DIR = "checkpoint"
STATE_FILE = "trainer_state.json"
TMP_SUFFIX, OLD_SUFFIX = ".tmp", ".old"

#: Recipe fields that do not change what a resumed run computes (free to differ on resume).
RESUME_FREE = ("data.workers", "eval_every", "log_every", "checkpoint_every")


def _rename(src: Path, dst: Path) -> None:
    os.replace(src, dst)


def _remove(folder: Path) -> None:
    shutil.rmtree(folder)


def paths(out: Path) -> tuple[Path, Path, Path]:
    """``(checkpoint, checkpoint.tmp, checkpoint.old)`` under the run folder ``out``."""
    final = out / CKPT_DIR
    return final, out / (CKPT_DIR + TMP_SUFFIX), out / (CKPT_DIR + OLD_SUFFIX)


def read_state(folder: Path) -> dict | None:
    """The trainer state of a checkpoint folder, or None when the folder is missing or incomplete."""
    try:
        return json.loads((folder / STATE_FILE).read_text())
    except (OSError, ValueError):
        return None


def write_state(folder: Path, state: dict) -> None:
    """Write ``trainer_state.json`` last and atomically: its presence marks ``folder`` complete."""
    part = folder / (STATE_FILE + ".part")
    with part.open("w", encoding="utf-8") as fh:
        fh.write(json.dumps(state))
        fh.flush()
        os.fsync(fh.fileno())
    _rename(part, folder / STATE_FILE)


def prepare_tmp(out: Path) -> Path:
    """Remove what a crashed save left (an unfinished ``checkpoint.tmp/``, a stale ``.old/``) and
    return the path to write the new checkpoint to. Main process only."""
    final, tmp, old = paths(out)
    if read_state(final) is None and (read_state(tmp) is not None or read_state(old) is not None):
        recover(out)  # never delete the only complete checkpoint
    for leftover in (tmp, old):
        if leftover.exists():
            _remove(leftover)
    return tmp


def swap_in(out: Path) -> Path:
    """Steps 2-4: make the complete ``checkpoint.tmp/`` the current checkpoint. Main process only."""
    final, tmp, old = paths(out)
    if read_state(tmp) is None:
        raise CheckpointError(f"{tmp}: incomplete checkpoint, not swapped in")
    if final.exists():
        _rename(final, old)
    _rename(tmp, final)
    if old.exists():
        _remove(old)
    return final


def recover(out: Path) -> Path | None:
    """Make ``checkpoint/`` the newest complete checkpoint a crash left; None when there is none.

    Main process only (the others wait, then read ``checkpoint/``).
    """
    final, tmp, old = paths(out)
    if read_state(final) is None:
        for cand in (tmp, old):
            if read_state(cand) is not None:
                if final.exists():
                    _remove(final)
                log.warning("%s is missing or incomplete: resuming from %s", final, cand)
                _rename(cand, final)
                break
    if read_state(final) is None:
        return None
    for leftover in (tmp, old):
        if leftover.exists():
            _remove(leftover)
    return final


def _flatten(obj, prefix: str = "") -> dict[str, object]:
    if isinstance(obj, dict):
        out: dict[str, object] = {}
        for k, v in obj.items():
            out.update(_flatten(v, f"{prefix}.{k}" if prefix else str(k)))
        return out
    if isinstance(obj, list | tuple):
        out = {f"{prefix}.len": len(obj)}
        for i, v in enumerate(obj):
            out.update(_flatten(v, f"{prefix}[{i}]"))
        return out
    return {prefix: obj}


def recipe_diff(saved: dict, current: dict, free: tuple[str, ...] = RESUME_FREE) -> list[str]:
    """Human-readable differences between two ``Recipe.to_dict()`` (JSON round-tripped) values,
    ignoring the fields in ``free``."""
    a, b = _flatten(json.loads(json.dumps(saved))), _flatten(json.loads(json.dumps(current)))
    absent = object()

    def show(v) -> str:
        return "absent" if v is absent else repr(v)

    rows = []
    for key in sorted(set(a) | set(b)):
        old, new = a.get(key, absent), b.get(key, absent)
        if key not in free and old != new:
            rows.append(f"{key}: {show(old)} in the checkpoint, {show(new)} now")
    return rows


def check_recipe(state: dict, name: str, config: dict, where: Path) -> None:
    """Raise :class:`CheckpointError` when the checkpoint was written by another recipe configuration.

    Checkpoints written before the configuration was stored are checked by recipe name only.
    """
    if state.get("recipe") != name:
        raise CheckpointError(f"{where}: checkpoint is from recipe {state.get('recipe')!r}, not {name!r}")
    saved = state.get("recipe_config")
    if saved is None:
        log.warning("%s: checkpoint stores no recipe configuration; only its name was checked", where)
        return
    diff = recipe_diff(saved, config)
    if diff:
        more = f" (and {len(diff) - 4} more)" if len(diff) > 4 else ""
        raise CheckpointError(
            f"{where}: recipe {name!r} differs from the one that wrote this checkpoint: "
            + "; ".join(diff[:4])
            + more
            + " (resume with the same recipe, or start a new --out folder)"
        )
