"""crab-tiny quality table: the headline metrics of ``python -m crab_core eval`` on fresh SynthAV splits.

Generates (or reuses) the ``test`` and ``test-compositional`` splits with ``python -m crab_core synth``
(seeds never used in training), scores the model through the same path as
``python -m crab_core eval`` (:func:`crab_core.evaluation.evaluate`) and writes the README / model
card table (markdown) and the raw reports (JSON)::

    python benchmarks/crab_tiny_quality.py --model crab-tiny --per-task 50 --out benchmarks/results

``--seeds test=201,test-compositional=202 --name crab_tiny_quality_seeds201`` scores the same model
on other fresh seeds (does the table hold on new seeds?); ``--model DIR`` scores any saved model
(e.g. a recipe rerun's ``DIR/model``, to check that the recipe reproduces the shipped metrics).

Targets are those of the crab-tiny issue; each value is printed next to its majority / trivial
baseline. When AVQA is scored, a second section gives its accuracy per question type (``n`` items
each, from the manifest's ``gt['question_type']``); the JSON keeps those counts in
``avqa_type_counts``.
"""

from __future__ import annotations

import argparse
import json
import logging
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
log = logging.getLogger("crab_tiny_quality")

from crab_core.reports import TARGETS, weights_digest  # noqa: E402

#: (task, metric key, label, target, higher is better): the issue #13 targets of crab_core.reports
HEADLINE = [(t.task, t.key, t.label, t.bound, t.higher_is_better) for t in TARGETS]
SPLITS = {"test": 101, "test-compositional": 102}


def make_split(root: Path, split: str, seed: int, per_task: int, tasks: tuple[str, ...] = ()) -> Path:
    """Write ``split`` under ``root/seed{seed}`` with ``python -m crab_core synth`` unless it is
    already there.

    ``tasks``: only these tasks (default: all nine), ``per_task`` samples each.
    """
    root = root / (f"seed{seed}" + (f"-{'-'.join(tasks)}-{per_task}" if tasks else ""))
    manifest = root / split / "manifest.jsonl"
    if not manifest.is_file():
        cmd = [
            sys.executable,
            "-m",
            "crab_core",
            "synth",
            "--out",
            str(root),
            "--split",
            split,
            "--num",
            str((len(tasks) or 9) * per_task),
            "--seed",
            str(seed),
            "--workers",
            "2",
        ]
        subprocess.run(cmd + (["--tasks", ",".join(tasks)] if tasks else []), check=True)
    return manifest


def score(model: str, manifest: Path) -> dict:
    from crab_core.cli_common import load_pipeline
    from crab_core.evaluation import evaluate, read_manifest

    args = argparse.Namespace(model=model, device="cpu", llm=None, clip=None, beats=None, crab=[])
    pipe = load_pipeline(args)
    rows = read_manifest(manifest)
    t0 = time.perf_counter()
    report = evaluate(pipe, rows, progress=False)
    return {
        "model": pipe.name,
        "trained": pipe.trained,
        "seconds": round(time.perf_counter() - t0, 1),
        **report.to_json(),
        "avqa_type_counts": avqa_type_counts(rows),
        "ref_avs_null_count": sum(
            1 for r in rows if r.get("task") == "ref-avs" and (r.get("gt") or {}).get("null")
        ),
    }


def model_weights_digest(model: str) -> str | None:
    """:func:`crab_core.reports.weights_digest` of the model folder's ``model.safetensors`` (None
    without one), so that reports never mix results of different weights under one model name."""
    from crab_core.pipeline import TINY_DIR

    path = (TINY_DIR if model == "crab-tiny" else Path(model)) / "model.safetensors"
    return weights_digest(path) if path.is_file() else None


def command_line(args: argparse.Namespace, seeds: dict[str, int], tasks: tuple[str, ...]) -> str:
    """The command that reproduces this run (``--seeds`` only when they differ from the defaults)."""
    extra = (
        f" --seeds {','.join(f'{k}={v}' for k, v in seeds.items())}"
        if seeds != {s: SPLITS[s] for s in seeds}
        else ""
    )
    return (
        f"python benchmarks/crab_tiny_quality.py --model {args.model} --per-task {args.per_task}{extra}"
        f"{' --tasks ' + args.tasks if tasks else ''}"
        + (f" --name {args.name}" if args.name != "crab_tiny_quality" else "")
    )


def avqa_type_counts(rows: list[dict]) -> dict[str, int]:
    """Number of AVQA items per ``gt['question_type']`` (e.g. ``Audio/Existential``) in manifest rows."""
    from crab_core.metrics.classification import _type_key

    counts: dict[str, int] = {}
    for r in rows:
        if r.get("task") == "avqa":
            key = _type_key((r.get("gt") or {}).get("question_type", "unknown"))
            counts[key] = counts.get(key, 0) + 1
    return dict(sorted(counts.items()))


def avqa_type_table(results: dict[str, dict]) -> str:
    """Markdown section: AVQA accuracy per question type and split, ``n`` items each, the type's
    majority-answer baseline in brackets; empty when no split scored AVQA."""
    splits = [s for s in results if "avqa" in results[s]["metrics"]]
    types = sorted(
        {
            k.removeprefix("accuracy/type/")
            for s in splits
            for k in results[s]["metrics"]["avqa"]
            if k.startswith("accuracy/type/")
        }
    )
    if not types:
        return ""
    lines = [
        "## AVQA accuracy per question type",
        "",
        "| question type | " + " | ".join(splits) + " |",
        "|---|" + "---|" * len(splits),
    ]
    for t in types:
        cells = []
        for s in splits:
            m = results[s]["metrics"]["avqa"].get(f"accuracy/type/{t}")
            b = results[s]["baselines"].get("avqa", {}).get(f"accuracy/type/{t}")
            n = results[s].get("avqa_type_counts", {}).get(t, "?")
            cells.append("-" if m is None else f"{m:.3f}{'' if b is None else f' ({b:.3f})'}, n={n}")
        lines.append(f"| {t} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n\nMajority answer of the type in brackets.\n"


def table(results: dict[str, dict]) -> str:
    splits = list(results)
    head = "| metric | target | " + " | ".join(splits) + " |\n|---|---|" + "---|" * len(splits) + "\n"
    rows = []
    for task, key, label, target, higher in HEADLINE:
        cells = []
        for s in splits:
            m = results[s]["metrics"].get(task, {})
            b = results[s]["baselines"].get(task, {})
            if key not in m:
                cells.append("-")
                continue
            ok = m[key] >= target if higher else m[key] <= target
            base = f" ({b[key]:.3f})" if key in b else ""
            cells.append(f"{'**' if ok else ''}{m[key]:.3f}{'**' if ok else ''}{base}")
        if all(c == "-" for c in cells):
            continue
        rows.append(f"| {label} | {'>=' if higher else '<='} {target:.2f} | " + " | ".join(cells) + " |")
    n = {s: results[s]["counts"] for s in splits}
    return (
        head + "\n".join(rows) + f"\n\nSamples per task: {json.dumps(n)}. Bold: target met. "
        "Majority / trivial baseline in brackets.\n"
    )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="crab-tiny")
    p.add_argument("--per-task", type=int, default=50)
    p.add_argument("--data", default="runs/quality-splits", help="where the SynthAV splits are written")
    p.add_argument("--out", default="benchmarks/results")
    p.add_argument("--splits", default=",".join(SPLITS))
    p.add_argument("--seeds", default="", help="split=seed,... overriding the default split seeds")
    p.add_argument("--name", default="crab_tiny_quality", help="result file stem under --out")
    p.add_argument("--tasks", default="", help="comma-separated subset of tasks (default: all)")
    args = p.parse_args(argv)
    seeds = dict(SPLITS)
    for pair in [x for x in args.seeds.split(",") if x]:
        split, _, seed = pair.partition("=")
        if split not in SPLITS or not seed.isdigit():
            p.error(f"--seeds wants split=seed pairs with split in {sorted(SPLITS)}, got {pair!r}")
        seeds[split] = int(seed)
    tasks = tuple(t for t in args.tasks.split(",") if t)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    results = {}
    for split in [s for s in args.splits.split(",") if s]:
        manifest = make_split(Path(args.data), split, seeds[split], args.per_task, tasks)
        results[split] = score(args.model, manifest)
        log.info("%s scored in %.1f s", split, results[split]["seconds"])
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    used = {s: seeds[s] for s in results}
    digest = model_weights_digest(args.model)
    for split, res in results.items():  # what crab_core.reports needs to label and group the run
        res.update(
            seed=seeds[split],
            per_task=args.per_task,
            command=command_line(args, used, tasks),
            weights_sha256=digest,
        )
    (out / f"{args.name}.json").write_text(json.dumps(results, indent=1))
    extra = (
        f" --seeds {','.join(f'{k}={v}' for k, v in used.items())}"
        if used != {s: SPLITS[s] for s in results}
        else ""
    )
    md = (
        f"# crab-tiny quality on fresh SynthAV splits\n\n`python benchmarks/crab_tiny_quality.py --model "
        f"{args.model} --per-task {args.per_task}{extra}{' --tasks ' + args.tasks if tasks else ''}` "
        "(same path as `python -m crab_core eval`; split seeds "
        f"{used}).\n\n" + table(results)
    )
    per_type = avqa_type_table(results)
    md += f"\n{per_type}" if per_type else ""
    (out / f"{args.name}.md").write_text(md)
    sys.stdout.write(md)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
