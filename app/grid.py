"""HTML of the heads-side-by-side grid (pure: rows in, one HTML string out).

Each cell shows one routing variant: its answer with the words that differ from the normal answer
highlighted (green: new or changed words, struck through: words of the normal answer it dropped),
the parsed result, the drawing (timeline, box or mask at the input's aspect ratio), its IoU against
the normal run and against the ground truth, and the reference answer's NLL under that routing.
"""

from __future__ import annotations

import base64
import difflib
import html
import io
from collections.abc import Sequence

import numpy as np
from PIL import Image

from . import render
from .compare import _events

CELL_IMAGE_WIDTH = 240
_TL_COLOURS = {"av": "#e4572e", "audio": "#1f77b4", "visual": "#ff7f0e", "truth": "#29a329"}


def word_diff(base: str, text: str) -> str:
    """``text`` as HTML with the words that differ from ``base`` marked (``<mark>`` new / changed,
    ``<del>`` words of ``base`` that are missing)."""
    a, b = (base or "").split(), (text or "").split()
    out = []
    for op, i1, i2, j1, j2 in difflib.SequenceMatcher(None, a, b, autojunk=False).get_opcodes():
        if op == "equal":
            out.append(html.escape(" ".join(b[j1:j2])))
            continue
        if i2 > i1:
            out.append(f'<del class="crab-del">{html.escape(" ".join(a[i1:i2]))}</del>')
        if j2 > j1:
            out.append(f'<mark class="crab-ins">{html.escape(" ".join(b[j1:j2]))}</mark>')
    return " ".join(out) or "<i>(empty answer)</i>"


def png_tag(image: np.ndarray, width: int = CELL_IMAGE_WIDTH, alt: str = "") -> str:
    """An ``<img>`` with the image inline (PNG, resized to ``width`` keeping the aspect ratio)."""
    img = Image.fromarray(np.asarray(image, np.uint8))
    height = max(1, round(img.height * width / img.width))
    buf = io.BytesIO()
    img.resize((width, height), Image.BILINEAR).save(buf, format="PNG", optimize=True)
    data = base64.b64encode(buf.getvalue()).decode()
    return (
        f'<img src="data:image/png;base64,{data}" width="{width}" height="{height}" alt="{html.escape(alt)}">'
    )


def mini_timeline(task: str, parsed, gt: dict | None = None, num: int = 10) -> str:
    """AVE / AVVP events as rows of ``num`` one-second cells (a ground-truth row when ``gt``)."""
    rows: dict[str, tuple[str, set[int]]] = {}
    for mod, name, sec in sorted(_events(task, parsed)):
        rows.setdefault(f"{'' if mod == 'av' else mod + ': '}{name}", (_TL_COLOURS[mod], set()))[1].add(sec)
    if gt is not None:
        for mod, name, sec in sorted(_events(task, gt=gt)):
            rows.setdefault(
                f"truth {'' if mod == 'av' else mod + ': '}{name}", (_TL_COLOURS["truth"], set())
            )[1].add(sec)
    if not rows:
        return '<div class="crab-tl-empty">no event</div>'
    lines = []
    for label, (colour, secs) in rows.items():
        cells = "".join(
            f'<span style="background:{colour if s in secs else "#eee"}"></span>' for s in range(num)
        )
        lines.append(
            f'<div class="crab-tl-row"><b>{html.escape(label)}</b><div class="crab-tl">{cells}</div></div>'
        )
    return "".join(lines)


def _fmt(metric) -> str:
    return "–" if metric is None else f"{metric[0]} {metric[1]:.2f}"


def head_grid(
    rows: Sequence,
    views: Sequence,
    task: str,
    gt: dict | None = None,
    reference_label: str = "the normal answer",
) -> str:
    """The grid: one card per row.

    Args:
        rows: :class:`app.compare.HeadRow` s (the first is the normal run).
        views: the :class:`app.present.ResultView` of each row (summary and drawing).
        task: task name. gt: ground-truth dict (timelines get a truth row).
        reference_label: what the NLL is measured on.
    """
    normal = rows[0].record.result.text if rows else ""
    cards = []
    for row, view in zip(rows, views, strict=True):
        res = row.record.result
        answer = html.escape(res.text) if row.name == "normal" else word_diff(normal, res.text)
        if task in ("ave", "avvp"):
            drawing = mini_timeline(task, res.parsed, gt)
        elif view.image is not None:
            drawing = png_tag(view.image, alt=f"{row.name} drawing")
        else:
            drawing = ""
        badge = (
            ""
            if row.name == "normal"
            else (
                '<span class="crab-badge changed">answer changed</span>'
                if row.changed
                else '<span class="crab-badge same">same answer</span>'
            )
        )
        nll = "–" if row.nll is None else f"{row.nll:.3f}"
        cards.append(
            f'<div class="crab-card" data-variant="{html.escape(row.name)}">'
            f"<h4>{html.escape(row.name)} {badge}</h4>"
            f'<div class="crab-answer">{answer}</div>'
            '<div class="crab-parsed">'
            f"{render.markdown_inline(render.answer_summary(task, res.parsed))}</div>"
            f'<div class="crab-drawing">{drawing}</div>'
            '<div class="crab-metrics">vs normal: '
            f"<b>{_fmt(row.vs_normal) if row.name != 'normal' else '—'}</b>"
            f" · vs ground truth: <b>{_fmt(row.vs_gt)}</b>"
            f" · NLL of {html.escape(reference_label)}: <b>{nll}</b>"
            "</div></div>"
        )
    legend = (
        '<p class="crab-grid-legend"><mark class="crab-ins">new or changed words</mark> '
        '<del class="crab-del">words of the normal answer that are gone</del> · <b>only hN</b>: every token '
        "routed to head N alone · <b>without hN</b>: head N removed, "
        "the other heads keep their router weights "
        "· NLL: mean per-token negative log-likelihood (nats) of the reference answer under that routing "
        "(lower = the variant finds it more likely)</p>"
    )
    return f'<div class="crab-grid">{"".join(cards)}</div>{legend}'
