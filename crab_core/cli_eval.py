"""Per-task metrics on a manifest, next to the majority baseline.

Rows that cannot be scored (malformed JSON or ``gt``, unreadable media, paths outside the
manifest's folder) are listed with their line number and reason; the others are still scored.
When no row at all can be scored the command fails (exit 1) instead of printing empty metrics.

Long runs: ``--batch-size N`` generates N rows of one task per model call; ``--results FILE`` keeps
every finished row's answer in FILE, and running the same command again skips the rows already there
(crab_core.eval_runs).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .cli_common import PROG, add_model_args, load_pipeline, positive_int
from .errors import EvaluationError
from .tasks import TASKS

EXAMPLES = f"""examples:
  {PROG} eval --data data/test/manifest.jsonl
  {PROG} eval --data manifest.jsonl --tasks ave,avqa --limit 100 --json
  {PROG} eval --data s4-test.jsonl --media-root AVSBench --batch-size 8 --results runs/s4.jsonl
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=f"{PROG} eval",
        description=__doc__,
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_model_args(parser)
    parser.add_argument(
        "--data", required=True, metavar="MANIFEST", help="AV-UIE-style JSONL manifest (docs/manifest.md)"
    )
    parser.add_argument(
        "--tasks", metavar="T1,T2", help=f"comma-separated subset of tasks ({', '.join(TASKS)})"
    )
    parser.add_argument("--limit", type=positive_int, metavar="N", help="evaluate at most N rows")
    parser.add_argument(
        "--max-new-tokens", type=positive_int, metavar="N", help="cap on generated tokens (default: per task)"
    )
    parser.add_argument(
        "--allow-outside",
        action="store_true",
        help="accept media / mask paths that resolve outside the manifest's folder "
        "(refused per row by default)",
    )
    parser.add_argument(
        "--media-root",
        metavar="DIR",
        help="folder the manifest's media paths are relative to (default: the manifest's folder), e.g. the "
        "benchmark root of a manifest 'data import' wrote elsewhere",
    )
    parser.add_argument(
        "--batch-size",
        type=positive_int,
        default=1,
        metavar="N",
        help="rows of one task per model call (default 1)",
    )
    parser.add_argument(
        "--results",
        metavar="FILE",
        help="keep each finished row's answer in FILE (JSONL); rerunning with the same FILE skips the rows "
        "already in it (resume a long run)",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    return parser


def _out_of_domain_rows(pipe, rows: list[dict], tasks: list[str] | None) -> int:
    """How many rows (of the chosen tasks) use a file that is not SynthAV, for a SynthAV-only model."""
    from .domain import out_of_domain_notice

    if pipe is None:
        return 0
    files = ("video", "audio", "image")
    return sum(
        1
        for r in rows
        if (tasks is None or r.get("task") in tasks)
        and out_of_domain_notice(pipe.model.config.name, pipe.card, {k: r.get(k) for k in files})
    )


def _batched_runner(args, pipe, rows: list[dict], tasks: list[str] | None):
    """Generate every row's answer in batches (resuming from ``--results``); evaluate replays them."""
    from .eval_runs import Replay, ResultsFile, generate_rows

    chosen = [r for r in rows if tasks is None or r["task"] in tasks]
    results = None
    if args.results:
        settings = {
            "manifest": str(Path(args.data).resolve()),
            "model": [args.model, args.llm, args.crab],
            "max_new_tokens": args.max_new_tokens,
        }
        results = ResultsFile(args.results, settings)
    stored = generate_rows(
        pipe, chosen, args.batch_size, args.max_new_tokens, results, progress=not args.no_progress
    )
    return Replay(pipe, chosen, stored)


def main(argv: list[str]) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    from .evaluation import describe_error, evaluate, read_manifest

    tasks = [t.strip() for t in args.tasks.split(",") if t.strip()] if args.tasks else None
    unknown = sorted(set(tasks or ()) - set(TASKS))
    if unknown:
        parser.error(f"--tasks: unknown task(s) {unknown}; known: {sorted(TASKS)}")
    read_errors: list[dict] = []
    rows = read_manifest(
        args.data,
        allow_outside=args.allow_outside,
        errors=read_errors,
        limit=args.limit,
        media_root=args.media_root,
    )
    if not rows and not read_errors:
        raise EvaluationError(f"{args.data}: the manifest has no rows")
    pipe = load_pipeline(args) if rows else None
    foreign = _out_of_domain_rows(pipe, rows, tasks)
    if foreign:
        sys.stderr.write(
            f"warning: {foreign} of {len(rows)} rows are not SynthAV clips, and {pipe.name} is trained "
            "only on SynthAV scenes: their metrics say little (docs/domain.md)\n"
        )
    runner = (
        _batched_runner(args, pipe, rows, tasks) if rows and (args.batch_size > 1 or args.results) else pipe
    )
    report = evaluate(
        runner,
        rows,
        tasks,
        progress=not args.no_progress and runner is pipe,
        max_new_tokens=args.max_new_tokens,
        errors=read_errors,
    )
    if args.json:
        name, trained = (pipe.name, pipe.trained) if pipe is not None else (args.model, None)
        sys.stdout.write(
            json.dumps({"model": name, "trained": trained, "out_of_domain_rows": foreign, **report.to_json()})
            + "\n"
        )
    else:
        if pipe is not None and not pipe.trained:
            sys.stdout.write("note: randomly initialised model, the metrics are chance level\n")
        sys.stdout.write(report.table() + "\n")
    if report.scored == 0:
        which = f" of task(s) {','.join(tasks)}" if tasks else ""
        if not report.errors:
            raise EvaluationError(f"{args.data}: no row{which} to evaluate")
        raise EvaluationError(
            f"{args.data}: no row{which} could be scored ({len(report.errors)} failed; first: "
            f"{describe_error(report.errors[0])})"
        )
    return 0
