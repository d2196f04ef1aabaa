"""Batched, resumable runs for ``eval``: generate every row's answer first, then score them.

Phase 1 (:func:`generate_rows`) runs the model on the manifest rows in batches of ``batch_size`` rows
of one task (one :meth:`CrabModel.generate` call per batch: left padding and attention masks, so each
answer is the one the row gets alone) and, with a :class:`ResultsFile`, appends each row's answer to
a JSONL file as soon as its batch finishes. A second run with the same file skips the rows already in
it (resume after a crash or a kill; a row whose content changed is run again).

Phase 2 hands a :class:`Replay` to :func:`crab_core.evaluation.evaluate` in place of the pipeline: it
returns each row's stored answer, so the scoring, the per-row errors and the baselines are the ones
of an ordinary ``eval``. Stored seg masks are exact for the metrics: the logits are resized to the GT
mask's side (as the scoring path does) and kept as an 8-bit code per pixel (binary tasks: which of the
255 F-measure thresholds the probability reaches, and whether it is above 0.5; AVSS: the argmax
class), from which :func:`decode_mask` rebuilds logits that score the same.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from collections import defaultdict, deque
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import CrabError, EvaluationError, MediaError
from .metrics.segmentation import NUM_THRESHOLDS
from .pipeline_types import TaskResult, internal_errors
from .tasks import TASKS
from .tasks.parsers import parse

log = logging.getLogger(__name__)

FORMAT = 1
#: The F-measure thresholds of the binary seg metrics (``frame_fscore``).
THRESHOLDS = np.linspace(0.0, 1.0 - 1e-10, NUM_THRESHOLDS)


def _rep_logits() -> np.ndarray:
    """float32 logit for each binary code: level L (1..255, the number of thresholds <= p) at a
    probability inside its cell; code 128 is ``p <= 0.5`` of level 128, code 0 ``p > 0.5`` of it."""
    hi = np.append(THRESHOLDS[1:], 1.0)
    p = (THRESHOLDS + hi) / 2
    p[-1] = 1.0 - 5e-11
    p[127] = (THRESHOLDS[127] + 0.5) / 2  # level 128 below / at 0.5
    reps = np.empty(256, np.float64)
    reps[1:] = np.log(p) - np.log1p(-p)
    reps[0] = np.log(0.5 + (THRESHOLDS[128] - 0.5) / 2) - np.log1p(-(0.5 + (THRESHOLDS[128] - 0.5) / 2))
    return reps.astype(np.float32)


REP_LOGITS = _rep_logits()


def encode_mask(logits: np.ndarray, side: int | None) -> tuple[np.ndarray, int]:
    """``(C, S, S)`` logits -> ``(code map (side, side) uint8, C)`` (``side`` None: the logits' own)."""
    lg = np.asarray(logits, np.float32)
    lg = lg[None] if lg.ndim == 2 else lg
    if side is not None and lg.shape[-1] != side:
        import torch
        import torch.nn.functional as F

        t = torch.from_numpy(np.ascontiguousarray(lg))[None]
        lg = F.interpolate(t, size=(side, side), mode="bilinear", align_corners=False)[0].numpy()
    if lg.shape[0] > 1:
        if lg.shape[0] > 256:
            raise EvaluationError(f"cannot store a {lg.shape[0]}-class mask")
        return lg.argmax(0).astype(np.uint8), lg.shape[0]
    p = 1.0 / (1.0 + np.exp(-lg[0].astype(np.float64)))
    code = np.searchsorted(THRESHOLDS, p, side="right").astype(np.uint8)
    code[(code == 128) & (p > 0.5)] = 0
    return code, 1


def decode_mask(code: np.ndarray, channels: int) -> np.ndarray:
    """Logits ``(channels, H, W)`` that score as the logits :func:`encode_mask` coded."""
    if channels == 1:
        return REP_LOGITS[code][None]
    out = np.full((channels, *code.shape), -20.0, np.float32)
    np.put_along_axis(out, code[None].astype(np.int64), 20.0, axis=0)
    return out


def row_key(row: dict) -> str:
    """Manifest line + a hash of the row's content: an edited row is not taken for the old one."""
    body = json.dumps({k: v for k, v in row.items() if k != "_line"}, sort_keys=True, default=str)
    return f"{row.get('_line')}:{hashlib.sha1(body.encode()).hexdigest()[:16]}"


def _signature(task, video=None, audio=None, image=None, question=None, frame_index=None) -> tuple:
    return (task, video, audio, image, question, frame_index)


@dataclass
class Stored:
    """One finished row: its answer (and coded mask), or the reason it failed."""

    text: str | None = None
    mask: np.ndarray | None = None
    channels: int = 1
    error: str | None = None


class ResultsFile:
    """Per-row answers of one run: ``PATH`` (JSONL, one line per finished row) and ``PATH.masks/``
    (one PNG per seg row). The first line records the run's settings; a resumed run must match them."""

    def __init__(self, path: str | os.PathLike, settings: dict) -> None:
        self.path = Path(path)
        self.masks = self.path.with_name(self.path.name + ".masks")
        self.settings = {"crab_eval_results": FORMAT, **settings}
        self.done: dict[str, Stored] = {}
        if self.path.exists():
            self._load()
        else:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.path.write_text(json.dumps(self.settings) + "\n", encoding="utf-8")

    def _load(self) -> None:
        from PIL import Image

        lines = self.path.read_text(encoding="utf-8").splitlines()
        try:
            head = json.loads(lines[0]) if lines else None
        except json.JSONDecodeError:
            head = None
        if head != self.settings:
            raise EvaluationError(
                f"{self.path} holds the results of another run ({json.dumps(head)[:200]}); "
                "pass another --results path (or delete it) to start over"
            )
        for line in lines[1:]:
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                continue  # the last line of a killed run may be cut short: that row runs again
            if not isinstance(rec, dict) or not isinstance(rec.get("key"), str):
                continue
            mask = None
            if rec.get("mask"):
                try:
                    with Image.open(self.masks / rec["mask"]) as im:
                        mask = np.asarray(im, dtype=np.uint8)
                except OSError:
                    continue
            self.done[rec["key"]] = Stored(rec.get("text"), mask, rec.get("channels", 1), rec.get("error"))
        if self.path.read_bytes()[-1:] != b"\n":
            with open(self.path, "a", encoding="utf-8") as f:
                f.write("\n")

    def add(self, key: str, stored: Stored) -> None:
        """Keep one row (mask first, then its line; flushed to disk before the next batch runs)."""
        from PIL import Image

        rec = {"key": key, "text": stored.text, "error": stored.error}
        if stored.mask is not None:
            self.masks.mkdir(exist_ok=True)
            name = key.replace(":", "_") + ".png"
            Image.fromarray(stored.mask).save(self.masks / name)
            rec.update(mask=name, channels=stored.channels)
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps(rec) + "\n")
            f.flush()
            os.fsync(f.fileno())
        self.done[key] = stored


def _mask_side(row: dict) -> int | None:
    from .evaluation import MAX_MASK_SIDE

    path = (row.get("gt") or {}).get("mask")
    if not isinstance(path, str):
        return None
    from PIL import Image

    try:
        with Image.open(path) as im:
            return max(1, min(int(im.size[0]), MAX_MASK_SIDE))
    except (OSError, ValueError, Image.DecompressionBombError) as exc:
        raise MediaError(f"could not read mask {Path(path).name}: {exc}") from exc


def _batches(rows: list[dict], size: int):
    """Consecutive rows of one task, at most ``size`` at a time."""
    batch: list[dict] = []
    for row in rows:
        if batch and (len(batch) == size or row["task"] != batch[0]["task"]):
            yield batch
            batch = []
        batch.append(row)
    if batch:
        yield batch


def generate_rows(
    pipe,
    rows: list[dict],
    batch_size: int = 1,
    max_new_tokens: int | None = None,
    results: ResultsFile | None = None,
    progress: bool = True,
) -> dict[str, Stored]:
    """Answers of ``rows`` (their :func:`row_key` -> :class:`Stored`); rows in ``results`` are not run.

    Args:
        pipe: a :class:`~crab_core.pipeline.CrabPipeline`.
        rows: manifest rows (:func:`~crab_core.eval_manifest.read_manifest`), all to be evaluated.
        batch_size: rows of one task per ``generate`` call.
        max_new_tokens: generation budget (default: the task's).
        results: where finished rows are kept, and read back on a resumed run.
    """
    from tqdm import tqdm

    out: dict[str, Stored] = dict(results.done) if results is not None else {}
    todo = [r for r in rows if row_key(r) not in out]
    if results is not None and len(todo) < len(rows):
        log.info("resuming: %d of %d rows already in %s", len(rows) - len(todo), len(rows), results.path)
    bar = tqdm(total=len(todo), disable=not progress, desc="generate", unit="sample")
    for batch in _batches(todo, batch_size):
        task = batch[0]["task"]
        done: list[tuple[dict, Stored]] = []
        ready = []
        for row in batch:
            try:
                side = _mask_side(row) if TASKS[task].needs_mask else None
                prep = pipe.prepare(
                    task, row.get("video"), row.get("audio"), row.get("image"), row.get("question"),
                    row.get("frame_index"),
                )  # fmt: skip
                ready.append((row, prep, side))
            except CrabError as exc:
                done.append((row, Stored(error=str(exc))))
            except (KeyError, TypeError, ValueError, IndexError) as exc:  # as evaluate() reports them
                done.append((row, Stored(error=f"cannot run the row ({type(exc).__name__}: {exc})")))
        if ready:
            t0 = time.perf_counter()
            try:
                with internal_errors("generating the answer"):
                    gen = pipe.model.generate(
                        [p.sample for _, p, _ in ready],
                        max_new_tokens=max_new_tokens or TASKS[task].max_new_tokens,
                    )
            except CrabError as exc:
                done += [(row, Stored(error=str(exc))) for row, _, _ in ready]
            else:
                timings = {"generate": time.perf_counter() - t0}
                for i, (row, prep, side) in enumerate(ready):
                    try:
                        res = pipe.result_from_generation(task, prep, gen, timings, index=i)
                        stored = Stored(text=res.text)
                        if res.mask_logits is not None:
                            stored.mask, stored.channels = encode_mask(res.mask_logits, side)
                    except CrabError as exc:
                        stored = Stored(error=str(exc))
                    done.append((row, stored))
        for row, stored in done:
            key = row_key(row)
            if results is not None:
                results.add(key, stored)
            out[key] = stored
        bar.update(len(batch))
    bar.close()
    return out


class Replay:
    """Stands in for the pipeline in :func:`~crab_core.evaluation.evaluate`: ``run`` returns the stored
    answer of the row it is called for (rows matched by their inputs, in manifest order)."""

    def __init__(self, pipe, rows: list[dict], stored: dict[str, Stored]) -> None:
        self.pipe, self.stored = pipe, stored
        self.model, self.name, self.trained = pipe.model, pipe.name, pipe.trained
        self._queue: dict[tuple, deque] = defaultdict(deque)
        for row in rows:
            sig = _signature(
                row["task"], row.get("video"), row.get("audio"), row.get("image"), row.get("question"),
                row.get("frame_index"),
            )  # fmt: skip
            self._queue[sig].append(row_key(row))

    def run(
        self, task, video=None, audio=None, image=None, question=None, frame_index=None, **_
    ) -> TaskResult:
        queue = self._queue.get(_signature(task, video, audio, image, question, frame_index))
        if not queue:
            raise EvaluationError("no stored answer for this row")
        s = self.stored[queue.popleft()]
        if s.error is not None:
            raise EvaluationError(s.error)
        logits = None if s.mask is None else decode_mask(s.mask, s.channels)
        return TaskResult(task=task, text=s.text or "", parsed=parse(task, s.text or ""), mask_logits=logits)
