"""``python -m crab_core eval``: per-task metrics on a manifest, next to the majority baseline."""

from __future__ import annotations

import argparse
import json
import sys

from .cli_common import add_model_args, load_pipeline
from .evaluation import evaluate, read_manifest


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m crab_core eval", description=__doc__)
    add_model_args(parser)
    parser.add_argument("--data", required=True, help="AV-UIE-style JSONL manifest (docs/manifest.md)")
    parser.add_argument("--tasks", help="comma-separated subset of tasks")
    parser.add_argument("--limit", type=int, help="evaluate at most N rows")
    parser.add_argument("--max-new-tokens", type=int, help="cap on generated tokens (default: per task)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    rows = read_manifest(args.data)
    if args.limit:
        rows = rows[: args.limit]
    pipe = load_pipeline(args)
    tasks = [t.strip() for t in args.tasks.split(",")] if args.tasks else None
    report = evaluate(pipe, rows, tasks, progress=not args.no_progress, max_new_tokens=args.max_new_tokens)
    if args.json:
        sys.stdout.write(json.dumps({"model": pipe.name, "trained": pipe.trained, **report.to_json()}) + "\n")
    else:
        if not pipe.trained:
            sys.stdout.write("note: randomly initialised model, the metrics are chance level\n")
        sys.stdout.write(report.table() + "\n")
    return 0
