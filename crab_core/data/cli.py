"""``python -m crab_core data import BENCH --root DIR --split S --out manifest.jsonl``.

Converts one split of an official benchmark release into an evaluation manifest (docs/manifest.md).
Rows whose media are missing, and annotation rows that cannot be read, are skipped, counted by reason
and listed (the first 20; all counts in ``OUT.report.json``). Exit status 0, or 1 with ``--strict``
when any row was skipped, or when no row at all was written.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ..cli_common import PROG
from . import BENCHMARKS, NOT_SUPPORTED, DataError, import_benchmark

EXAMPLES = f"""examples:
  {PROG} data import ave --root AVE_Dataset --split test --out AVE_Dataset/ave-test.jsonl
  {PROG} data import ref-avs --root REFAVS --split test_u
  {PROG} eval --data manifests/s4-test.jsonl --media-root AVSBench   (manifest outside its root)
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=f"{PROG} data",
        description=__doc__,
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="action", required=True, metavar="import")
    imp = sub.add_parser(
        "import",
        help="convert an official benchmark release into a manifest",
        description="Convert one split of an official benchmark release into a manifest.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    imp.add_argument("bench", metavar="BENCH", help=f"one of {', '.join([*BENCHMARKS, *NOT_SUPPORTED])}")
    imp.add_argument("--root", required=True, metavar="DIR", help="the benchmark's release folder")
    imp.add_argument(
        "--split",
        default="test",
        help="train, val or test (default test); Ref-AVS also test_s, test_u, test_n (seen / unseen / null)",
    )
    imp.add_argument(
        "--out",
        metavar="MANIFEST",
        help="manifest to write (default ROOT/crab-BENCH-SPLIT.jsonl); media paths in it are relative to "
        "ROOT, so a manifest outside ROOT is evaluated with 'eval --media-root ROOT'",
    )
    imp.add_argument(
        "--make-videos",
        action="store_true",
        help="s4, ms3 (AVSBench-semantic) and ref-avs ship frames, not videos: make each clip's 1-fps video "
        "under ROOT/crab_videos/ (ffmpeg, lossless; once) so that eval runs the reference's video + audio "
        "test prompt instead of the image + audio one",
    )
    imp.add_argument("--strict", action="store_true", help="exit 1 when any row was skipped")
    imp.add_argument("--json", action="store_true", help="print the report as one JSON object")
    return parser


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    report = import_benchmark(args.bench, args.root, args.split, args.out, make_videos=args.make_videos)
    if args.json:
        sys.stdout.write(json.dumps(report.to_json()) + "\n")
    else:
        sys.stdout.write(report.summary() + "\n")
        out_dir, root = Path(report.out).resolve().parent, Path(args.root).resolve()
        if report.written and out_dir != root:
            sys.stdout.write(
                f"note: media paths are relative to {args.root}; evaluate with "
                f"'{PROG} eval --data {report.out} --media-root {args.root}'\n"
            )
    if report.written == 0:
        raise DataError(f"{args.bench} {args.split}: no row could be imported ({report.skipped} skipped)")
    return 1 if args.strict and report.skipped else 0
