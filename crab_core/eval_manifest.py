"""Reading an evaluation manifest (docs/manifest.md) row by row, refusing malformed rows one at a time.

A row that cannot be evaluated (invalid JSON, unknown task, a ``gt`` of the wrong shape, a media
path that is not a string or that resolves outside the manifest's folder) becomes a *row error*
``{"row": line, "id", "task", "error": reason}``; the other rows are still evaluated. Media and
mask paths are resolved against the manifest's folder and must stay inside it unless
``allow_outside`` is set (``eval --allow-outside``); symbolic links are followed before the check.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from .errors import TaskError
from .tasks import TASKS

MAX_MANIFEST_BYTES = 512 * 1024**2
MAX_PATH_CHARS = 4096
NUM_SEGMENTS = 10  # seconds of an AVE / AVVP clip (metrics.classification.NUM_SEGMENTS)
BOX_SIDE = 224  # ARIG boxes are in 224-pixel frame coordinates
MEDIA_FIELDS = ("video", "audio", "image")


class RowError(TaskError):
    """One manifest row cannot be evaluated; the message is the reason."""


def read_manifest(
    path: str | Path,
    allow_outside: bool = False,
    errors: list[dict] | None = None,
    limit: int | None = None,
    media_root: str | Path | None = None,
) -> list[dict]:
    """Read a JSONL manifest; return its valid rows with media paths resolved (absolute strings).

    Each returned row also carries ``_line`` (its 1-based line number).

    Args:
        path: the manifest.
        allow_outside: accept media / mask paths outside the manifest's folder.
        errors: when given, malformed rows are appended here as ``{"row", "id", "task", "error"}``
            and skipped; when ``None`` the first malformed row raises.
        limit: read at most this many (non-empty) rows.
        media_root: resolve media / mask paths against this folder instead of the manifest's (a
            manifest imported from a benchmark release and written outside it: ``eval --media-root``);
            paths must then stay inside ``media_root``.

    Raises:
        TaskError: missing / huge / non-UTF-8 file; a malformed row when ``errors`` is ``None``.
    """
    p = Path(path)
    if not p.is_file():
        raise TaskError(f"{p}: manifest not found")
    if p.stat().st_size > MAX_MANIFEST_BYTES:
        raise TaskError(f"{p}: manifest larger than {MAX_MANIFEST_BYTES // 1024**2} MiB")
    try:
        text = p.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise TaskError(f"{p}: manifest is not UTF-8 ({exc.reason} at byte {exc.start})") from exc
    base = Path(media_root).resolve() if media_root is not None else p.parent.resolve()
    if not base.is_dir():
        raise TaskError(f"{media_root}: media root is not a folder")
    rows: list[dict] = []
    seen = 0
    for line_no, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        if limit is not None and seen >= limit:
            break
        seen += 1
        raw: Any = None
        try:
            raw = _parse(line)
            rows.append({**check_row(raw, base, allow_outside), "_line": line_no})
        except RowError as exc:
            if errors is None:
                raise RowError(f"{p}:{line_no}: {exc}") from exc
            errors.append(row_error(line_no, raw, str(exc)))
    return rows


def row_error(line: int | None, row: Any, reason: str) -> dict:
    """The report entry of a failed row."""
    row = row if isinstance(row, dict) else {}
    ident = row.get("id")
    task = row.get("task")
    return {
        "row": line,
        "id": ident if isinstance(ident, (str, int)) and not isinstance(ident, bool) else None,
        "task": task if isinstance(task, str) else None,
        "error": reason,
    }


def _parse(line: str) -> dict:
    try:
        row = json.loads(line)
    except json.JSONDecodeError as exc:
        raise RowError(f"invalid JSON ({exc.msg} at column {exc.colno})") from exc
    except (ValueError, RecursionError) as exc:
        raise RowError(f"unreadable JSON ({type(exc).__name__})") from exc
    if not isinstance(row, dict):
        raise RowError(f"a row must be a JSON object, got {type(row).__name__}")
    return row


def check_row(row: dict, base: Path, allow_outside: bool = False) -> dict:
    """Validate one row and return a copy with resolved media paths.

    Raises:
        RowError: the reason, e.g. ``"gt.range must be [start, end) with 0 <= start < end <= 10"``.
    """
    task = row.get("task")
    if not isinstance(task, str):
        raise RowError("missing 'task'" if task is None else f"'task' must be a string, got {_kind(task)}")
    if task not in TASKS:
        raise RowError(f"unknown task {task!r}; known: {sorted(TASKS)}")
    out = dict(row)
    for field in MEDIA_FIELDS:
        if row.get(field) is not None:
            out[field] = resolve_path(base, row[field], field, allow_outside)
    if row.get("question") is not None and not isinstance(row["question"], str):
        raise RowError(f"'question' must be a string, got {_kind(row['question'])}")
    fi = row.get("frame_index")
    if fi is not None and (not _is_int(fi) or not 0 <= fi < 10_000):
        raise RowError(f"'frame_index' must be a non-negative integer, got {fi!r:.40}")
    if "gt" not in row and TASKS[task].metrics:
        raise RowError("missing 'gt'")
    gt = row.get("gt", {})
    if not isinstance(gt, dict):
        raise RowError(f"'gt' must be an object, got {_kind(gt)}")
    out["gt"] = _check_gt(task, dict(gt), base, allow_outside)
    return out


def resolve_path(base: Path, value: Any, field: str, allow_outside: bool) -> str:
    """``value`` resolved against ``base`` (symlinks followed); refused outside ``base`` unless allowed."""
    if not isinstance(value, str) or not value.strip():
        raise RowError(f"'{field}' must be a file path (a non-empty string), got {_kind(value)}")
    if len(value) > MAX_PATH_CHARS or "\x00" in value:
        raise RowError(f"'{field}' is not a usable path")
    try:
        full = (base / value).resolve()  # an absolute value replaces base
    except (OSError, RuntimeError, ValueError) as exc:
        raise RowError(f"'{field}' {value!r:.80} cannot be resolved ({exc})") from exc
    if not allow_outside and not full.is_relative_to(base):
        raise RowError(
            f"'{field}' {value!r:.80} resolves outside the manifest's folder "
            "(pass --allow-outside to accept it)"
        )
    return str(full)


def _check_gt(task: str, gt: dict, base: Path, allow_outside: bool) -> dict:
    """Check ``gt`` against the task's schema (docs/manifest.md); resolve a mask path."""
    if task == "ave":
        _check_ave(gt)
    elif task == "avvp":
        present = [m for m in ("audio", "visual") if m in gt]
        if not present:
            raise RowError("gt needs 'audio' and/or 'visual' event lists")
        for m in present:
            _check_events(gt[m], f"gt.{m}")
    elif task == "avqa":
        if "answer" not in gt:
            raise RowError("missing gt.answer")
        if not isinstance(gt["answer"], (str, int, float)) or isinstance(gt["answer"], bool):
            raise RowError(f"gt.answer must be a string, got {_kind(gt['answer'])}")
        qt = gt.get("question_type")
        if qt is not None and not isinstance(qt, str) and not _is_str_list(qt):
            raise RowError(f"gt.question_type must be a string, got {_kind(qt)}")
    elif task == "arig":
        _check_box(gt.get("box"))
        _check_label(gt, "object")
    elif TASKS[task].needs_mask:
        if "mask" not in gt:
            raise RowError("missing gt.mask")
        gt["mask"] = resolve_path(base, gt["mask"], "gt.mask", allow_outside)
        if task == "avss" and gt.get("mask_format", "index") not in ("index", "palette"):
            raise RowError(f"gt.mask_format must be 'index' or 'palette', got {gt['mask_format']!r:.40}")
        if "null" in gt and not isinstance(gt["null"], bool):
            raise RowError(f"gt.null must be true or false, got {_kind(gt['null'])}")
        _check_label(gt, "object")
    elif task == "caption" and gt.get("caption") is not None and not isinstance(gt["caption"], str):
        raise RowError(f"gt.caption must be a string, got {_kind(gt['caption'])}")
    return gt


def _check_ave(gt: dict) -> None:
    segs = gt.get("segments")
    if segs is not None and (not _is_str_list(segs) or len(segs) != NUM_SEGMENTS):
        raise RowError(f"gt.segments must be a list of {NUM_SEGMENTS} labels, got {_kind(segs)}")
    if "event" in gt and gt["event"] is not None and not isinstance(gt["event"], str):
        raise RowError(f"gt.event must be a string, got {_kind(gt['event'])}")
    if gt.get("range") is not None:
        _check_range(gt["range"], "gt.range")
    if not segs and not (gt.get("event") and gt.get("range") is not None):
        raise RowError("gt needs 'segments', or 'event' with 'range'")


def _check_events(events: Any, where: str) -> None:
    if not isinstance(events, list):
        raise RowError(f"{where} must be a list of {{event, ranges}}, got {_kind(events)}")
    for i, ev in enumerate(events):
        if not isinstance(ev, dict) or not isinstance(ev.get("event"), str):
            raise RowError(f"{where}[{i}] must be an object with an 'event' string")
        ranges = ev.get("ranges", [])
        if not isinstance(ranges, list):
            raise RowError(f"{where}[{i}].ranges must be a list of [start, end], got {_kind(ranges)}")
        for j, r in enumerate(ranges):
            _check_range(r, f"{where}[{i}].ranges[{j}]")


def _check_range(r: Any, where: str) -> None:
    ok = isinstance(r, list) and len(r) == 2 and all(_is_int(v) for v in r)
    if not ok or not 0 <= r[0] < r[1] <= NUM_SEGMENTS:
        raise RowError(
            f"{where} must be [start, end) whole seconds with 0 <= start < end <= {NUM_SEGMENTS}, "
            f"got {json.dumps(r)[:60]}"
        )


def _check_box(box: Any) -> None:
    ok = isinstance(box, list) and len(box) == 4 and all(_is_number(v) for v in box)
    if not ok or not (0 <= box[0] < box[2] <= BOX_SIDE and 0 <= box[1] < box[3] <= BOX_SIDE):
        raise RowError(
            f"gt.box must be [x1, y1, x2, y2] with 0 <= x1 < x2 <= {BOX_SIDE} and "
            f"0 <= y1 < y2 <= {BOX_SIDE}, got {json.dumps(box)[:60]}"
        )


def _check_label(gt: dict, key: str) -> None:
    if gt.get(key) is not None and not isinstance(gt[key], str):
        raise RowError(f"gt.{key} must be a string or null, got {_kind(gt[key])}")


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _is_str_list(v: Any) -> bool:
    return isinstance(v, list) and all(isinstance(x, str) for x in v)


def _kind(v: Any) -> str:
    return "nothing" if v is None else f"{type(v).__name__} {json.dumps(v, default=str)[:40]}"
