"""Figure builders: plotly figures (reused by the app) and matplotlib PNGs for reports.

Every builder takes the plain data of this package (traces, maps, attributions, profiles) and
returns a ``plotly.graph_objects.Figure``; nothing is shown or written here except by
:func:`profile_pngs`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from .capture import RoutingTrace

_KIND_COLORS = {"text": "#888888", "video": "#1f77b4", "audio": "#d62728", "image": "#2ca02c",
                "answer": "#9467bd", "seg": "#ff7f0e"}


def _heads(h: int) -> list[str]:
    return [f"head {i}" for i in range(h)]


def router_heatmap(trace: RoutingTrace, layer: int | None = None, projection: str | None = None,
                   values: str = "weights") -> go.Figure:
    """Tokens x heads heatmap of router weights (or norms), averaged over layers / projections
    unless one is chosen; the x axis is labelled by token (``video f3``, ``audio s7``, text)."""
    arr = getattr(trace, values)
    if layer is not None:
        arr = arr[:, [trace.layers.index(layer)]]
    if projection is not None:
        arr = arr[:, :, [trace.projections.index(projection)]]
    z = np.nanmean(arr, axis=(1, 2)).T  # (H, N)
    x = [f"{i}:{lab}" for i, lab in enumerate(trace.labels)]
    fig = go.Figure(go.Heatmap(z=z, x=x, y=_heads(trace.num_heads), colorscale="Viridis",
                               customdata=np.tile(trace.kinds, (z.shape[0], 1)),
                               hovertemplate="%{x}<br>%{y}<br>%{customdata}: %{z:.3f}<extra></extra>"))
    for kind, color in _KIND_COLORS.items():  # modality strip under the heatmap
        sel = np.nonzero(trace.kinds == kind)[0]
        if len(sel):
            fig.add_trace(go.Scatter(x=[x[i] for i in sel], y=[-0.9] * len(sel), mode="markers",
                                     marker={"color": color, "symbol": "square", "size": 6}, name=kind))
    where = f"layer {layer}" if layer is not None else "mean over layers"
    fig.update_layout(title=f"Router {values} per token ({where}, {projection or 'all projections'})",
                      xaxis={"showticklabels": len(x) <= 120})
    return fig


def layer_head_summary(weights: np.ndarray, layers: list[int], projections: list[str],
                       title: str = "Mean router weight") -> go.Figure:
    """(n_layers, n_proj, H) -> heatmap with rows ``L{l} {proj}`` and one column per head."""
    z = weights.reshape(-1, weights.shape[-1])
    y = [f"L{layer} {p}" for layer in layers for p in projections]
    fig = go.Figure(go.Heatmap(z=z, y=y, x=_heads(weights.shape[-1]), colorscale="Viridis", zmin=0, zmax=1))
    fig.update_layout(title=title, yaxis={"autorange": "reversed"}, height=max(300, 14 * len(y)))
    return fig


def head_contributions(trace: RoutingTrace) -> go.Figure:
    """Mean head contribution norm ``||g_h B_h A x||`` per token kind (grouped bars)."""
    by = trace.mean_by_kind("norms")
    fig = go.Figure([go.Bar(name=k, x=_heads(trace.num_heads), y=np.nanmean(v, axis=(0, 1)),
                            marker_color=_KIND_COLORS.get(k)) for k, v in by.items()])
    fig.update_layout(barmode="group", title="Mean head contribution norm by token kind")
    return fig


def frame_heatmaps(maps: np.ndarray, frames: np.ndarray | None = None, title: str = "Attention per frame",
                   cols: int = 5) -> go.Figure:
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
        fig.add_trace(go.Heatmap(z=m, colorscale="Hot", opacity=0.55 if frames is not None else 1.0,
                                 showscale=i == 0, zmin=0, zmax=float(maps.max()) or 1.0), r, c)
        fig.update_yaxes(autorange="reversed", showticklabels=False, row=r, col=c)
        fig.update_xaxes(showticklabels=False, row=r, col=c)
    fig.update_layout(title=title, height=220 * rows)
    return fig


def spectrogram_overlay(fbank: np.ndarray, time_maps: np.ndarray, title: str = "Audio attention") -> go.Figure:
    """Spectrogram of the concatenated segments ``(T, F, 128)`` with the Q-Former time map
    ``(T, n_time, n_freq)`` (each time step = 16 fbank frames, each band = 16 mel bins) below it."""
    spec = np.concatenate(list(fbank), 0).T  # (128, T*F)
    step = fbank.shape[1] // time_maps.shape[1] if time_maps.shape[1] else 1
    heat = np.concatenate([np.repeat(np.repeat(m, step, 0), 128 // time_maps.shape[2], 1)
                           for m in time_maps], 0)
    heat = np.pad(heat, ((0, max(spec.shape[1] - heat.shape[0], 0)), (0, 0)))[: spec.shape[1]].T
    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, subplot_titles=["fbank", "Q-Former attention"])
    fig.add_trace(go.Heatmap(z=spec, colorscale="Gray", showscale=False), 1, 1)
    fig.add_trace(go.Heatmap(z=heat, colorscale="Hot"), 2, 1)
    for s in range(1, fbank.shape[0]):
        fig.add_vline(x=s * fbank.shape[1], line={"color": "cyan", "width": 1})
    fig.update_layout(title=title, height=500)
    return fig


def interaction_map(audio_to_video: np.ndarray, title: str = "Audio tokens -> frames (LLM attention)") -> go.Figure:
    """(T_a, T_v) heatmap: rows = audio seconds, columns = frames."""
    fig = go.Figure(go.Heatmap(z=audio_to_video, x=[f"f{i}" for i in range(audio_to_video.shape[1])],
                               y=[f"s{i}" for i in range(audio_to_video.shape[0])], colorscale="Viridis"))
    fig.update_layout(title=title, yaxis={"autorange": "reversed"})
    return fig


def attribution_bars(frame_scores: np.ndarray, second_scores: np.ndarray,
                     highlight_frames=(), highlight_seconds=(), title: str = "Attribution") -> go.Figure:
    """Two bar charts (frames, seconds); highlighted units (e.g. object visible / sounding) in color."""
    fig = make_subplots(rows=1, cols=2, subplot_titles=["frames", "audio seconds"])
    for col, scores, hi, color in ((1, frame_scores, set(highlight_frames), "#1f77b4"),
                                   (2, second_scores, set(highlight_seconds), "#d62728")):
        colors = [color if i in hi else "#bbbbbb" for i in range(len(scores))]
        fig.add_trace(go.Bar(x=list(range(len(scores))), y=scores, marker_color=colors, showlegend=False), 1, col)
    fig.update_layout(title=title)
    return fig


def task_head_routing(prof) -> go.Figure:
    """Mean router weight per head for every task (grouped bars)."""
    tasks = list(prof.routing)
    fig = go.Figure([go.Bar(name=f"head {h}", x=tasks, y=[float(np.nanmean(prof.routing[t][..., h])) for t in tasks])
                     for h in range(prof.num_heads)])
    fig.update_layout(barmode="group", title="Mean router weight per task and head", yaxis={"range": [0, 1]})
    return fig


def layer_head_summary_tasks(prof) -> go.Figure:
    """One layer/projection x head heatmap per task (dropdown)."""
    tasks = list(prof.routing)
    fig = go.Figure()
    for i, t in enumerate(tasks):
        w = prof.routing[t]
        fig.add_trace(go.Heatmap(z=w.reshape(-1, w.shape[-1]), x=_heads(w.shape[-1]), visible=i == 0,
                                 y=[f"L{la} {p}" for la in prof.layers for p in prof.projections],
                                 colorscale="Viridis", zmin=0, zmax=1, name=t))
    buttons = [{"label": t, "method": "update", "args": [{"visible": [j == i for j in range(len(tasks))]}]}
               for i, t in enumerate(tasks)]
    fig.update_layout(title="Mean router weight per layer and projection", updatemenus=[{"buttons": buttons}],
                      yaxis={"autorange": "reversed"}, height=max(300, 14 * len(prof.layers) * len(prof.projections)))
    return fig


def kind_head_routing(prof) -> go.Figure:
    """Mean router weight per head for each token kind, per task (subplots)."""
    tasks = list(prof.routing_by_kind)
    fig = make_subplots(rows=1, cols=max(len(tasks), 1), subplot_titles=tasks, shared_yaxes=True)
    for i, t in enumerate(tasks):
        for h in range(prof.num_heads):
            kinds = list(prof.routing_by_kind[t])
            fig.add_trace(go.Bar(x=kinds, y=[float(np.nanmean(prof.routing_by_kind[t][k][..., h])) for k in kinds],
                                 name=f"head {h}", legendgroup=f"h{h}", showlegend=i == 0,
                                 marker_color=["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e"][h % 5]),
                          1, i + 1)
    fig.update_layout(barmode="group", title="Mean router weight by token kind", height=400)
    return fig


def _ablation_matrix(prof):
    from .profile import primary_metric

    tasks = list(prof.ablation)
    variants = list(next(iter(prof.ablation.values()), {}))
    z = np.full((len(tasks), len(variants)), np.nan)
    for i, t in enumerate(tasks):
        key = primary_metric(t, prof.ablation[t])
        for j, v in enumerate(variants):
            if key is not None:
                z[i, j] = prof.ablation[t][v].get(key, np.nan)
    return tasks, variants, z


def ablation_heatmap(prof) -> go.Figure:
    """Tasks x variants heatmap of each task's primary metric (text: value)."""
    tasks, variants, z = _ablation_matrix(prof)
    fig = go.Figure(go.Heatmap(z=z, x=variants, y=tasks, colorscale="RdYlGn", text=np.round(z, 3),
                               texttemplate="%{text}"))
    fig.update_layout(title="Primary metric under head forcing / removal", yaxis={"autorange": "reversed"})
    return fig


def profile_pngs(prof, out_dir: str | Path) -> list[Path]:
    """Matplotlib PNGs of a profile: task x head routing, ablation heatmap, per-kind routing."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(out_dir)
    paths = []
    tasks = list(prof.routing)
    fig, ax = plt.subplots(figsize=(max(6, len(tasks) * 0.9), 3.5))
    width = 0.8 / max(prof.num_heads, 1)
    for h in range(prof.num_heads):
        ax.bar(np.arange(len(tasks)) + h * width, [np.nanmean(prof.routing[t][..., h]) for t in tasks], width,
               label=f"head {h}")
    ax.set_xticks(np.arange(len(tasks)) + 0.4 - width / 2, tasks)
    ax.set_ylabel("mean router weight")
    ax.legend()
    paths.append(_save(fig, out / "task_head_routing.png"))
    t_names, variants, z = _ablation_matrix(prof)
    fig, ax = plt.subplots(figsize=(1.1 * len(variants) + 2, 0.45 * len(t_names) + 1.5))
    ax.imshow(z, cmap="RdYlGn", aspect="auto")
    ax.set_xticks(range(len(variants)), variants, rotation=30, ha="right")
    ax.set_yticks(range(len(t_names)), t_names)
    for (i, j), v in np.ndenumerate(z):
        ax.text(j, i, "-" if np.isnan(v) else f"{v:.2f}", ha="center", va="center", fontsize=8)
    ax.set_title("primary metric per variant")
    paths.append(_save(fig, out / "ablation.png"))
    kinds = sorted({k for d in prof.routing_by_kind.values() for k in d})
    fig, axes = plt.subplots(1, prof.num_heads, figsize=(4 * prof.num_heads, 3.5), squeeze=False)
    for h, ax in enumerate(axes[0]):
        m = np.array([[np.nanmean(prof.routing_by_kind[t][k][..., h]) if k in prof.routing_by_kind[t] else np.nan
                       for k in kinds] for t in tasks])
        im = ax.imshow(m, vmin=0, vmax=1, cmap="viridis", aspect="auto")
        ax.set_xticks(range(len(kinds)), kinds, rotation=30)
        ax.set_yticks(range(len(tasks)), tasks if h == 0 else [""] * len(tasks))
        ax.set_title(f"head {h}: mean weight")
    fig.colorbar(im, ax=axes[0].tolist())
    paths.append(_save(fig, out / "kind_head_routing.png"))
    return paths


def _save(fig, path: Path) -> Path:
    import matplotlib.pyplot as plt

    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path
