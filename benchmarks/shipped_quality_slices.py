"""The slice behind ``tests/training/test_shipped_quality.py``: value, majority baseline and floor per
metric, and how long scoring it takes.

Scores the shipped crab-tiny on the test's slice (40 fresh ``test`` samples per task, user seed
2026; AVQA on the question-type-balanced slice of 8 questions per type) through the same path as
the test (and ``python -m crab_core eval``), and writes ``benchmarks/results/shipped_quality_slices.md``
and ``.json``::

    python benchmarks/shipped_quality_slices.py [--out benchmarks/results]

Run it after changing the shipped model, then set the test's floors below the new values (with a
margin for CPU nondeterminism) and above the baselines.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.training import test_shipped_quality as tq  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results"), help="results folder")
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    res = tq.measure()
    seconds = round(time.perf_counter() - t0, 1)
    summary = res["summary"]
    rows = []
    for metric, floor in sorted(tq.FLOORS.items()):
        task = metric.split("/")[0]
        rows.append(
            {
                "metric": metric,
                "n": res["tasks"][task]["n"],
                "value": summary[metric],
                "baseline": summary[f"{metric}@majority"],
                "floor": floor,
            }
        )
    out = {
        "command": "python benchmarks/shipped_quality_slices.py",
        "model": "assets/crab-tiny",
        "seed": tq.SEED,
        "per_task": tq.PER_TASK,
        "avqa_per_type": tq.AVQA_PER_TYPE,
        "rows": rows,
        "ref_avs_null_s": summary["ref-avs/s"],
        "null_s_ceiling": tq.NULL_S_CEILING,
        "seconds": seconds,
        "threads": 1,  # tq.measure scores on one thread
        "load_average": [round(x, 1) for x in os.getloadavg()],
    }
    folder = Path(args.out)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "shipped_quality_slices.json").write_text(json.dumps(out, indent=2) + "\n")
    lines = [
        "# The shipped-model quality test's slice",
        "",
        f"`{out['command']}`: crab-tiny on fresh SynthAV `test` samples (user seed {tq.SEED}), "
        f"{tq.PER_TASK} per task; AVQA on a question-type-balanced slice ({tq.AVQA_PER_TYPE} per type). "
        "Floors of `tests/training/test_shipped_quality.py`.",
        "",
        "| metric | n | value | majority baseline | floor |",
        "|---|---|---|---|---|",
    ]
    for r in rows:
        cells = [r["metric"], str(r["n"]), f"{r['value']:.3f}", f"{r['baseline']:.3f}", f"{r['floor']:.2f}"]
        lines.append("| " + " | ".join(cells) + " |")
    lines += [
        "",
        f"Ref-AVS null S (lower is better): {out['ref_avs_null_s']:.3f}, ceiling {tq.NULL_S_CEILING}.",
        f"Scoring took {seconds} s with {out['threads']} threads (load average {out['load_average'][0]} "
        f"on {os.cpu_count()} cores).",
        "",
    ]
    (folder / "shipped_quality_slices.md").write_text("\n".join(lines))
    print("\n".join(lines))  # noqa: T201 - benchmark output
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
