"""The Gradio layout: inputs, results beside the per-head inspection, and the model tab."""

from __future__ import annotations

from pathlib import Path

import gradio as gr

from crab_core.tasks import get_task

from . import render, views
from .engine import Engine
from .handlers import Handlers, guard_all, load_examples, task_choices
from .model_card import ablation_figure
from .uploads import UploadIndex

STYLES = Path(__file__).resolve().parents[1] / "assets" / "styles.css"
COLOURS = {
    "event": "#ffb570",
    "range": "#8fd3ff",
    "answer": "#9be89b",
    "obj": "#ffe17a",
    "tag": "#dddddd",
    "seg": "#ff8c8c",
    "audio_event": "#8fb8ff",
    "visual_event": "#ffc48f",
}
VALUES = [("router weights", "weights"), ("head contribution norms", "norms")]
GROUPS = [("per frame / second", "unit"), ("per token", "token")]
#: Seconds a session's last run is kept after it was made (then follow-ups ask for a new run).
SESSION_TTL_S = 3600


def css() -> str:
    return STYLES.read_text() if STYLES.is_file() else ""


def _inputs(engine: Engine) -> dict:
    with gr.Column(scale=1, min_width=320, elem_id="inputs"):
        c = {
            "video": gr.Video(label="Video (with its audio)", sources=["upload"], elem_id="in-video"),
            "audio": gr.Audio(
                label="Separate audio (optional)", type="filepath", sources=["upload"], elem_id="in-audio"
            ),
            "image": gr.Image(
                label="Image (use with audio instead of a video)",
                type="filepath",
                sources=["upload"],
                height=160,
                elem_id="in-image",
            ),
        }
        c["task"] = gr.Dropdown(task_choices(), value="ave", label="Task", elem_id="task")
        c["task_help"] = gr.Markdown("*" + get_task("ave").description + "*", elem_id="task-help")
        c["question"] = gr.Textbox(label="Question", visible=False, elem_id="question")
        c["frame"] = gr.Slider(
            0, 9, value=0, step=1, label="Target second (frame index)", visible=False, elem_id="frame"
        )
        c["gt"] = gr.File(
            label="Ground-truth mask (optional, scores the answer)",
            file_types=["image"],
            visible=False,
            height=80,
            elem_id="gt-mask",
        )
        c["tokens"] = gr.Slider(4, 500, value=engine.default_tokens("ave"), step=1, label="Max answer tokens")
        c["run"] = gr.Button("Run", variant="primary", elem_id="run")
    return c


def _results() -> dict:
    with gr.Column(scale=2, min_width=420, elem_id="results"):
        r = {
            "status": gr.Markdown(elem_id="status"),
            "answer": gr.HighlightedText(
                label="Answer", color_map=COLOURS, elem_id="answer", show_inline_category=False
            ),
            "summary": gr.Markdown(elem_id="summary"),
            "timeline": gr.Plot(label="Timeline", elem_id="timeline", visible=False),
            "image": gr.Image(
                label="Answer drawn on the frame",
                elem_id="result-image",
                height=360,
                interactive=False,
                visible=False,
            ),
            "legend": gr.HTML(elem_id="legend", visible=False),
        }
    return r


def _view_controls(engine: Engine) -> dict:
    layers = [views.ALL] + [str(i) for i in range(engine.num_layers)]
    projs = [views.ALL, *engine.model.config.lora.target_modules]
    with gr.Row():
        v = {
            "layer": gr.Dropdown(layers, value=views.ALL, label="Layer"),
            "proj": gr.Dropdown(projs, value=views.ALL, label="Projection"),
            "values": gr.Radio(VALUES, value="weights", label="Show"),
            "group": gr.Radio(GROUPS, value="unit", label="Tokens"),
            "kind": gr.Dropdown([views.ALL, *views.KIND_ORDER], value=views.ALL, label="Summary over tokens"),
        }
    return v


def _intervention(engine: Engine) -> dict:
    heads = [f"head {h}" for h in range(engine.num_heads)]
    with gr.Row():
        i = {
            "mode": gr.Radio(
                [("ablate (remove)", "ablate"), ("force (route every token to)", "force")],
                value="ablate",
                label="Intervention",
            ),
            "heads": gr.CheckboxGroup(heads, value=heads[:1], label="Heads", elem_id="heads"),
            "layers": gr.Dropdown(
                [views.ALL] + [str(x) for x in range(engine.num_layers)],
                value=[views.ALL],
                multiselect=True,
                label="In layers",
            ),
            "renorm": gr.Checkbox(False, label="Renormalise the remaining heads"),
        }
    i["go"] = gr.Button("Re-run with this routing", elem_id="ablate")
    with gr.Row():
        with gr.Column():
            i["normal"] = gr.Markdown("**Normal run:** run a task first.", elem_id="normal-run")
            i["shift"] = gr.Plot(label="Head contributions: normal vs. variant", show_label=False)
        with gr.Column(elem_id="variant"):
            i["status"] = gr.Markdown(elem_id="variant-status")
            i["answer"] = gr.HighlightedText(
                label="Variant answer",
                color_map=COLOURS,
                elem_id="variant-answer",
                show_inline_category=False,
            )
            i["summary"] = gr.Markdown()
            i["timeline"] = gr.Plot(label="Variant timeline", elem_id="variant-timeline", visible=False)
            i["image"] = gr.Image(
                label="Variant drawn on the frame",
                height=300,
                interactive=False,
                elem_id="variant-image",
                visible=False,
            )
            i["legend"] = gr.HTML(visible=False)
    return i


def _header(engine: Engine) -> None:
    p = engine.pipeline
    gr.Markdown(
        f"# Crab Studio\nAudio-visual question answering, grounding and segmentation with "
        f"**{p.name}**, and a look inside its I-LoRA heads.",
        elem_id="title",
    )
    if not p.trained:
        gr.Markdown(
            "⚠️ **This is a randomly initialised crab-tiny (no trained weights found): answers are "
            "noise.** Its LoRA heads carry small random weights so that head ablations visibly change the "
            "output; the inspection views still work.",
            elem_id="random-warning",
        )
    if p.model.config.name == "crab-tiny":
        gr.Markdown(
            "crab-tiny knows only **SynthAV** scenes (simple synthetic shapes and sounds), not real-world "
            "clips. Try the examples below.",
            elem_classes=["domain-note"],
        )


def build_demo(engine: Engine, uploads: UploadIndex | None = None, gpu=None) -> gr.Blocks:
    """Build the whole app around ``engine`` (not launched); ``uploads`` holds the upload copies
    (default: a new private folder); ``gpu`` runs the model calls (:mod:`app.gpu`)."""
    h = guard_all(Handlers(engine, uploads, gpu))
    with gr.Blocks(title="Crab Studio", delete_cache=(600, 3600)) as demo:
        _header(engine)
        # a session's last run (dropped SESSION_TTL_S after its last update, or when the tab closes)
        state = gr.State(None, time_to_live=SESSION_TTL_S)
        with gr.Tab("Run and inspect"):
            with gr.Row():
                c = _inputs(engine)
                r = _results()
            rows = load_examples()
            if rows:
                gr.Examples(
                    [
                        [
                            x.get("video"),
                            x["task"],
                            x.get("question") or "",
                            x.get("frame_index") or 0,
                            x.get("gt_mask"),
                        ]
                        for x in rows
                    ],
                    [c["video"], c["task"], c["question"], c["frame"], c["gt"]],
                    label="SynthAV examples",
                    example_labels=[x.get("label", x["task"]) for x in rows],
                )
            with gr.Tab("Router"):
                v = _view_controls(engine)
                heat = gr.Plot(label="Router heatmap", elem_id="router-heatmap", show_label=False)
                with gr.Row():
                    summ = gr.Plot(label="Layer × head summary", elem_id="layer-head", show_label=False)
                    contrib = gr.Plot(
                        label="Per-head contributions", elem_id="head-contrib", show_label=False
                    )
            with gr.Tab("Heads side by side"):
                gr.Markdown(
                    "Re-runs the clip (its encoding is cached) with **only head h** and **without head h** "
                    "for every head, beside the normal answer."
                )
                cmp_go = gr.Button("Compare every single-head variant", elem_id="compare")
                cmp_grid = gr.HTML(elem_id="head-grid")
            with gr.Tab("Ablate / force heads"):
                i = _intervention(engine)
            routes = _routing_choices(engine)
            with gr.Tab("Attention"):
                with gr.Row():
                    att_route = gr.Dropdown(routes, value="normal", label="Routing", elem_id="att-routing")
                    att_go = gr.Button("Compute attention maps", elem_id="attention")
                att_note = gr.Markdown(elem_id="attention-note")
                att_frames = gr.Image(
                    label="Attention on the frames (Q-Former maps on patches; bar = share)",
                    interactive=False,
                    elem_id="att-frames",
                    height=160,
                )
                with gr.Row():
                    att_audio = gr.Plot(
                        label="Attention over the audio", elem_id="att-audio", show_label=False
                    )
                    att_inter = gr.Plot(
                        label="Audio-visual interaction", elem_id="att-inter", show_label=False
                    )
            with gr.Tab("Attribution"):
                with gr.Row():
                    steps = gr.Slider(2, 64, value=8, step=1, label="Integrated-gradient steps")
                    attr_route = gr.Dropdown(routes, value="normal", label="Routing", elem_id="attr-routing")
                attr_go = gr.Button("Compute attributions (captum)", elem_id="attribution")
                attr_plot = gr.Plot(label="Attribution", elem_id="attr-plot", show_label=False)
        with gr.Tab("Model"):
            info = gr.Markdown(elem_id="model-info")
            figure = ablation_figure(engine.pipeline.model.config.name) if engine.pipeline.trained else None
            if figure is not None:  # the I-LoRA ablation of this geometry (docs/science.md)
                gr.Image(str(figure), label="I-LoRA ablation: transfer per task", elem_id="ablation-figure")
        _wire(
            demo,
            h,
            state,
            c,
            r,
            v,
            i,
            (heat, summ, contrib),
            (att_go, att_frames, att_audio, att_inter, att_note, att_route),
            (steps, attr_go, attr_plot, attr_route),
            info,
            (cmp_go, cmp_grid),
        )
    return demo


def _routing_choices(engine: Engine) -> list[tuple[str, str]]:
    heads = range(engine.num_heads)
    return [
        ("normal routing", "normal"),
        *[(f"only head {h}", f"only {h}") for h in heads],
        *[(f"without head {h}", f"without {h}") for h in heads],
    ]


def _wire(demo, h, state, c, r, v, i, figs, att, attr, info, cmp) -> None:
    view_in = [v["layer"], v["proj"], v["values"], v["group"], v["kind"]]
    c["task"].change(
        h["task_changed"],
        c["task"],
        [c["question"], c["frame"], c["tokens"], c["task_help"], c["gt"]],
        api_name="task_changed",
    )
    run_in = [
        c["video"],
        c["audio"],
        c["image"],
        c["task"],
        c["question"],
        c["frame"],
        c["gt"],
        c["tokens"],
        *view_in,
    ]
    run_out = [r["status"], r["answer"], r["summary"], r["timeline"], r["image"], r["legend"], *figs, state]
    panels = [r["timeline"], r["image"], r["legend"], i["timeline"], i["image"], i["legend"]]
    c["run"].click(h["run"], run_in, run_out, api_name="run", concurrency_id="model").then(
        h["panels"], state, panels, api_name=False, queue=False
    )
    for ctl in view_in:
        ctl.change(h["update_views"], [state, *view_in], list(figs), api_name=False, queue=False)
    gr.Button("refresh views", visible=False).click(
        h["update_views"], [state, *view_in], list(figs), api_name="update_views"
    )
    i["go"].click(
        h["intervene"],
        [state, i["mode"], i["heads"], i["layers"], i["renorm"], v["layer"], v["proj"]],
        [
            i["status"],
            i["answer"],
            i["summary"],
            i["timeline"],
            i["image"],
            i["legend"],
            i["shift"],
            i["normal"],
        ],
        api_name="intervene",
        concurrency_id="model",
    )
    cmp[0].click(h["compare"], state, cmp[1], api_name="compare", concurrency_id="model")
    att[0].click(
        h["attention"],
        [state, att[5]],
        [att[1], att[2], att[3], att[4]],
        api_name="attention",
        concurrency_id="model",
    )
    attr[1].click(
        h["attribution"], [state, attr[0], attr[3]], attr[2], api_name="attribution", concurrency_id="model"
    )
    demo.load(h["model_info"], None, info, api_name="model_info")
    hidden = gr.JSON(visible=False)
    gr.Button("examples", visible=False).click(h["list_examples"], None, hidden, api_name="list_examples")


__all__ = ["build_demo", "css", "render"]
