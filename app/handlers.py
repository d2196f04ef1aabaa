"""Gradio event handlers: thin wrappers that call the engine and the pure render functions.

Every handler turns a :class:`crab_core.errors.CrabError` into its message and any other
exception into a short generic message (the traceback goes to the log only), raised as
``gr.Error`` so the browser shows a toast and gradio_client an ``AppError``.
"""

from __future__ import annotations

import atexit
import functools
import hashlib
import json
import logging
import shutil
import tempfile
from collections import OrderedDict
from pathlib import Path

import gradio as gr
import numpy as np

from crab_core.errors import CrabError
from crab_core.tasks import TASKS, get_task

from . import present, render, views
from .engine import Engine, HeadControl, Request

log = logging.getLogger(__name__)
EXAMPLES_DIR = Path(__file__).resolve().parents[1] / "assets" / "examples"


def guarded(fn):
    """Show user errors plainly and hide internal ones (logged with their traceback)."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except gr.Error:
            raise
        except CrabError as exc:
            log.info("user error in %s: %s", fn.__name__, exc)
            raise gr.Error(str(exc), print_exception=False) from None
        except Exception:  # noqa: BLE001 - never show a stack trace to the user
            log.exception("internal error in %s", fn.__name__)
            raise gr.Error("Something went wrong while processing this request (details are in the server "
                           "log). Check that the file is a valid video, audio or image.",
                           print_exception=False) from None
    return wrapper


def _opt_layer(value):
    return views.ALL if value in (None, "", views.ALL) else int(value)


def _path(value) -> str | None:
    if value in (None, ""):
        return None
    if isinstance(value, dict):  # gradio_client file dicts
        value = value.get("path") or value.get("name")
    return str(value)


class UploadIndex:
    """Keeps one private, never-rewritten copy per upload content, so the same clip uploaded again
    (gradio_client re-uploads on every call, and Gradio rewrites the file) keeps its path and
    modification time and hits the pipeline's encoded-clip cache. Old copies are deleted (LRU), and
    the folder is removed at exit."""

    def __init__(self, size: int = 32) -> None:
        self._paths: OrderedDict[str, Path] = OrderedDict()
        self._size = size
        self._dir = Path(tempfile.mkdtemp(prefix="crab-uploads-"))
        atexit.register(shutil.rmtree, self._dir, ignore_errors=True)

    def canonical(self, path: str | None) -> str | None:
        if path is None or not Path(path).is_file():
            return path
        digest = hashlib.sha1()
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                digest.update(chunk)
        key = digest.hexdigest()
        known = self._paths.get(key)
        if known is None or not known.is_file():
            known = self._dir / f"{key[:20]}{Path(path).suffix.lower()}"
            shutil.copyfile(path, known)
            self._paths[key] = known
        self._paths.move_to_end(key)
        while len(self._paths) > self._size:
            self._paths.popitem(last=False)[1].unlink(missing_ok=True)
        return str(known)


def load_examples(folder: Path = EXAMPLES_DIR) -> list[dict]:
    """Rows of ``assets/examples/examples.json`` with absolute paths (``[]`` when absent)."""
    index = folder / "examples.json"
    if not index.is_file():
        return []
    rows = json.loads(index.read_text())
    for row in rows:
        for key in ("video", "audio", "image", "gt_mask"):
            if row.get(key):
                row[key] = str(folder / row[key])
    return rows


class Handlers:
    """All handlers of one app instance (they share the engine)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.uploads = UploadIndex()

    def task_changed(self, task: str):
        """Show the question box only for tasks that need one; set the target-second range."""
        spec = get_task(task)
        label = "Referring expression" if task == "ref-avs" else "Question"
        return (gr.update(visible=spec.needs_question, label=label),
                gr.update(visible=spec.needs_mask, maximum=spec.num_frames - 1),
                gr.update(value=self.engine.default_tokens(task)),
                f"*{spec.description}*")

    def _request(self, video, audio, image, task, question, frame_index, gt_mask, max_tokens) -> Request:
        spec = get_task(task)
        canon = self.uploads.canonical
        return Request(task=spec.name, video=canon(_path(video)), audio=canon(_path(audio)), image=canon(_path(image)),
                       question=(question or None) if spec.needs_question else None,
                       frame_index=int(frame_index) if spec.needs_mask and frame_index is not None else None,
                       gt_mask=_path(gt_mask) if spec.needs_mask else None,
                       max_new_tokens=int(max_tokens) if max_tokens else None)

    def _result_values(self, record):
        view = present.result_view(record, self.engine.class_names)
        return (present.status_line(record, self.engine.pipeline.trained), view.answer, view.summary,
                view.timeline, view.image, view.legend)

    def run(self, video, audio, image, task, question, frame_index, gt_mask, max_tokens,
            layer, projection, values, group, kind, progress=gr.Progress()):
        """Run the task; return the result panel, the three routing views and the new state."""
        progress(0.1, desc="Loading and encoding the clip")
        req = self._request(video, audio, image, task, question, frame_index, gt_mask, max_tokens)
        record = self.engine.run(req)
        progress(0.9, desc="Rendering")
        figs = present.inspection_figures(record.trace, _opt_layer(layer), projection, values, group, kind)
        return (*self._result_values(record), *figs, record)

    def update_views(self, record, layer, projection, values, group, kind):
        """Re-render the routing views from the stored capture (no model call)."""
        return present.inspection_figures(getattr(record, "trace", None), _opt_layer(layer), projection,
                                          values, group, kind)

    def intervene(self, record, mode, heads, layers, renormalize, layer, projection, progress=gr.Progress()):
        """Re-run the last request with heads ablated / forced; show it beside the normal run."""
        if record is None:
            raise gr.Error("Run a task first, then ablate or force heads.", print_exception=False)
        progress(0.1, desc="Re-running with the routing change")
        chosen = tuple(int(str(h).split()[-1]) for h in (heads or []))
        scope = None if not layers or views.ALL in layers else tuple(int(x) for x in layers)
        control = HeadControl(mode=mode, heads=chosen, layers=scope, renormalize=bool(renormalize))
        variant = self.engine.run(record.request, control)
        values = self._result_values(variant)
        changed = "**The answer changed.**" if variant.result.text != record.result.text else \
            "The answer is unchanged."
        shift = views.routing_shift(record.trace, variant.trace, _opt_layer(layer), projection)
        return (values[0] + "  \n" + changed, *values[1:], shift)

    def attention(self, record, progress=gr.Progress()):
        """Attention on the frames, over the audio spectrogram, and the audio-visual interaction map."""
        if record is None:
            raise gr.Error("Run a task first.", print_exception=False)
        progress(0.2, desc="Computing attention")
        data = self.engine.attention(record)
        summary, frames = data["summary"], data["frames"]
        strip = None
        if frames is not None and data["patch_maps"] is not None and len(summary.frames):
            tiles = [views.patch_attention_overlay(f, m) for f, m in zip(frames, data["patch_maps"])]
            strip = views.frame_attention_strip(np.stack(tiles), summary.frames)
        elif frames is not None and len(summary.frames):
            strip = views.frame_attention_strip(frames[: len(summary.frames)], summary.frames)
        spec = None if data["fbank"] is None else data["fbank"].reshape(-1, data["fbank"].shape[-1])
        _, audio, inter, note = present.attention_outputs(summary, None, spec, None)
        return strip, audio, inter, note

    def attribution(self, record, n_steps, progress=gr.Progress()):
        """Integrated-gradients attribution (captum) of the answer to frames, seconds and text."""
        if record is None:
            raise gr.Error("Run a task first.", print_exception=False)
        progress(0.2, desc="Integrated gradients")
        groups, scores = self.engine.attribution(record, n_steps=int(n_steps or 8))
        return views.attribution_bars(groups, scores, "Integrated gradients: answer log-probability per input "
                                                      "group (embedding level)")

    def list_examples(self) -> list[dict]:
        """The shipped SynthAV examples (paths relative to the server)."""
        return load_examples()

    def model_info(self) -> str:
        from .model_card import model_markdown
        return model_markdown(self.engine.pipeline)


def task_choices() -> list[tuple[str, str]]:
    names = {"ave": "AVE", "avvp": "AVVP", "avqa": "AVQA", "arig": "ARIG", "s4": "S4", "ms3": "MS3",
             "avss": "AVSS", "ref-avs": "Ref-AVS", "caption": "Captioning"}
    return [(f"{names.get(t, t)} — {TASKS[t].description}", t) for t in TASKS]


def guard_all(handlers: Handlers) -> dict:
    """The guarded bound handlers by name."""
    names = ("task_changed", "run", "update_views", "intervene", "attention", "attribution", "list_examples",
             "model_info")
    return {n: guarded(getattr(handlers, n)) for n in names}


__all__ = ["Handlers", "guard_all", "guarded", "load_examples", "task_choices", "render"]
