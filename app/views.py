"""Pure render functions for the per-head inspection views (router, heads, attention, attribution).

Every function takes captured arrays (a :class:`crab_core.interpret.capture.RoutingTrace` or any
object with the same fields, plain numpy arrays for attention) and returns a plotly figure or an
RGB image, so views re-render from the last run's capture without touching the model.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import plotly.graph_objects as go
from PIL import Image

#: Display order of token groups (prompt media first, then text, then the answer).
KIND_ORDER = ("video", "audio", "image", "text", "answer", "seg")
KIND_COLOURS = {"video": "#ff7f0e", "audio": "#1f77b4", "image": "#9467bd", "text": "#7f7f7f",
                "answer": "#2ca02c", "seg": "#d62728"}
ALL = "all"


def token_order(trace) -> np.ndarray:
    """Token indices grouped by kind (:data:`KIND_ORDER`), then frame / second, then position."""
    rank = {k: i for i, k in enumerate(KIND_ORDER)}
    keys = [(rank.get(str(k), len(rank)), int(u), i) for i, (k, u) in enumerate(zip(trace.kinds, trace.units))]
    return np.array([k[2] for k in sorted(keys)], dtype=np.int64)


def _group_labels(trace, order: np.ndarray) -> list[str]:
    short = {"video": "f", "audio": "s"}
    out = []
    for i in order:
        k, u = str(trace.kinds[i]), int(trace.units[i])
        out.append(f"{k} {short[k]}{u}" if k in short and u >= 0 else k)
    return out


def _index(items: Sequence, value, what: str):
    if value in items:
        return list(items).index(value)
    raise ValueError(f"unknown {what} {value!r}; known: {list(items)}")


def _slice(trace, values: str, layer, projection) -> np.ndarray:
    """``(N, H)`` for one (layer, projection), or the mean over layers / projections given ``"all"``."""
    arr = np.asarray(getattr(trace, values), dtype=np.float32)
    if layer != ALL:
        arr = arr[:, _index(trace.layers, int(layer), "layer")][:, None]
    if projection != ALL:
        arr = arr[:, :, _index(trace.projections, projection, "projection")][:, :, None]
    with np.errstate(all="ignore"):
        out = np.nanmean(arr.reshape(arr.shape[0], -1, arr.shape[-1]), axis=1)
    return np.nan_to_num(out)


def router_heatmap(trace, layer=ALL, projection=ALL, values: str = "weights", group: str = "unit") -> go.Figure:
    """Heatmap of router weights (or head norms): heads x tokens grouped by modality, frame and second.

    Args:
        trace: a routing trace. layer: LLM layer index or ``"all"`` (mean). projection: ``q_proj`` ...
            or ``"all"``. values: ``weights`` (router softmax) or ``norms`` (head contribution norms).
        group: ``unit`` averages the tokens of each frame / second / kind; ``token`` shows every token.
    """
    data = _slice(trace, values, layer, projection)
    order = token_order(trace)
    labels = _group_labels(trace, order)
    if group == "unit":
        names, cols = [], []
        for lab in dict.fromkeys(labels):
            sel = [o for o, lb in zip(order, labels) if lb == lab]
            names.append(lab)
            cols.append(data[sel].mean(0))
        z = np.stack(cols, 1) if cols else np.zeros((trace.num_heads, 0))
        x = names
    else:
        z = data[order].T
        x = [f"{i}:{trace.labels[i] if i < len(trace.labels) else ''}" for i in order]
    title = f"{'Router weight' if values == 'weights' else 'Head contribution norm'} — layer {layer}, {projection}"
    fig = go.Figure(go.Heatmap(z=z, x=x, y=[f"head {h}" for h in range(z.shape[0])], colorscale="Viridis",
                               zmin=0 if values == "weights" else None, zmax=1 if values == "weights" else None,
                               hovertemplate="%{y} · %{x}: %{z:.3f}<extra></extra>"))
    fig.update_layout(title=title, height=260, margin=dict(l=10, r=10, t=40, b=80), xaxis=dict(type="category"))
    return fig


def layer_head_summary(trace, kind: str = ALL, values: str = "weights") -> go.Figure:
    """Layer x head heatmap: mean router weight per (layer, projection, head) over tokens of ``kind``."""
    arr = np.asarray(getattr(trace, values), dtype=np.float32)
    sel = np.ones(len(arr), bool) if kind == ALL else np.asarray(trace.kinds) == kind
    if not sel.any():
        from .render import empty_figure
        return empty_figure(f"No {kind} tokens in this run.")
    with np.errstate(all="ignore"):
        mean = np.nan_to_num(np.nanmean(arr[sel], axis=0))  # (n_layers, n_proj, H)
    n_layers, n_proj, heads = mean.shape
    z = mean.reshape(n_layers, n_proj * heads)
    x = [f"{p.replace('_proj', '')}·h{h}" for p in trace.projections for h in range(heads)]
    fig = go.Figure(go.Heatmap(z=z, x=x, y=[f"layer {li}" for li in trace.layers], colorscale="Viridis",
                               hovertemplate="%{y} · %{x}: %{z:.3f}<extra></extra>"))
    fig.update_layout(title=f"Mean {'router weight' if values == 'weights' else 'head norm'} per layer × head "
                            f"({kind} tokens)", height=140 + 30 * n_layers, margin=dict(l=10, r=10, t=40, b=60))
    return fig


def head_contributions(trace, layer=ALL, projection=ALL) -> go.Figure:
    """Grouped bars: mean contribution norm of each head for each token kind."""
    data = _slice(trace, "norms", layer, projection)
    kinds = np.asarray(trace.kinds)
    fig = go.Figure()
    for k in KIND_ORDER:
        sel = kinds == k
        if sel.any():
            fig.add_trace(go.Bar(name=k, x=[f"head {h}" for h in range(data.shape[1])], y=data[sel].mean(0),
                                 marker_color=KIND_COLOURS[k]))
    fig.update_layout(barmode="group", title=f"Per-head contribution ‖w·s·B_h A x‖ — layer {layer}, {projection}",
                      height=280, margin=dict(l=10, r=10, t=40, b=30))
    return fig


def routing_shift(normal, variant, layer=ALL, projection=ALL) -> go.Figure:
    """Contribution norms per head and kind: normal run vs. the ablated / forced run (same prompt)."""
    fig = go.Figure()
    for trace, name, colour in ((normal, "normal", "#1f77b4"), (variant, "variant", "#d62728")):
        if trace is None:
            continue
        data = _slice(trace, "norms", layer, projection)
        kinds = np.asarray(trace.kinds)
        x, y = [], []
        for k in KIND_ORDER:
            sel = kinds == k
            if sel.any():
                for h in range(data.shape[1]):
                    x.append(f"{k} h{h}")
                    y.append(float(data[sel, h].mean()))
        fig.add_trace(go.Bar(name=name, x=x, y=y, marker_color=colour))
    fig.update_layout(barmode="group", title="Head contributions: normal vs. variant", height=280,
                      margin=dict(l=10, r=10, t=40, b=60))
    return fig


def frame_attention_strip(frames: np.ndarray, weights: Sequence[float], height: int = 96) -> np.ndarray:
    """Frames side by side, each tinted by its share of attention (bright = attended, dark = ignored).

    Args:
        frames: ``(T, H, W, 3)`` uint8. weights: ``(T,)`` non-negative attention per frame.
    """
    w = np.asarray(weights, dtype=np.float32)
    w = w / w.max() if w.size and w.max() > 0 else np.zeros_like(w)
    tiles = []
    for f, a in zip(frames, w):
        img = Image.fromarray(np.asarray(f, np.uint8)).resize((height, height))
        arr = np.asarray(img, np.float32) * (0.25 + 0.75 * float(a))
        bar = np.zeros((6, height, 3), np.float32)
        bar[:, : max(1, int(round(height * float(a))))] = (255, 200, 0)
        tiles.append(np.concatenate([arr, bar], 0))
        tiles.append(np.full((height + 6, 2, 3), 255, np.float32))
    return np.concatenate(tiles[:-1], 1).astype(np.uint8) if tiles else np.zeros((height, height, 3), np.uint8)


def patch_attention_overlay(frame: np.ndarray, patch_map: np.ndarray, alpha: float = 0.6) -> np.ndarray:
    """Upsample a ``(g, g)`` patch attention map over an ``(H, W, 3)`` frame as a heat tint."""
    h, w = frame.shape[:2]
    pm = np.asarray(patch_map, np.float32)
    pm = (pm - pm.min()) / (pm.max() - pm.min() + 1e-9)
    up = np.asarray(Image.fromarray((pm * 255).astype(np.uint8)).resize((w, h), Image.BILINEAR), np.float32) / 255
    heat = np.stack([up * 255, up * 80, (1 - up) * 60], -1)
    return ((1 - alpha) * np.asarray(frame, np.float32) + alpha * heat).clip(0, 255).astype(np.uint8)


def audio_attention(spectrogram: np.ndarray, weights: Sequence[float], seconds: float | None = None) -> go.Figure:
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
        fig.add_trace(go.Scatter(x=(np.arange(len(w)) + 0.5) * step, y=wn * mel, mode="lines+markers",
                                 line=dict(color="#ff7f0e", width=3), name="attention",
                                 hovertemplate="second %{x:.1f}: %{y:.1f}<extra></extra>"))
    fig.update_layout(title="Attention over the audio (per second) on the log-mel spectrogram", height=260,
                      margin=dict(l=10, r=10, t=40, b=30), xaxis=dict(title="second"),
                      yaxis=dict(title="mel bin"), showlegend=False)
    return fig


def interaction_map(matrix: np.ndarray, row_label: str = "audio second", col_label: str = "video frame",
                    title: str = "Audio-visual interaction (attention audio → video tokens)") -> go.Figure:
    """Heatmap of a ``(rows, cols)`` interaction matrix (e.g. audio seconds x video frames)."""
    m = np.asarray(matrix, np.float32)
    fig = go.Figure(go.Heatmap(z=m, x=[f"{col_label[0]}{j}" for j in range(m.shape[1])],
                               y=[f"{row_label[0]}{i}" for i in range(m.shape[0])], colorscale="Magma",
                               hovertemplate=f"{row_label} %{{y}} · {col_label} %{{x}}: %{{z:.4f}}<extra></extra>"))
    fig.update_layout(title=title, height=320, margin=dict(l=10, r=10, t=40, b=30),
                      xaxis=dict(title=col_label), yaxis=dict(title=row_label, autorange="reversed"))
    return fig


def attribution_bars(groups: Sequence[str], scores: Sequence[float], title: str) -> go.Figure:
    """Bars of attribution per input group (``video f0`` ... ``audio s9``, ``text``), coloured by kind."""
    colours = [KIND_COLOURS.get(g.split(" ")[0], "#7f7f7f") for g in groups]
    fig = go.Figure(go.Bar(x=list(groups), y=list(scores), marker_color=colours,
                           hovertemplate="%{x}: %{y:.4f}<extra></extra>"))
    fig.update_layout(title=title, height=280, margin=dict(l=10, r=10, t=40, b=80), xaxis=dict(type="category"))
    return fig
