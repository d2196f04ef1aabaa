"""Figure builders: plotly figures (reused by the app) and matplotlib PNGs for reports.

Every builder takes the plain data of this package (traces, maps, attributions, profiles) and
returns a ``plotly.graph_objects.Figure``; nothing is shown or written here except by
:func:`profile_pngs`.
"""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from .capture import RoutingTrace

#: One colour per token kind, shared by every figure (app, profile reports, docs).
KIND_COLORS = {
    "text": "#8c8c8c",
    "video": "#1f77b4",
    "audio": "#d62728",
    "image": "#2ca02c",
    "answer": "#9467bd",
    "seg": "#ff7f0e",
}
#: What the two routing quantities are (one line each; figures put them under their title).
ROUTER_WEIGHT = (
    "router weight g_h(x) = softmax(R x)_h: the share of head h in a token's I-LoRA update "
    "(the heads of a token sum to 1; uniform = 1/H)"
)
HEAD_NORM = (
    "head contribution ||w_h (alpha/r) B_h A x||: L2 norm of head h's update to the projection's "
    "output, in the units of that output (the LLM's hidden activations)"
)
_SHORT = {"video": "f", "audio": "s", "image": "i"}


def _heads(h: int) -> list[str]:
    return [f"head {i}" for i in range(h)]


def explained_title(title: str, line: str, width: int = 80) -> dict:
    """A title with a small explanation under it (wrapped at ``width`` characters)."""
    import textwrap

    lines = "<br>".join(textwrap.wrap(line, width))
    return {
        "text": f"{title}<br><sup>{lines}</sup>",
        "x": 0.0,
        "xanchor": "left",
        "yref": "container",
        "y": 1.0,
        "yanchor": "top",
        "pad": {"t": 22},
    }


def _pick(items: list, value, what: str) -> int:
    if value in items:
        return items.index(value)
    raise ValueError(f"unknown {what} {value!r}; known: {list(items)}")


def trace_values(trace: RoutingTrace, values: str = "weights", layer=None, projection=None) -> np.ndarray:
    """``(N, H)`` router weights or head norms of one (layer, projection), or their mean over
    layers / projections when ``layer`` / ``projection`` is None or ``"all"`` (NaN pairs skipped)."""
    if values not in ("weights", "norms"):
        raise ValueError(f"values must be 'weights' or 'norms', got {values!r}")
    arr = np.asarray(getattr(trace, values), np.float32)
    if layer not in (None, "all"):
        arr = arr[:, [_pick(list(trace.layers), int(layer), "layer")]]
    if projection not in (None, "all"):
        arr = arr[:, :, [_pick(list(trace.projections), projection, "projection")]]
    with np.errstate(all="ignore"):
        out = np.nanmean(arr.reshape(arr.shape[0], -1, arr.shape[-1]), axis=1)
    return np.nan_to_num(out)


def token_runs(trace: RoutingTrace, by_unit: bool = True) -> list[tuple[int, int, str, str]]:
    """Maximal runs of consecutive tokens in sequence order: ``(start, end, kind, label)`` with
    ``end`` exclusive; runs split at each frame / second when ``by_unit`` (labels ``f3``, ``s7``)."""
    runs: list[list] = []
    for i, (k, u) in enumerate(zip(trace.kinds, trace.units)):
        k, u = str(k), int(u)
        label = f"{_SHORT[k]}{u}" if by_unit and k in _SHORT and u >= 0 else k
        if runs and runs[-1][2] == k and runs[-1][3] == label:
            runs[-1][1] = i + 1
        else:
            runs.append([i, i + 1, k, label])
    return [tuple(r) for r in runs]


def _colour_scale(values: str, z: np.ndarray, num_heads: int) -> dict:
    """Diverging around uniform (1/H) for weights, range from the data; sequential for norms."""
    if values != "weights" or not z.size:
        return {"colorscale": "Viridis", "colorbar": {"title": {"text": "norm", "side": "right"}}}
    mid = 1.0 / num_heads
    span = max(float(np.nanmax(np.abs(z - mid))), 1e-3)
    return {
        "colorscale": "RdBu_r",
        "zmid": mid,
        "zmin": mid - span,
        "zmax": mid + span,
        "colorbar": {"title": {"text": f"weight (1/H = {mid:.2f})", "side": "right"}},
    }


def _bands(fig: go.Figure, runs, x_of) -> None:
    """Coloured modality bands above the plot, one per run of a token kind, labelled when wide enough."""
    merged: list[list] = []
    for start, end, kind, _ in runs:
        if merged and merged[-1][2] == kind:
            merged[-1][1] = end
        else:
            merged.append([start, end, kind])
    total = max(runs[-1][1], 1) if runs else 1
    for start, end, kind in merged:
        x0, x1 = x_of(start) - 0.5, x_of(end - 1) + 0.5
        fig.add_shape(
            type="rect",
            xref="x",
            yref="paper",
            x0=x0,
            x1=x1,
            y0=1.02,
            y1=1.12,
            line_width=0,
            fillcolor=KIND_COLORS.get(kind, "#cccccc"),
        )
        if (end - start) / total > 0.04:
            fig.add_annotation(
                x=(x0 + x1) / 2,
                y=1.07,
                xref="x",
                yref="paper",
                text=kind,
                showarrow=False,
                yanchor="middle",
                font={"color": "white", "size": 11},
            )


def router_heatmap(
    trace: RoutingTrace, layer=None, projection=None, values: str = "weights", group: str = "token"
) -> go.Figure:
    """Heads x tokens heatmap of router weights (or head norms) in sequence order.

    Args:
        trace: a :class:`RoutingTrace`. layer / projection: one LLM layer / adapted projection, or
            None / ``"all"`` for the mean. values: ``weights`` (diverging scale centred on uniform
            1/H, range from the data) or ``norms`` (sequential). group: ``token`` (one column per
            token, modality bands above, the token text on hover) or ``unit`` (one column per run of a
            frame / second / text / answer, labelled ``f0``, ``s3``, ``text``).

    Returns:
        A figure whose first trace is the ``(H, columns)`` heatmap.
    """
    data = trace_values(trace, values, layer, projection)  # (N, H)
    by_unit = group == "unit"
    runs = token_runs(trace, by_unit=True)
    if by_unit:
        z = (
            np.stack([data[s:e].mean(0) for s, e, _, _ in runs], 1)
            if runs
            else np.zeros((trace.num_heads, 0))
        )
        x = list(range(len(runs)))
        hover = [f"{lab} ({k}, {e - s} tokens)" for s, e, k, lab in runs]
        ticks = {"tickvals": x, "ticktext": [lab for *_, lab in runs], "tickangle": 0}
        cols = [(i, i + 1, k, lab) for i, (_, _, k, lab) in enumerate(runs)]
    else:
        z = data.T
        x = list(range(trace.num_tokens))
        labels = trace.labels or [str(i) for i in x]
        hover = [f"{i}: {labels[i]} ({trace.kinds[i]})" for i in x]
        ticks = {"showticklabels": False}
        cols = runs
    fig = go.Figure(
        go.Heatmap(
            z=z,
            x=x,
            y=_heads(z.shape[0]),
            customdata=np.tile(np.array(hover, object), (z.shape[0], 1)),
            hovertemplate="%{customdata}<br>%{y}: %{z:.3f}<extra></extra>",
            **_colour_scale(values, z, trace.num_heads),
        )
    )
    _bands(fig, cols, lambda i: i)
    where = f"layer {layer}" if layer not in (None, "all") else "mean over layers"
    proj = projection if projection not in (None, "all") else "mean over projections"
    name = "Router weight" if values == "weights" else "Head contribution norm"
    fig.update_layout(
        title=explained_title(
            f"{name} per {'token' if not by_unit else 'frame / second'} — {where}, {proj}",
            ROUTER_WEIGHT if values == "weights" else HEAD_NORM,
            width=150,
        ),
        height=350,
        margin={"l": 10, "r": 10, "t": 115, "b": 50},
        xaxis={"title": {"text": "prompt and answer tokens in sequence order"}, **ticks},
        yaxis={"title": {"text": "I-LoRA head"}, "autorange": "reversed"},
    )
    return fig


def layer_head_summary(
    weights: np.ndarray,
    layers: list[int],
    projections: list[str],
    title: str = "Mean router weight",
    values: str = "weights",
) -> go.Figure:
    """``(n_layers, n_proj, H)`` -> heatmap with rows ``L{l} {proj}`` and one column per head
    (diverging around 1/H for weights)."""
    z = np.nan_to_num(np.asarray(weights, np.float32).reshape(-1, weights.shape[-1]))
    y = [f"L{layer} {p}" for layer in layers for p in projections]
    fig = go.Figure(
        go.Heatmap(
            z=z,
            y=y,
            x=_heads(z.shape[-1]),
            hovertemplate="%{y} · %{x}: %{z:.3f}<extra></extra>",
            **_colour_scale(values, z, z.shape[-1]),
        )
    )
    fig.update_layout(
        title=explained_title(title, ROUTER_WEIGHT if values == "weights" else HEAD_NORM),
        yaxis={"autorange": "reversed", "title": {"text": "layer and projection"}},
        xaxis={"title": {"text": "I-LoRA head"}},
        height=max(300, 16 * len(y) + 120),
        margin={"l": 10, "r": 10, "t": 105, "b": 40},
    )
    return fig


def head_contributions(trace: RoutingTrace, layer=None, projection=None) -> go.Figure:
    """Mean head contribution norm per head for each token kind (grouped bars)."""
    data = trace_values(trace, "norms", layer, projection)
    kinds = np.asarray(trace.kinds)
    fig = go.Figure(
        [
            go.Bar(name=k, x=_heads(trace.num_heads), y=data[kinds == k].mean(0), marker_color=c)
            for k, c in KIND_COLORS.items()
            if (kinds == k).any()
        ]
    )
    where = f"layer {layer}" if layer not in (None, "all") else "mean over layers"
    fig.update_layout(
        barmode="group",
        title=explained_title(f"Mean head contribution by token kind — {where}", HEAD_NORM),
        xaxis={"title": {"text": "I-LoRA head"}},
        yaxis={"title": {"text": "mean norm"}},
        height=320,
        margin={"l": 10, "r": 10, "t": 105, "b": 40},
        legend={"title": {"text": "tokens"}},
    )
    return fig


def frame_heatmaps(
    maps: np.ndarray, frames: np.ndarray | None = None, title: str = "Attention per frame", cols: int = 5
) -> go.Figure:
    """(T, g, g) patch maps, optionally over (T, S, S, 3) uint8 frames (map upsampled to S)."""
    t = maps.shape[0]
    rows = (t + cols - 1) // cols
    fig = make_subplots(rows=rows, cols=cols, subplot_titles=[f"frame {i}" for i in range(t)])
    for i in range(t):
        r, c = i // cols + 1, i % cols + 1
        m = maps[i]
        if frames is not None:
            s = frames.shape[1]
            fig.add_trace(go.Image(z=frames[i]), r, c)
            m = np.kron(m, np.ones((s // m.shape[0], s // m.shape[1])))
        fig.add_trace(
            go.Heatmap(
                z=m,
                colorscale="Hot",
                opacity=0.55 if frames is not None else 1.0,
                showscale=i == 0,
                zmin=0,
                zmax=float(maps.max()) or 1.0,
            ),
            r,
            c,
        )
        fig.update_yaxes(autorange="reversed", showticklabels=False, row=r, col=c)
        fig.update_xaxes(showticklabels=False, row=r, col=c)
    fig.update_layout(title=title, height=220 * rows)
    return fig


def spectrogram_overlay(
    fbank: np.ndarray, time_maps: np.ndarray, title: str = "Audio attention"
) -> go.Figure:
    """Spectrogram of the concatenated segments ``(T, F, 128)`` with the Q-Former time map
    ``(T, n_time, n_freq)`` (each time step = 16 fbank frames, each band = 16 mel bins) below it."""
    spec = np.concatenate(list(fbank), 0).T  # (128, T*F)
    step = fbank.shape[1] // time_maps.shape[1] if time_maps.shape[1] else 1
    heat = np.concatenate(
        [np.repeat(np.repeat(m, step, 0), 128 // time_maps.shape[2], 1) for m in time_maps], 0
    )
    heat = np.pad(heat, ((0, max(spec.shape[1] - heat.shape[0], 0)), (0, 0)))[: spec.shape[1]].T
    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, subplot_titles=["fbank", "Q-Former attention"])
    fig.add_trace(go.Heatmap(z=spec, colorscale="Gray", showscale=False), 1, 1)
    fig.add_trace(go.Heatmap(z=heat, colorscale="Hot"), 2, 1)
    for s in range(1, fbank.shape[0]):
        fig.add_vline(x=s * fbank.shape[1], line={"color": "cyan", "width": 1})
    fig.update_layout(title=title, height=500)
    return fig


def interaction_map(
    audio_to_video: np.ndarray, title: str = "Audio tokens -> frames (LLM attention)"
) -> go.Figure:
    """``(T_a, T_v)`` heatmap: rows = audio seconds, columns = frames; a cell is the attention mass
    that the tokens of one second put on the tokens of one frame (mean over layers and heads)."""
    m = np.asarray(audio_to_video, np.float32)
    fig = go.Figure(
        go.Heatmap(
            z=m,
            x=[f"f{i}" for i in range(m.shape[1])],
            y=[f"s{i}" for i in range(m.shape[0])],
            colorscale="Viridis",
            colorbar={"title": {"text": "mass"}},
            hovertemplate="second %{y} -> frame %{x}: %{z:.4f}<extra></extra>",
        )
    )
    fig.update_layout(
        title=explained_title(title, "attention mass from each audio second's tokens to each frame's tokens"),
        yaxis={"autorange": "reversed", "title": {"text": "audio second"}},
        xaxis={"title": {"text": "video frame"}},
        height=340,
        margin={"l": 10, "r": 10, "t": 105, "b": 40},
    )
    return fig


def attribution_bars(
    frame_scores: np.ndarray,
    second_scores: np.ndarray,
    highlight_frames=(),
    highlight_seconds=(),
    title: str = "Attribution",
    other: dict[str, float] | None = None,
    delta: float | None = None,
) -> go.Figure:
    """Bar charts of attribution per frame and per audio second (and ``other`` groups, e.g. the
    image); highlighted units (object visible / sounding) in colour; ``delta`` (IG's completeness
    gap) is shown under the title."""
    other = {k: v for k, v in (other or {}).items() if v is not None}
    cols = 2 + bool(other)
    fig = make_subplots(
        rows=1,
        cols=cols,
        subplot_titles=["frames", "audio seconds", "other"][:cols],
        column_widths=[0.45, 0.45, 0.1][:cols] if other else None,
    )
    for col, scores, hi, color, p in (
        (1, frame_scores, set(highlight_frames), KIND_COLORS["video"], "f"),
        (2, second_scores, set(highlight_seconds), KIND_COLORS["audio"], "s"),
    ):
        colors = [color if (i in hi or not hi) else "#bbbbbb" for i in range(len(scores))]
        fig.add_trace(
            go.Bar(
                x=[f"{p}{i}" for i in range(len(scores))],
                y=np.asarray(scores),
                marker_color=colors,
                showlegend=False,
                hovertemplate="%{x}: %{y:.4f}<extra></extra>",
            ),
            1,
            col,
        )
    if other:
        fig.add_trace(
            go.Bar(
                x=list(other),
                y=list(other.values()),
                showlegend=False,
                marker_color=[KIND_COLORS.get(k, "#888888") for k in other],
            ),
            1,
            3,
        )
    line = "sum of |integrated gradients| over each group's input embeddings"
    if delta is not None:
        line += f"; convergence delta {delta:.3g} (IG's completeness gap: small means the steps suffice)"
    fig.update_layout(
        title=explained_title(title, line), height=350, margin={"l": 10, "r": 10, "t": 125, "b": 40}
    )
    return fig
