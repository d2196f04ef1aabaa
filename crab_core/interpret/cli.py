"""``python -m crab_core inspect <subcommand>``: interpretability reports.

Subcommands:

* ``profile --model M --data MANIFEST [--limit N] --out DIR``: head profile (routing per task x
  layer x projection x head, single-head ablation metrics) as JSON, markdown and figures.
* ``attribution-sanity --model M [--num N] --out FILE``: IG attribution localisation on SynthAV
  AVE samples rendered in memory (see :mod:`crab_core.interpret.sanity`).
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

import torch

log = logging.getLogger(__name__)


def _pipeline(model: str, random_heads: bool):
    from ..pipeline import CrabPipeline

    pipe = CrabPipeline.load(model)
    if random_heads:
        from .ablation import randomize_heads

        randomize_heads(pipe.model)
    return pipe


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m crab_core inspect", description="Interpretability reports."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("profile", help="head profile over a manifest")
    p.add_argument("--model", default="crab-tiny", help="crab-tiny or a model folder")
    p.add_argument("--data", required=True, help="JSONL manifest")
    p.add_argument("--limit", type=int, default=None, help="at most N samples per task")
    p.add_argument("--tasks", default=None, help="comma-separated tasks (default: all in the manifest)")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument(
        "--max-new-tokens", type=int, default=None, help="cap on generated tokens (default: per task)"
    )
    p.add_argument("--no-png", action="store_true", help="skip the matplotlib PNGs")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--random-heads", action="store_true", help="randomise LoRA B heads (untrained demo)")
    s = sub.add_parser("attribution-sanity", help="IG localisation check on SynthAV AVE samples")
    s.add_argument("--model", default="crab-tiny", help="crab-tiny or a model folder")
    s.add_argument("--num", type=int, default=10, help="SynthAV AVE samples to check")
    s.add_argument("--seed", type=int, default=0, help="SynthAV seed")
    s.add_argument("--n-steps", type=int, default=16, help="integrated-gradient steps")
    s.add_argument("--out", required=True, help="output JSON file")
    s.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    s.add_argument("--random-heads", action="store_true", help="randomise LoRA B heads (untrained demo)")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``inspect``; returns the exit code."""
    args = _parser().parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    pipe = _pipeline(args.model, args.random_heads)
    if args.command == "profile":
        from .profile import profile_dataset, write_report

        tasks = args.tasks.split(",") if args.tasks else None
        prof = profile_dataset(
            pipe, args.data, limit=args.limit, tasks=tasks, max_new_tokens=args.max_new_tokens
        )
        paths = write_report(prof, args.out, png=not args.no_png)
        log.info(
            "profile of %d samples in %.0f s: %s",
            sum(prof.counts.values()),
            prof.seconds,
            ", ".join(p.name for p in paths),
        )
        return 0
    from .sanity import attribution_sanity

    report = attribution_sanity(pipe, num=args.num, seed=args.seed, n_steps=args.n_steps)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
    log.info("attribution sanity: %s", {k: v for k, v in report.items() if k != "samples"})
    return 0
