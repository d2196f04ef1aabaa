"""CLI start-up: ``infer`` wall time next to the bare import of torch + transformers + peft.

Usage: ``python benchmarks/cli_startup.py [--runs 5] [--out benchmarks/results]``.

Runs, alternately and in fresh processes, ``python -c "import torch, transformers, peft"`` and
``python -m crab_core infer --task ave --video assets/examples/ave.mp4`` (crab-tiny, full answer;
default threads, and ``--threads 2``), plus ``infer --help``. Reports the median wall time of each,
the ratio infer / bare import (target: at most 1.5) and the 1-minute load average before and after
(a background job on the same cores inflates every number; the ratio is what matters). Writes
``cli_startup.md``.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "assets" / "examples" / "ave.mp4"
TARGET = 1.5


def _wall(cmd: list[str]) -> float:
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode}): {proc.stderr[-1500:]}")
    return wall


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=5, help="runs of each command (alternating)")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results"), help="results folder")
    args = ap.parse_args(argv)
    py = sys.executable
    infer = [py, "-m", "crab_core", "infer", "--task", "ave", "--video", str(EXAMPLE)]
    commands = {
        "bare import: python -c 'import torch, transformers, peft'": [
            py,
            "-c",
            "import torch, transformers, peft",
        ],
        "infer (crab-tiny, ave example, full answer)": infer,
        "infer --threads 2": [*infer, "--threads", "2"],
        "infer --help": [py, "-m", "crab_core", "infer", "--help"],
    }
    load_before = os.getloadavg()[0]
    t0 = time.perf_counter()
    times: dict[str, list[float]] = {k: [] for k in commands}
    for _ in range(args.runs):
        for name, cmd in commands.items():
            times[name].append(_wall(cmd))
    minutes = (time.perf_counter() - t0) / 60
    load_after = os.getloadavg()[0]
    med = {k: statistics.median(v) for k, v in times.items()}
    bare = med[next(iter(commands))]
    lines = [
        "# CLI start-up: infer vs the bare import of torch + transformers + peft",
        "",
        f"`python benchmarks/cli_startup.py --runs {args.runs}` · {time.strftime('%Y-%m-%d %H:%M')} · "
        f"{platform.machine()}, {os.cpu_count()} cores · load average (1 min) {load_before:.2f} before, "
        f"{load_after:.2f} after · {minutes:.1f} min",
        "",
        "Fresh processes, run alternately; median wall seconds over the runs. Target: infer at most "
        f"{TARGET}x the bare import.",
        "",
        "| command | median wall (s) | runs (s) | / bare import |",
        "|---|---|---|---|",
    ]
    for name in commands:
        runs = ", ".join(f"{t:.2f}" for t in times[name])
        lines.append(f"| {name} | {med[name]:.2f} | {runs} | {med[name] / bare:.2f}x |")
    ratio = med["infer (crab-tiny, ave example, full answer)"] / bare
    lines += [
        "",
        f"infer / bare import: **{ratio:.2f}x** ({'meets' if ratio <= TARGET else 'misses'} the "
        f"{TARGET}x target).",
        "",
    ]
    md = "\n".join(lines)
    folder = Path(args.out)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "cli_startup.md").write_text(md)
    print(md)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
