"""Gradio event handlers: thin wrappers that call the engine and the pure render functions.

Every handler turns a :class:`crab_core.errors.CrabError` into its message and any other
exception into a short generic message (the traceback goes to the log only), raised as
``gr.Error`` so the browser shows a toast and gradio_client an ``AppError``.
"""

from __future__ import annotations

import functools
import json
import logging
from contextlib import contextmanager
from pathlib import Path

import gradio as gr
import numpy as np

from crab_core.errors import CrabError
from crab_core.tasks import TASKS, get_task

from . import present, render, views
from .engine import Engine, HeadControl, Request
from .messages import user_message
from .tempdirs import private_dir
from .uploads import UploadIndex

log = logging.getLogger(__name__)
EXAMPLES_DIR = Path(__file__).resolve().parents[1] / "assets" / "examples"


def guarded(fn):
    """Show user errors plainly (no server paths, no decoder internals: :func:`user_message`) and
    hide internal ones (logged with their traceback)."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except gr.Error:
            raise
        except CrabError as exc:
            log.info("user error in %s: %s", fn.__name__, exc)
            raise gr.Error(user_message(str(exc)), print_exception=False) from None
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


@contextmanager
def _user_errors(request: Request | None):
    """Re-raise a :class:`CrabError` with the request's server paths replaced by the user's file names."""
    try:
        yield
    except CrabError as exc:
        names = request.lease.names if request is not None and request.lease is not None else {}
        raise type(exc)(user_message(str(exc), names)) from None


class Handlers:
    """All handlers of one app instance (they share the engine).

    Args:
        engine: the model side. uploads: where upload copies live (default: a new private folder
            removed at exit).
    """

    def __init__(self, engine: Engine, uploads: UploadIndex | None = None) -> None:
        self.engine = engine
        self.uploads = uploads if uploads is not None else UploadIndex(private_dir("uploads"))

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
        lease = self.uploads.lease()

        def canon(value):
            return self.uploads.add(_path(value), lease)

        return Request(task=spec.name, video=canon(video), audio=canon(audio), image=canon(image),
                       question=(question or None) if spec.needs_question else None,
                       frame_index=int(frame_index) if spec.needs_mask and frame_index is not None else None,
                       gt_mask=canon(gt_mask) if spec.needs_mask else None,
                       max_new_tokens=int(max_tokens) if max_tokens else None, lease=lease)

    def _result_values(self, record):
        view = present.result_view(record, self.engine.class_names)
        return (present.status_line(record, self.engine.pipeline.trained), view.answer, view.summary,
                view.timeline, view.image, view.legend)

    def run(self, video, audio, image, task, question, frame_index, gt_mask, max_tokens,
            layer, projection, values, group, kind, progress=gr.Progress()):
        """Run the task; return the result panel, the three routing views and the new state."""
        progress(0.1, desc="Loading and encoding the clip")
        req = self._request(video, audio, image, task, question, frame_index, gt_mask, max_tokens)
        with _user_errors(req):
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
        with _user_errors(record.request):
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
        with _user_errors(record.request):
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
        with _user_errors(record.request):
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
