"""Learning curves of the crab-tiny recipe: the headline metrics at snapshots taken during training.

Train the recipe with snapshots, then score them (resumable: a scored snapshot is skipped; run it
while the training is still going and it scores what is there)::

    python -m crab_core train --recipe crab-tiny --out runs/curves --snapshot-every 400
    python benchmarks/learning_curves.py --run runs/curves [--every 800] [--per-task 40]

Every snapshot is scored on the same fresh ``test`` items (one manifest written by
``python -m crab_core synth``, seed ``--seed``) through the path of ``python -m crab_core eval``
(:func:`benchmarks.crab_tiny_quality.score`), so neighbouring points differ by training only, not
by the items. Writes ``benchmarks/results/learning_curves.{json,md,png}``: per target metric its
value at each snapshot (phase and step, cumulative optimizer steps), the majority baseline and the
target, and the change over the last half of each phase that trains the LLM side (is the metric
still rising when the recipe's budget ends?).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
log = logging.getLogger("learning_curves")

from crab_core.pipeline import TINY_DIR  # noqa: E402
from crab_core.reports import TARGETS  # noqa: E402

TASKS = tuple(dict.fromkeys(t.task for t in TARGETS))


def snapshots(run: Path, every: int) -> list[tuple[str, int, Path]]:
    """``(phase, step, folder)`` of the run's snapshots in training order, keeping steps that are
    multiples of ``every`` and each phase's last one (phases ordered by the recipe in
    ``run/snapshots/*/training.json``)."""
    found: dict[str, list[tuple[int, Path]]] = {}
    steps_of: dict[str, int] = {}  # phase -> its steps, in recipe order
    for d in sorted((run / "snapshots").glob("*-*")):
        if not (d / "model.safetensors").is_file() or not (d / "training.json").is_file():
            continue  # still being written
        card = json.loads((d / "training.json").read_text())
        steps_of = steps_of or {p["name"]: p["steps"] for p in card["recipe"]["phases"]}
        found.setdefault(card["phase"], []).append((int(card["step"]), d))
    out = []
    for phase in steps_of:
        for step, d in sorted(found.get(phase, [])):
            if step % every == 0 or step == steps_of[phase]:
                out.append((phase, step, d))
    return out


def cumulative(phases: list[dict], phase: str, step: int) -> int:
    """Optimizer steps of the whole recipe up to ``phase`` / ``step``."""
    total = 0
    for p in phases:
        if p["name"] == phase:
            return total + step
        total += p["steps"]
    raise KeyError(phase)


def score_all(args) -> list[dict]:
    import torch
    from crab_tiny_quality import make_split, score

    torch.set_num_threads(args.threads)
    manifest = make_split(Path(args.data), "test", args.seed, args.per_task, TASKS)
    done_dir = Path(args.run) / "curve-scores"
    done_dir.mkdir(parents=True, exist_ok=True)
    rows = []
    for phase, step, folder in snapshots(Path(args.run), args.every):
        path = done_dir / f"{folder.name}.json"
        if not path.is_file():
            t0 = time.perf_counter()
            res = score(str(folder), manifest)
            path.write_text(json.dumps(res))
            log.info("%s scored in %.0f s", folder.name, time.perf_counter() - t0)
        res = json.loads(path.read_text())
        card = json.loads((folder / "training.json").read_text())
        rows.append(
            {
                "snapshot": folder.name,
                "phase": phase,
                "step": step,
                "total_step": cumulative(card["recipe"]["phases"], phase, step),
                "train_minutes": round(card.get("train_time_s", 0.0) / 60, 1),
                "metrics": {t.label: res["metrics"].get(t.task, {}).get(t.key) for t in TARGETS},
                "baselines": {t.label: res["baselines"].get(t.task, {}).get(t.key) for t in TARGETS},
                "counts": res["counts"],
            }
        )
    return rows


def late_change(rows: list[dict], label: str) -> dict[str, float | None]:
    """Per phase: the metric at its last snapshot minus at the snapshot nearest its middle (None
    with fewer than two scored snapshots in the phase)."""
    out: dict[str, float | None] = {}
    for phase in dict.fromkeys(r["phase"] for r in rows):
        pts = [r for r in rows if r["phase"] == phase and r["metrics"][label] is not None]
        if len(pts) < 2:
            out[phase] = None
            continue
        last = pts[-1]
        mid = min(pts[:-1], key=lambda r: abs(r["step"] - last["step"] / 2))
        out[phase] = last["metrics"][label] - mid["metrics"][label]
    return out


def same_weights_line(snapshot: Path, reference: str = "crab-tiny") -> str:
    """Whether the last snapshot holds the weights of ``reference`` (``crab-tiny``: the shipped model,
    or a model folder), tensor by tensor (the files' bytes may differ in their metadata)."""
    from safetensors.torch import load_file

    folder, name = (
        (TINY_DIR, "the shipped crab-tiny")
        if reference == "crab-tiny"
        else (Path(reference), f"`{reference}`")
    )
    mine, shipped = load_file(snapshot / "model.safetensors"), load_file(folder / "model.safetensors")
    if mine.keys() != shipped.keys() or any(mine[k].shape != shipped[k].shape for k in mine):
        return f"Last snapshot `{snapshot.name}`: a different geometry from {name}."
    worst = max((mine[k].float() - shipped[k].float()).abs().max().item() for k in mine)
    same = f"{name}'s weights exactly" if worst == 0 else f"max abs difference {worst:.3g}"
    return (
        f"Last snapshot `{snapshot.name}` vs {name}: {same} "
        f"({sum(v.numel() for v in mine.values())} parameters compared)."
    )


def extra_args(args) -> str:
    """The non-default ``--recipe`` / ``--reference`` / ``--name`` of a run, for its command line."""
    out = ""
    for flag, value, default in (
        ("--recipe", args.recipe, "crab-tiny"),
        ("--reference", args.reference, "crab-tiny"),
        ("--name", args.name, "learning_curves"),
    ):
        out += f" {flag} {value}" if value != default else ""
    return out


def markdown(rows: list[dict], args) -> str:
    n = rows[-1]["counts"] if rows else {}
    head = ["metric", "target", "baseline"] + [f"{r['phase']}@{r['step']}" for r in rows]
    lines = [
        "# crab-tiny learning curves",
        "",
        f"`python benchmarks/learning_curves.py --run {args.run} --every {args.every} --per-task "
        f"{args.per_task} --seed {args.seed}{extra_args(args)}` on the snapshots of `python -m crab_core "
        f"train --recipe {args.recipe} --out {args.run} --snapshot-every N`. Every column scores the same "
        "fresh `test` items "
        f"(seed {args.seed}; n per task: {json.dumps(n)}) through the path of `python -m crab_core eval`. "
        "Columns: phase@step of the snapshot (cumulative optimizer steps and training minutes in the "
        "JSON). Bold: target met.",
        "",
        "| " + " | ".join(head) + " |",
        "|" + "---|" * len(head),
    ]
    for t in TARGETS:
        vals = [r["metrics"][t.label] for r in rows]
        base = next((r["baselines"][t.label] for r in rows if r["baselines"][t.label] is not None), None)
        cells = ["-" if v is None else (f"**{v:.3f}**" if t.met(v) else f"{v:.3f}") for v in vals]
        lines.append(
            f"| {t.label} | {t.text} | {'-' if base is None else f'{base:.3f}'} | " + " | ".join(cells) + " |"
        )
    if rows:
        lines += ["", same_weights_line(Path(args.run) / "snapshots" / rows[-1]["snapshot"], args.reference)]
    lines += ["", "## Change over the second half of each phase", ""]
    phases = list(dict.fromkeys(r["phase"] for r in rows))
    lines += ["| metric | " + " | ".join(phases) + " |", "|---|" + "---|" * len(phases)]
    for t in TARGETS:
        ch = late_change(rows, t.label)
        lines.append(
            f"| {t.label} | " + " | ".join("-" if ch[p] is None else f"{ch[p]:+.3f}" for p in phases) + " |"
        )
    lines += [
        "",
        "Last snapshot of the phase minus the snapshot nearest its middle, on the same items. With n = "
        f"{args.per_task} per task one value moves by several points between item sets; a change "
        "of a few hundredths is within that noise.",
        "",
    ]
    return "\n".join(lines)


def figure(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 5, figsize=(16, 6), sharex=True)
    x = [r["total_step"] for r in rows]
    bounds = {}
    for r in rows:
        bounds.setdefault(r["phase"], r["total_step"] - r["step"])
    for ax, t in zip(axes.flat, TARGETS, strict=True):
        y = [r["metrics"][t.label] for r in rows]
        ax.plot(x, [float("nan") if v is None else v for v in y], "o-", ms=3)
        ax.axhline(t.bound, color="green", ls="--", lw=1, label="target")
        base = next((r["baselines"][t.label] for r in rows if r["baselines"][t.label] is not None), None)
        if base is not None:
            ax.axhline(base, color="grey", ls=":", lw=1, label="baseline")
        for name, start in bounds.items():
            ax.axvline(start, color="k", lw=0.4)
            ax.text(start, 1.02, name, fontsize=7, rotation=0)
        ax.set_ylim(0, 1.08)
        ax.set_title(t.label, fontsize=9)
    axes.flat[0].legend(fontsize=7)
    fig.supxlabel("optimizer steps of the recipe")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--run", default="runs/curves", help="training output folder with snapshots/")
    p.add_argument("--every", type=int, default=800, help="score snapshots at multiples of this step")
    p.add_argument("--per-task", type=int, default=40)
    p.add_argument("--seed", type=int, default=701, help="SynthAV user seed of the test items")
    p.add_argument("--data", default="runs/quality-splits")
    p.add_argument("--out", default="benchmarks/results")
    p.add_argument("--name", default="learning_curves")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--recipe", default="crab-tiny", help="the recipe that made the run (for the report)")
    p.add_argument(
        "--reference",
        default="crab-tiny",
        help="model the last snapshot is compared with (crab-tiny: shipped)",
    )
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    rows = score_all(args)
    if not rows:
        p.error(f"no snapshots under {args.run}/snapshots")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    md = markdown(rows, args)
    (out / f"{args.name}.md").write_text(md)
    (out / f"{args.name}.json").write_text(
        json.dumps(
            {"per_task": args.per_task, "seed": args.seed, "every": args.every, "rows": rows}, indent=1
        )
    )
    figure(rows, out / f"{args.name}.png")
    sys.stdout.write(md)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
