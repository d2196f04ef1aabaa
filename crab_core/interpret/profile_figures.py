"""Figures of the head-profile reports (``python -m crab_core inspect profile``): routing per task,
layer x head and input kind, the ablation matrix, and their PNG export. The per-clip figures the app
and reports share are in :mod:`crab_core.interpret.figures`."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from .figures import _heads


def task_head_routing(prof) -> go.Figure:
    """Mean router weight per head for every task (grouped bars)."""
    tasks = list(prof.routing)
    fig = go.Figure(
        [
            go.Bar(name=f"head {h}", x=tasks, y=[float(np.nanmean(prof.routing[t][..., h])) for t in tasks])
            for h in range(prof.num_heads)
        ]
    )
    fig.update_layout(barmode="group", title="Mean router weight per task and head", yaxis={"range": [0, 1]})
    return fig


def layer_head_summary_tasks(prof) -> go.Figure:
    """One layer/projection x head heatmap per task (dropdown)."""
    tasks = list(prof.routing)
    fig = go.Figure()
    for i, t in enumerate(tasks):
        w = prof.routing[t]
        fig.add_trace(
            go.Heatmap(
                z=w.reshape(-1, w.shape[-1]),
                x=_heads(w.shape[-1]),
                visible=i == 0,
                y=[f"L{la} {p}" for la in prof.layers for p in prof.projections],
                colorscale="Viridis",
                zmin=0,
                zmax=1,
                name=t,
            )
        )
    buttons = [
        {"label": t, "method": "update", "args": [{"visible": [j == i for j in range(len(tasks))]}]}
        for i, t in enumerate(tasks)
    ]
    fig.update_layout(
        title="Mean router weight per layer and projection",
        updatemenus=[{"buttons": buttons}],
        yaxis={"autorange": "reversed"},
        height=max(300, 14 * len(prof.layers) * len(prof.projections)),
    )
    return fig


def kind_head_routing(prof) -> go.Figure:
    """Mean router weight per head for each token kind, per task (subplots)."""
    tasks = list(prof.routing_by_kind)
    fig = make_subplots(rows=1, cols=max(len(tasks), 1), subplot_titles=tasks, shared_yaxes=True)
    for i, t in enumerate(tasks):
        for h in range(prof.num_heads):
            kinds = list(prof.routing_by_kind[t])
            fig.add_trace(
                go.Bar(
                    x=kinds,
                    y=[float(np.nanmean(prof.routing_by_kind[t][k][..., h])) for k in kinds],
                    name=f"head {h}",
                    legendgroup=f"h{h}",
                    showlegend=i == 0,
                    marker_color=["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e"][h % 5],
                ),
                1,
                i + 1,
            )
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
    fig = go.Figure(
        go.Heatmap(z=z, x=variants, y=tasks, colorscale="RdYlGn", text=np.round(z, 3), texttemplate="%{text}")
    )
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
        ax.bar(
            np.arange(len(tasks)) + h * width,
            [np.nanmean(prof.routing[t][..., h]) for t in tasks],
            width,
            label=f"head {h}",
        )
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
        m = np.array(
            [
                [
                    np.nanmean(prof.routing_by_kind[t][k][..., h]) if k in prof.routing_by_kind[t] else np.nan
                    for k in kinds
                ]
                for t in tasks
            ]
        )
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
