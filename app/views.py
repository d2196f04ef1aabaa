"""Per-head inspection views (router, heads, attention, attribution) on top of the library's figure
builders (:mod:`crab_core.interpret.figures`: one set of figures for the app, the profile reports and
the docs); here only what is app-specific: image strips and the normal-vs-variant comparison.

Every function takes captured arrays (a :class:`crab_core.interpret.capture.RoutingTrace` or any
object with the same fields, plain numpy arrays for attention) and returns a plotly figure or an
RGB image, so views re-render from the last run's capture without touching the model.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import plotly.graph_objects as go
from PIL import Image

from crab_core.interpret import figures

#: Display order of token groups (prompt media first, then text, then the answer).
KIND_ORDER = ("video", "audio", "image", "text", "answer", "seg")
KIND_COLOURS = figures.KIND_COLORS
ALL = "all"


def router_heatmap(
    trace, layer=ALL, projection=ALL, values: str = "weights", group: str = "unit"
) -> go.Figure:
    """The library's router heatmap (:func:`crab_core.interpret.figures.router_heatmap`)."""
    return figures.router_heatmap(trace, layer, projection, values, group)


def layer_head_summary(trace, kind: str = ALL, values: str = "weights") -> go.Figure:
    """Layer x head heatmap of the mean router weight (or norm) over the tokens of ``kind``."""
    arr = np.asarray(getattr(trace, values), dtype=np.float32)
    sel = np.ones(len(arr), bool) if kind == ALL else np.asarray(trace.kinds) == kind
    if not sel.any():
        from .render import empty_figure

        return empty_figure(f"No {kind} tokens in this run.")
    with np.errstate(all="ignore"):
        mean = np.nan_to_num(np.nanmean(arr[sel], axis=0))  # (n_layers, n_proj, H)
    what = "router weight" if values == "weights" else "head contribution norm"
    return figures.layer_head_summary(
        mean,
        list(trace.layers),
        list(trace.projections),
        f"Mean {what} per layer × head ({kind} tokens)",
        values,
    )


def head_contributions(trace, layer=ALL, projection=ALL) -> go.Figure:
    """The library's per-head contribution bars."""
    return figures.head_contributions(trace, layer, projection)


def routing_shift(normal, variant, layer=ALL, projection=ALL) -> go.Figure:
    """Contribution norms per head and kind: normal run vs. the ablated / forced run (same prompt)."""
    fig = go.Figure()
    for trace, name, colour in ((normal, "normal", "#1f77b4"), (variant, "variant", "#d62728")):
        if trace is None:
            continue
        data = figures.trace_values(trace, "norms", layer, projection)
        kinds = np.asarray(trace.kinds)
        x, y = [], []
        for k in KIND_ORDER:
            sel = kinds == k
            if sel.any():
                for h in range(data.shape[1]):
                    x.append(f"{k} h{h}")
                    y.append(float(data[sel, h].mean()))
        fig.add_trace(go.Bar(name=name, x=x, y=y, marker_color=colour))
    fig.update_layout(
        barmode="group",
        height=320,
        margin=dict(l=10, r=10, t=105, b=60),
        title=figures.explained_title("Head contributions: normal vs. variant", figures.HEAD_NORM),
        xaxis=dict(title=dict(text="token kind and head")),
        yaxis=dict(title=dict(text="mean norm")),
    )
    return fig


def frame_attention_strip(frames: np.ndarray, weights: Sequence[float], height: int = 96) -> np.ndarray:
    """Frames side by side at their aspect ratio, each tinted by its share of attention (bright =
    attended, dark = ignored) with a bar under it (full width = the most attended frame).

    Args:
        frames: ``(T, H, W, 3)`` uint8. weights: ``(T,)`` non-negative attention per frame.
        height: tile height in pixels; the width follows the frames' aspect ratio.

    Returns:
        ``(height + 6, T * width + 2 * (T - 1), 3)`` uint8.
    """
    w = np.asarray(weights, dtype=np.float32)
    w = w / w.max() if w.size and w.max() > 0 else np.zeros_like(w)
    tiles = []
    for f, a in zip(frames, w):
        fh, fw = np.asarray(f).shape[:2]
        width = max(1, int(round(height * fw / max(fh, 1))))
        img = Image.fromarray(np.asarray(f, np.uint8)).resize((width, height))
        arr = np.asarray(img, np.float32) * (0.25 + 0.75 * float(a))
        bar = np.zeros((6, width, 3), np.float32)
        bar[:, : max(1, int(round(width * float(a))))] = (255, 200, 0)
        tiles.append(np.concatenate([arr, bar], 0))
        tiles.append(np.full((height + 6, 2, 3), 255, np.float32))
    return (
        np.concatenate(tiles[:-1], 1).astype(np.uint8) if tiles else np.zeros((height, height, 3), np.uint8)
    )


def patch_attention_overlay(frame: np.ndarray, patch_map: np.ndarray, alpha: float = 0.6) -> np.ndarray:
    """Upsample a ``(g, g)`` patch attention map over an ``(H, W, 3)`` frame as a heat tint."""
    h, w = frame.shape[:2]
    pm = np.asarray(patch_map, np.float32)
    pm = (pm - pm.min()) / (pm.max() - pm.min() + 1e-9)
    up = (
        np.asarray(Image.fromarray((pm * 255).astype(np.uint8)).resize((w, h), Image.BILINEAR), np.float32)
        / 255
    )
    heat = np.stack([up * 255, up * 80, (1 - up) * 60], -1)
    return ((1 - alpha) * np.asarray(frame, np.float32) + alpha * heat).clip(0, 255).astype(np.uint8)


def audio_attention(
    spectrogram: np.ndarray, weights: Sequence[float], seconds: float | None = None
) -> go.Figure:
    """Log-mel spectrogram (time x mel) with the attention per second drawn on top.

    Args:
        spectrogram: ``(frames, mel)`` (e.g. the fbank of the whole clip).
        weights: ``(n_seconds,)`` attention given to each second's audio tokens.
        seconds: clip length (default: ``len(weights)``).
    """
    spec = np.asarray(spectrogram, np.float32)
    w = np.asarray(weights, np.float32)
    total = float(seconds or len(w) or 1)
    t = np.linspace(0, total, spec.shape[0]) if spec.size else np.zeros(0)
    fig = go.Figure(go.Heatmap(z=spec.T, x=t, colorscale="Greys", showscale=False, hoverinfo="skip"))
    if w.size:
        wn = w / w.max() if w.max() > 0 else w
        step = total / len(w)
        mel = spec.shape[1] if spec.ndim == 2 else 1
        fig.add_trace(
            go.Scatter(
                x=(np.arange(len(w)) + 0.5) * step,
                y=wn * mel,
                mode="lines+markers",
                line=dict(color="#ff7f0e", width=3),
                name="attention",
                hovertemplate="second %{x:.1f}: %{y:.1f}<extra></extra>",
            )
        )
    fig.update_layout(
        title="Attention over the audio (per second) on the log-mel spectrogram",
        height=260,
        margin=dict(l=10, r=10, t=40, b=30),
        xaxis=dict(title="second"),
        yaxis=dict(title="mel bin"),
        showlegend=False,
    )
    return fig


interaction_map = figures.interaction_map
attribution_bars = figures.attribution_bars
