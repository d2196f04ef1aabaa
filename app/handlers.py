"""Gradio event handlers: thin wrappers that call the engine and the pure render functions.

Every handler turns a :class:`crab_core.errors.CrabError` (a problem with the user's input) into its
message, and any other exception into a message that says it is an internal error, not the user's
(the traceback goes to the log only), raised as ``gr.Error`` so the browser shows a toast and
gradio_client an ``AppError``.
"""

from __future__ import annotations

import functools
import hashlib
import html
import json
import logging
from contextlib import contextmanager
from pathlib import Path

import gradio as gr
import numpy as np

from crab_core.errors import CrabError, InternalError
from crab_core.interpret import figures
from crab_core.interpret.control import HeadControl
from crab_core.tasks import TASKS, get_task

from . import compare, grid, present, render, views
from .engine import Engine, Request
from .messages import internal_message, user_message
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
        except InternalError as exc:  # the library's own failure (e.g. an attention read-out)
            log.exception("internal error in %s", fn.__name__)
            text = user_message(str(exc))
            if "internal" not in text.lower():
                text = internal_message(fn.__name__)
            raise gr.Error(text, title="Internal error", print_exception=False) from None
        except CrabError as exc:
            log.info("user error in %s: %s", fn.__name__, exc)
            raise gr.Error(
                user_message(str(exc)), title="Problem with the input", print_exception=False
            ) from None
        except Exception:  # noqa: BLE001 - never show a stack trace to the user
            log.exception("internal error in %s", fn.__name__)
            raise gr.Error(
                internal_message(fn.__name__), title="Internal error", print_exception=False
            ) from None

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


@functools.lru_cache(maxsize=4)
def _example_digests(folder: str) -> dict[tuple[str, str], dict]:
    out = {}
    for row in load_examples(Path(folder)):
        if row.get("video") and Path(row["video"]).is_file():
            digest = hashlib.sha1(Path(row["video"]).read_bytes()).hexdigest()[:20]
            out[(digest, row["task"])] = row
    return out


def example_for(video: str | None, task: str, folder: Path = EXAMPLES_DIR) -> dict | None:
    """The bundled example row whose clip is ``video`` (an upload copy named by its content's
    sha1, :class:`app.uploads.UploadIndex`) for ``task``, or None."""
    if video is None:
        return None
    return _example_digests(str(folder)).get((Path(video).stem, task))


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
            removed at exit). gpu: runs each model part (:mod:`app.gpu`; ZeroGPU's ``spaces.GPU`` on
            a Space), default in this process.
    """

    def __init__(self, engine: Engine, uploads: UploadIndex | None = None, gpu=None) -> None:
        from .gpu import on_host

        self.engine = engine
        self.uploads = uploads if uploads is not None else UploadIndex(private_dir("uploads"))
        wrap = gpu or on_host

        def compare_heads(record, reference=None, gt=None):
            return compare.compare_heads(engine, record, reference, gt)

        #: the model parts, each wrapped once (their arguments and results are plain data)
        self.calls = {
            "run": wrap("run", engine.run),
            "intervene": wrap("intervene", engine.run),
            "compare": wrap("compare", compare_heads),
            "attention": wrap("attention", engine.attention),
            "attribution": wrap("attribution", engine.attribution),
        }

    def task_changed(self, task: str):
        """Show the question box, the target second and the ground-truth upload only for tasks that
        use them; set the answer budget and the task's description."""
        spec = get_task(task)
        label = "Referring expression" if task == "ref-avs" else "Question"
        return (
            gr.update(visible=spec.needs_question, label=label),
            gr.update(visible=spec.needs_mask, maximum=spec.num_frames - 1),
            gr.update(value=self.engine.default_tokens(task)),
            f"*{spec.description}*",
            gr.update(visible=spec.needs_mask),
        )

    def _request(self, video, audio, image, task, question, frame_index, gt_mask, max_tokens) -> Request:
        spec = get_task(task)
        lease = self.uploads.lease()

        def canon(value):
            return self.uploads.add(_path(value), lease)

        return Request(
            task=spec.name,
            video=canon(video),
            audio=canon(audio),
            image=canon(image),
            question=(question or None) if spec.needs_question else None,
            frame_index=int(frame_index) if spec.needs_mask and frame_index is not None else None,
            gt_mask=canon(gt_mask) if spec.needs_mask else None,
            max_new_tokens=int(max_tokens) if max_tokens else None,
            lease=lease,
        )

    def _with_example(self, record) -> None:
        """Attach the ground truth and expected answer of a bundled example the request uses."""
        row = example_for(record.request.video, record.request.task)
        if row is not None:
            record.extras.update(
                gt_json=row.get("gt"), expected=row.get("expected"), example=row.get("label")
            )

    def _result_values(self, record):
        view = present.result_view(record, self.engine.class_names)
        return (
            present.status_line(record, self.engine.pipeline.trained),
            view.answer,
            view.summary,
            view.timeline,
            view.image,
            view.legend,
        )

    def panels(self, record):
        """Show only the result panels the run's task draws in (timeline; image and its legend)."""
        task = getattr(getattr(record, "result", None), "task", None)
        timeline = task in ("ave", "avvp")
        image = task is not None and (get_task(task).needs_mask or task == "arig")
        return (
            gr.update(visible=timeline),
            gr.update(visible=image),
            gr.update(visible=image),
            gr.update(visible=timeline),
            gr.update(visible=image),
            gr.update(visible=image),
        )

    def run(
        self,
        video,
        audio,
        image,
        task,
        question,
        frame_index,
        gt_mask,
        max_tokens,
        layer,
        projection,
        values,
        group,
        kind,
        progress=gr.Progress(),
    ):
        """Run the task; return the result panel, the three routing views and the new state."""
        progress(0.1, desc="Loading and encoding the clip")
        req = self._request(video, audio, image, task, question, frame_index, gt_mask, max_tokens)
        with _user_errors(req):
            record = self.calls["run"](req)
        record.request = req  # ours holds the upload lease (a GPU worker returns a copy)
        self._with_example(record)
        progress(0.9, desc="Rendering")
        figs = present.inspection_figures(record.trace, _opt_layer(layer), projection, values, group, kind)
        return (*self._result_values(record), *figs, record)

    def update_views(self, record, layer, projection, values, group, kind):
        """Re-render the routing views from the stored capture (no model call)."""
        return present.inspection_figures(
            getattr(record, "trace", None), _opt_layer(layer), projection, values, group, kind
        )

    def intervene(self, record, mode, heads, layers, renormalize, layer, projection, progress=gr.Progress()):
        """Re-run the last request with heads ablated / forced; show it beside the normal run, with
        the words that changed highlighted."""
        if record is None:
            raise gr.Error("Run a task first, then ablate or force heads.", print_exception=False)
        progress(0.1, desc="Re-running with the routing change")
        chosen = tuple(int(str(h).split()[-1]) for h in (heads or []))
        scope = None if not layers or views.ALL in layers else tuple(int(x) for x in layers)
        control = HeadControl(mode=mode, heads=chosen, layers=scope, renormalize=bool(renormalize))
        with _user_errors(record.request):
            variant = self.calls["intervene"](record.request, control)
        variant.request = record.request
        variant.extras.update({k: v for k, v in record.extras.items() if k in ("gt_json", "expected")})
        values = self._result_values(variant)
        if variant.result.text != record.result.text:
            changed = "**The answer changed:** " + grid.word_diff(record.result.text, variant.result.text)
        else:
            changed = "The answer is unchanged."
        shift = views.routing_shift(record.trace, variant.trace, _opt_layer(layer), projection)
        normal = present.result_view(record, self.engine.class_names)
        normal_md = "**Normal run:** " + html.escape(record.result.text) + "  \n" + normal.summary
        return (values[0] + "  \n" + changed, *values[1:], shift, normal_md)

    def compare(self, record, progress=gr.Progress()):
        """The normal answer and every single-head variant side by side (HTML grid)."""
        if record is None:
            raise gr.Error("Run a task first, then compare the heads.", print_exception=False)
        progress(0.1, desc="Running every single-head variant")
        gt = record.extras.get("gt_json")
        reference = record.extras.get("expected")
        with _user_errors(record.request):
            rows = self.calls["compare"](record, reference, gt)
        for row in rows[1:]:
            row.record.extras.update(gt_json=gt)
        shown = [present.result_view(r.record, self.engine.class_names) for r in rows]
        label = "the expected answer" if reference else "the normal answer"
        return grid.head_grid(rows, shown, record.result.task, gt, label)

    def _routing(self, choice) -> HeadControl | None:
        if choice in (None, "", "normal"):
            return None
        kind, head = str(choice).split()
        return HeadControl.only(int(head)) if kind == "only" else HeadControl.without(int(head))

    def attention(self, record, routing="normal", progress=gr.Progress()):
        """Attention on the frames, over the audio spectrogram, and the audio-visual interaction map
        (under the normal routing or a single-head variant)."""
        if record is None:
            raise gr.Error("Run a task first.", print_exception=False)
        progress(0.2, desc="Computing attention")
        control = self._routing(routing)
        with _user_errors(record.request):
            data = self.calls["attention"](record, control)
        summary, frames = data["summary"], data["frames"]
        maps = (
            data["patch_maps"]
            if data["patch_maps"] is not None
            else (None if data["image_map"] is None else data["image_map"][None])
        )
        weights = summary.frames if len(summary.frames) else np.array([summary.image])
        strip = None
        if frames is not None and maps is not None and len(weights):
            tiles = [views.patch_attention_overlay(f, m) for f, m in zip(frames, maps)]
            strip = views.frame_attention_strip(np.stack(tiles), weights[: len(tiles)], height=120)
        spec = None if data["fbank"] is None else data["fbank"].reshape(-1, data["fbank"].shape[-1])
        _, audio, inter, note = present.attention_outputs(summary, None, spec, None)
        where = "normal routing" if control is None else control.describe()
        return strip, audio, inter, f"{note} ({where}; {record.result.task} answer)"

    def attribution(self, record, n_steps, routing="normal", progress=gr.Progress()):
        """Integrated-gradients attribution (captum) of the answer to frames, seconds and the image
        (under the normal routing or a single-head variant), with IG's convergence delta."""
        if record is None:
            raise gr.Error("Run a task first.", print_exception=False)
        progress(0.2, desc="Integrated gradients")
        control = self._routing(routing)
        with _user_errors(record.request):
            att = self.calls["attribution"](record, n_steps=int(n_steps or 8), control=control)
        where = "normal routing" if control is None else control.describe()
        return figures.attribution_bars(
            att["frames"],
            att["seconds"],
            other={"image": att["image"]},
            delta=att["delta"],
            title=f"Integrated gradients of the answer's log-probability ({where})",
        )

    def list_examples(self) -> list[dict]:
        """The shipped SynthAV examples (paths relative to the server)."""
        return load_examples()

    def model_info(self) -> str:
        from .model_card import model_markdown

        return model_markdown(self.engine.pipeline)


#: Dropdown labels: short enough to show whole (the task's full description is shown under it).
TASK_LABELS = {
    "ave": "AVE — event localisation",
    "avvp": "AVVP — video parsing",
    "avqa": "AVQA — question answering",
    "arig": "ARIG — sounding-object box",
    "s4": "S4 — single-source segmentation",
    "ms3": "MS3 — multi-source segmentation",
    "avss": "AVSS — semantic segmentation",
    "ref-avs": "Ref-AVS — referring segmentation",
    "caption": "Captioning",
}


def task_choices() -> list[tuple[str, str]]:
    """``(label, task)`` for every registered task."""
    return [(TASK_LABELS.get(t, t), t) for t in TASKS]


def guard_all(handlers: Handlers) -> dict:
    """The guarded bound handlers by name."""
    names = (
        "panels",
        "task_changed",
        "run",
        "update_views",
        "intervene",
        "compare",
        "attention",
        "attribution",
        "list_examples",
        "model_info",
    )
    return {n: guarded(getattr(handlers, n)) for n in names}


__all__ = ["Handlers", "guard_all", "guarded", "load_examples", "task_choices", "render"]
