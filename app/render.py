"""Pure render functions for task results: text highlighting, timelines, boxes and mask overlays.

Nothing here touches a model or Gradio; every function takes plain data (a parsed prediction,
numpy arrays) and returns plain data (lists of tuples, RGB arrays, plotly figures, markdown).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np
import plotly.graph_objects as go
from PIL import Image, ImageDraw

from crab_core.media.mask import avsbench_palette

#: Box coordinates in Crab answers are in this pixel space, whatever the frame size.
BOX_SPACE = 224.0
_TAG_RE = re.compile(r"(</?[a-z_]+(?:_\d+)?>)")
_OPEN_RE = re.compile(r"<([a-z_]+)>")
_CLOSE_RE = re.compile(r"</([a-z_]+)>")
_SEG_RE = re.compile(r"<mask_(?:\d+|start|end)>")
MASK_RGB = (255, 64, 64)
GT_RGB = (64, 255, 64)
BOX_RGB = (255, 220, 0)


def highlight_answer(text: str) -> list[tuple[str, str | None]]:
    """Split an answer into ``(piece, label)`` pairs for ``gr.HighlightedText``.

    Tags (``<event>``) are labelled ``tag``, seg tokens (``<mask_0>``, ``<mask_start>``) ``seg``,
    text inside a tag pair by the tag name (``event``, ``range``, ``answer``, ``obj`` ...), other
    text ``None``.
    """
    out: list[tuple[str, str | None]] = []
    stack: list[str] = []
    for piece in _TAG_RE.split(text or ""):
        if not piece:
            continue
        if _SEG_RE.fullmatch(piece):
            out.append((piece, "seg"))
        elif (m := _OPEN_RE.fullmatch(piece)) is not None:
            stack.append(m.group(1))
            out.append((piece, "tag"))
        elif (m := _CLOSE_RE.fullmatch(piece)) is not None:
            if m.group(1) in stack:
                while stack and stack.pop() != m.group(1):
                    pass
            out.append((piece, "tag"))
        else:
            out.append((piece, stack[-1] if stack else None))
    return out


def answer_summary(task: str, parsed) -> str:
    """One markdown line that states the parsed answer (or why it could not be read)."""
    err = getattr(parsed, "parse_error", None)
    if task == "ave":
        body = f"event **{parsed.event}**, seconds {parsed.range}" if parsed.event else ""
    elif task == "avvp":
        fmt = "; ".join(f"{c} {list(r)}" for c, r in parsed.audio)
        vfmt = "; ".join(f"{c} {list(r)}" for c, r in parsed.visual)
        body = f"audio: {fmt or 'none'} — visual: {vfmt or 'none'}"
    elif task == "avqa":
        body = f"answer **{parsed.answer}**" if parsed.answer else ""
    elif task == "arig":
        body = f"object **{parsed.object}**, box {parsed.box}" if parsed.box else ""
    elif task in ("s4", "ms3", "avss", "ref-avs"):
        body = f"object **{parsed.object}**, seg tokens {'complete' if parsed.has_seg_tokens else 'missing'}"
    else:
        body = getattr(parsed, "text", "")
    if err:
        return f"{body} _(parse: {err})_" if body else f"_The answer could not be parsed: {err}._"
    return body


def _timeline_figure(
    rows: list[tuple[str, str, Sequence[tuple[int, int]]]], num: int, title: str
) -> go.Figure:
    """Gantt-like figure: one row per ``(label, colour, ranges)``; seconds on x, end exclusive."""
    fig = go.Figure()
    for label, colour, ranges in rows:
        for start, end in ranges:
            fig.add_trace(
                go.Bar(
                    x=[max(end - start, 0)],
                    base=[start],
                    y=[label],
                    orientation="h",
                    marker_color=colour,
                    showlegend=False,
                    hovertemplate=f"{label}: {start}–{end} s<extra></extra>",
                )
            )
    fig.update_layout(
        title=title,
        barmode="overlay",
        height=140 + 28 * max(len(rows), 1),
        margin=dict(l=10, r=10, t=40, b=30),
        xaxis=dict(range=[0, num], dtick=1, title="second"),
        yaxis=dict(autorange="reversed"),
    )
    return fig


def ave_timeline(parsed, gt: dict | None = None, num: int = 10) -> go.Figure:
    """Timeline of an AVE prediction (and its ground truth ``{"event", "range"}`` when given)."""
    rows = []
    if parsed.range is not None:
        rows.append((f"predicted: {parsed.event}", "#e4572e", [tuple(parsed.range)]))
    elif not (gt and gt.get("range") is not None):
        return empty_figure("The answer names no event range.")
    if gt and gt.get("range") is not None:
        rows.append((f"truth: {gt.get('event')}", "#29a329", [tuple(gt["range"])]))
    return _timeline_figure(rows, num, "Audio-visual event")


def avvp_timeline(parsed, gt: dict | None = None, num: int = 10) -> go.Figure:
    """Timeline with one row per (modality, event) of an AVVP prediction (+ ground truth)."""
    rows = [(f"audio: {c}", "#1f77b4", list(r)) for c, r in parsed.audio]
    rows += [(f"visual: {c}", "#ff7f0e", list(r)) for c, r in parsed.visual]
    for kind in ("audio", "visual"):
        for ev in (gt or {}).get(kind, []):
            rows.append((f"truth {kind}: {ev['event']}", "#29a329", [tuple(x) for x in ev["ranges"]]))
    return _timeline_figure(rows, num, "Audio and visual events")


def draw_box(
    frame: np.ndarray,
    box: Sequence[float] | None,
    gt_box: Sequence[float] | None = None,
    label: str | None = None,
    space: float = BOX_SPACE,
) -> np.ndarray:
    """Draw the predicted box (yellow) and the ground-truth box (green) on an ``(H, W, 3)`` frame.

    Boxes are ``(x1, y1, x2, y2)`` in ``space`` pixels (Crab's 224-pixel convention) of the square
    model input; x and y are scaled separately, so a frame at its own aspect ratio gets them in place.
    """
    img = Image.fromarray(np.ascontiguousarray(frame, dtype=np.uint8)).convert("RGB")
    sx, sy = img.width / space, img.height / space  # the model saw the whole frame squashed to a square
    draw = ImageDraw.Draw(img)
    for b, colour in ((gt_box, GT_RGB), (box, BOX_RGB)):
        if b is not None:
            x1, y1, x2, y2 = (float(v) for v in b)
            draw.rectangle(
                [x1 * sx, y1 * sy, x2 * sx, y2 * sy], outline=colour, width=max(1, max(img.size) // 120)
            )
    if label and box is not None:
        draw.text((float(box[0]) * sx + 3, float(box[1]) * sy + 2), label, fill=BOX_RGB)
    return np.asarray(img)


def _fit(mask: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    if mask.shape == shape:
        return mask
    img = Image.fromarray(mask.astype(np.uint8) if mask.dtype != np.uint8 else mask)
    return np.asarray(img.resize((shape[1], shape[0]), Image.NEAREST))


def _outline(mask: np.ndarray) -> np.ndarray:
    m = np.pad(mask.astype(bool), 1)
    inner = m[1:-1, 1:-1] & m[:-2, 1:-1] & m[2:, 1:-1] & m[1:-1, :-2] & m[1:-1, 2:]
    return m[1:-1, 1:-1] & ~inner


def mask_overlay(
    frame: np.ndarray, mask: np.ndarray | None, gt: np.ndarray | None = None, alpha: float = 0.5
) -> np.ndarray:
    """Blend a binary mask (red) on an ``(H, W, 3)`` frame; the ground truth is drawn as a green outline."""
    out = np.asarray(frame, dtype=np.float32).copy()
    hw = out.shape[:2]
    if mask is not None:
        m = _fit(np.asarray(mask) > 0, hw).astype(bool)
        out[m] = (1 - alpha) * out[m] + alpha * np.array(MASK_RGB, np.float32)
    if gt is not None:
        edge = _outline(_fit(np.asarray(gt) > 0, hw).astype(bool))
        if max(hw) >= 200:  # 2-pixel outline on display-size frames
            edge = edge | np.roll(edge, 1, 0) | np.roll(edge, 1, 1)
        out[edge] = GT_RGB
    return out.clip(0, 255).astype(np.uint8)


def class_overlay(
    frame: np.ndarray, class_map: np.ndarray, class_names: Sequence[str] | None = None, alpha: float = 0.55
) -> tuple[np.ndarray, list[tuple[str, str]]]:
    """Colour an AVSS class map (0 = background) on a frame with the AVSBench palette.

    Returns:
        ``(image, legend)`` with legend ``[(class name, "#rrggbb"), ...]`` for the classes present.
    """
    pal = avsbench_palette()
    out = np.asarray(frame, dtype=np.float32).copy()
    cmap = _fit(np.asarray(class_map).astype(np.int64).clip(0, len(pal) - 1), out.shape[:2]).astype(np.int64)
    legend = []
    for c in sorted(int(v) for v in np.unique(cmap) if v > 0):
        sel = cmap == c
        colour = pal[c].astype(np.float32)
        out[sel] = (1 - alpha) * out[sel] + alpha * colour
        name = class_names[c - 1] if class_names and c - 1 < len(class_names) else f"class {c}"
        legend.append((name, "#{:02x}{:02x}{:02x}".format(*(int(v) for v in pal[c]))))
    return out.clip(0, 255).astype(np.uint8), legend


def legend_markdown(legend: Sequence[tuple[str, str]]) -> str:
    """HTML legend (coloured squares) for :func:`class_overlay`."""
    if not legend:
        return "_No class other than background was predicted._"
    items = [
        f'<span style="display:inline-block;width:12px;height:12px;background:{c};'
        f'margin:0 4px 0 10px;border:1px solid #555"></span>{name}'
        for name, c in legend
    ]
    return "".join(items)


def _swatch(colour: str, outline: bool = False) -> str:
    style = (
        f"border:2px solid {colour};background:transparent"
        if outline
        else f"background:{colour};border:1px solid #555"
    )
    return f'<span style="display:inline-block;width:12px;height:12px;{style};margin:0 4px 0 10px"></span>'


def overlay_legend(task: str, has_gt: bool) -> str:
    """HTML legend of a drawing: prediction vs ground truth colours (box for ARIG, mask otherwise)."""
    hexed = "#{:02x}{:02x}{:02x}"
    if task == "arig":
        items = [(_swatch(hexed.format(*BOX_RGB), True), "predicted box")]
    else:
        items = [(_swatch(hexed.format(*MASK_RGB)), "predicted mask")]
    if has_gt:
        items.append(
            (
                _swatch(hexed.format(*GT_RGB), True),
                "ground truth" + (" box" if task == "arig" else " outline"),
            )
        )
    else:
        items.append(("", '<i style="margin-left:10px">(no ground truth given)</i>'))
    return '<div class="crab-legend">' + "".join(f"{sw}{text}" for sw, text in items) + "</div>"


def markdown_inline(text: str) -> str:
    """``**bold**`` / ``_italic_`` markdown of one line as escaped HTML."""
    import html

    out = html.escape(text or "")
    out = re.sub(r"\*\*(.+?)\*\*", r"<b>\1</b>", out)
    return re.sub(r"(?<![\w])_(.+?)_(?![\w])", r"<i>\1</i>", out)


def mask_scores(pred: np.ndarray | None, gt: np.ndarray | None) -> dict[str, float] | None:
    """IoU and F-score (beta^2 = 0.3, as AVSBench) of a binary mask against ground truth."""
    if pred is None or gt is None:
        return None
    g = np.asarray(gt) > 0
    p = _fit(np.asarray(pred) > 0, g.shape).astype(bool)
    inter, union = float((p & g).sum()), float((p | g).sum())
    iou = 1.0 if union == 0 else inter / union
    prec = inter / max(float(p.sum()), 1e-9) if p.any() else float(not g.any())
    rec = inter / max(float(g.sum()), 1e-9) if g.any() else 1.0
    f = 0.0 if prec + rec == 0 else 1.3 * prec * rec / (0.3 * prec + rec)
    return {"iou": round(iou, 4), "f_score": round(f, 4)}


def class_scores(pred: np.ndarray | None, gt: np.ndarray | None) -> dict[str, float] | None:
    """Mean IoU over the classes present in prediction or ground truth (background excluded)."""
    if pred is None or gt is None:
        return None
    g = np.asarray(gt).astype(np.int64)
    p = _fit(np.asarray(pred).astype(np.int64), g.shape).astype(np.int64)
    classes = sorted((set(np.unique(g)) | set(np.unique(p))) - {0})
    if not classes:
        return {"miou": 1.0}
    ious = [
        float(((p == c) & (g == c)).sum()) / max(float(((p == c) | (g == c)).sum()), 1.0) for c in classes
    ]
    return {"miou": round(float(np.mean(ious)), 4)}


def scores_markdown(scores: dict[str, float] | None) -> str:
    """Scores as one markdown line ("" when there is no ground truth)."""
    if not scores:
        return ""
    return "Against the ground truth: " + ", ".join(f"**{k}** {v:.3f}" for k, v in scores.items())


def empty_figure(message: str = "Run a task to see this view.") -> go.Figure:
    """A blank figure carrying a short message (used before the first run and for N/A views)."""
    fig = go.Figure()
    fig.add_annotation(text=message, showarrow=False, x=0.5, y=0.5, xref="paper", yref="paper")
    fig.update_layout(
        height=200, xaxis=dict(visible=False), yaxis=dict(visible=False), margin=dict(l=10, r=10, t=10, b=10)
    )
    return fig
