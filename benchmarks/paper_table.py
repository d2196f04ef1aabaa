"""The paper's table from the official test sets: import each benchmark, evaluate it, compare.

    python benchmarks/paper_table.py --model crab-7b --data-root DIR [--batch-size 8] [--limit N]

``DIR`` holds the releases side by side (folder names below; ``--root BENCH=PATH`` points one
elsewhere). Each test split is imported (``crab_core.data``) into ``--out`` (default
``runs/paper_table/<model>/``), evaluated through ``eval``'s own path (``crab_core.eval_runs``:
batched, and resumable: rerunning skips finished rows, kept in ``<bench>.results.jsonl``) with the
prompts ``eval`` uses (the reference's test prompts: the S4 / MS3 / Ref-AVS releases of frames get
1-fps videos made from their frames, ``data import --make-videos``, unless ``--no-videos``), and printed
beside the paper's headline numbers with the sample counts. The table is written to
``--out``/paper_table.md and .json.

Paper numbers (AVE 80.15, MUSIC-AVQA 78.94, S4 73.25, MS3 58.21, AVSS 26.59 mIoU) are those of the
issue; none could be checked against the paper itself here (the reference notes, crab-reference.md
section 4, could read only its abstract), so every one is marked ``[unverified]``.
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

from benchmarks._report import header, write_report  # noqa: E402
from crab_core.cli_common import add_model_args, load_pipeline, positive_int  # noqa: E402
from crab_core.data import VIDEO_BENCHES, DataError, import_benchmark  # noqa: E402
from crab_core.eval_runs import Replay, ResultsFile, generate_rows  # noqa: E402
from crab_core.evaluation import evaluate, read_manifest  # noqa: E402

#: (bench, split, folder names tried under --data-root, metric key, paper value x100 or None)
ROWS = [
    ("ave", "test", ("AVE_Dataset", "AVE", "ave"), "accuracy", 80.15),
    ("avvp", "test", ("LLP", "AVVP", "avvp"), "segment_type_av", None),
    ("music-avqa", "test", ("MUSIC-AVQA", "music-avqa", "avqa"), "accuracy", 78.94),
    ("s4", "test", ("AVSBench", "AVS", "avsbench"), "miou", 73.25),
    ("ms3", "test", ("AVSBench", "AVS", "avsbench"), "miou", 58.21),
    ("avss", "test", ("AVSBench", "AVS", "avsbench"), "miou", 26.59),
    ("ref-avs", "test_s", ("REFAVS", "Ref-AVS", "ref-avs"), "miou", None),
    ("ref-avs", "test_u", ("REFAVS", "Ref-AVS", "ref-avs"), "miou", None),
    ("ref-avs", "test_n", ("REFAVS", "Ref-AVS", "ref-avs"), "s", None),
]
UNVERIFIED = "[unverified]"
log = logging.getLogger("paper_table")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_model_args(p)
    p.add_argument("--data-root", required=True, metavar="DIR", help="folder holding the benchmark releases")
    p.add_argument("--root", action="append", default=[], metavar="BENCH=PATH", help="one release elsewhere")
    p.add_argument(
        "--out",
        metavar="DIR",
        help="manifests, per-row results and the table (default runs/paper_table/MODEL)",
    )
    p.add_argument("--batch-size", type=positive_int, default=1, metavar="N", help="rows per model call")
    p.add_argument("--limit", type=positive_int, metavar="N", help="evaluate the first N rows of each split")
    p.add_argument("--only", metavar="B1,B2", help="only these benchmarks (ave, avvp, music-avqa, s4, ...)")
    p.add_argument(
        "--no-videos",
        action="store_true",
        help="do not make 1-fps videos from the frames of S4 / MS3 / Ref-AVS (their rows then run the "
        "image + audio prompt instead of the reference's video + audio test prompt)",
    )
    return p.parse_args(argv)


def _root(args, bench: str, names: tuple[str, ...]) -> Path | None:
    given = dict(x.split("=", 1) for x in args.root if "=" in x)
    if bench in given:
        return Path(given[bench])
    return next((Path(args.data_root) / n for n in names if (Path(args.data_root) / n).is_dir()), None)


def run_one(pipe, args, out: Path, bench: str, split: str, root: Path) -> dict:
    """Import one split and evaluate it; the table row's numbers (fractions), counts and notes."""
    manifest = out / f"{bench}-{split}.jsonl"
    rep = import_benchmark(
        bench, root, split, manifest, make_videos=bench in VIDEO_BENCHES and not args.no_videos
    )
    rows = read_manifest(manifest, errors=(read_errors := []), limit=args.limit, media_root=root)
    settings = {
        "manifest": str(manifest.resolve()),
        "model": [args.model, args.llm, args.crab],
        "limit": args.limit,
    }
    results = ResultsFile(out / f"{bench}-{split}.results.jsonl", settings)
    t0 = time.perf_counter()
    stored = generate_rows(pipe, rows, args.batch_size, results=results, progress=True)
    report = evaluate(Replay(pipe, rows, stored), rows, progress=False, errors=read_errors)
    task = rows[0]["task"] if rows else None
    return {
        "metrics": report.metrics.get(task, {}),
        "baseline": report.baselines.get(task, {}),
        "n": report.counts.get(task, 0),
        "failed": len(report.errors),
        "imported": rep.written,
        "skipped_at_import": dict(rep.problems),
        "seconds": round(time.perf_counter() - t0, 1),
        "variants": sorted({"video" if r.get("video") else "image+audio" for r in rows}),
    }


def table(results: list[dict], command: str, threads: int) -> str:
    lines = [
        "# Crab on the official test sets vs the paper",
        "",
        header(command, threads),
        "",
        "Ours and the paper x100. n: rows scored; failed: rows that could not be run or scored; "
        "import: rows skipped while importing (by reason). Paper numbers are the issue's, "
        + UNVERIFIED
        + ".",
        "",
        "| benchmark | split | metric | ours | baseline | paper | n | failed | import skipped | input |",
        "|---|---|---|---:|---:|---:|---:|---:|---|---|",
    ]
    for r in results:
        if "missing" in r:
            head = f"| {r['bench']} | {r['split']} | {r['metric']} | - | - | {_paper(r)} | 0 | -"
            lines.append(f"{head} | {r['missing']} | - |")
            continue
        ours = r["metrics"].get(r["metric"])
        base = r["baseline"].get(r["metric"])
        skipped = ", ".join(f"{n} {k}" for k, n in sorted(r["skipped_at_import"].items())) or "0"
        lines.append(
            f"| {r['bench']} | {r['split']} | {r['metric']} | {_pct(ours)} | {_pct(base)} | {_paper(r)} | "
            f"{r['n']} | {r['failed']} | {skipped} | {', '.join(r['variants'])} |"
        )
    return "\n".join(lines) + "\n"


def _pct(v) -> str:
    return "-" if v is None else f"{100 * v:.2f}"


def _paper(r: dict) -> str:
    return "-" if r["paper"] is None else f"{r['paper']:.2f} {UNVERIFIED}"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    out = Path(args.out or ROOT / "runs" / "paper_table" / args.model.replace("/", "_"))
    out.mkdir(parents=True, exist_ok=True)
    only = set(args.only.split(",")) if args.only else None
    pipe = load_pipeline(args)
    results = []
    for bench, split, names, metric, paper in ROWS:
        if only and bench not in only:
            continue
        row = {"bench": bench, "split": split, "metric": metric, "paper": paper}
        root = _root(args, bench, names)
        if root is None:
            row["missing"] = f"no {' / '.join(names)} under --data-root"
        else:
            try:
                row.update(run_one(pipe, args, out, bench, split, root))
            except DataError as exc:
                row["missing"] = str(exc)
        print(json.dumps(row), flush=True)
        results.append(row)
    command = "python benchmarks/paper_table.py " + " ".join(sys.argv[1:] if argv is None else argv)
    (out / "paper_table.json").write_text(json.dumps({"command": command, "rows": results}, indent=1) + "\n")
    threads = __import__("torch").get_num_threads()
    return write_report(out, "paper_table.md", table(results, command, threads))


if __name__ == "__main__":
    raise SystemExit(main())
