"""Does ``python -m crab_core train --recipe crab-tiny`` reproduce the shipped crab-tiny?

Compares a from-scratch rerun of the recipe with the shipped model, on three levels:

* **weights**: per component, the largest absolute difference between the two state dicts (0 =
  bit-identical), and the wall time of each run (``training.json``);
* **quality**: the headline metrics of both models on the same fresh SynthAV splits
  (``benchmarks/crab_tiny_quality.py`` JSON reports);
* **noise**: how much the *same* model's headline metrics move between two sets of fresh evaluation
  seeds (the shipped model on seeds 101/102 and on 201/202); a rerun reproduces the shipped metrics
  "within noise" when each metric moves by no more than that.

::

    python -m crab_core train --recipe crab-tiny --out runs/rerun
    python benchmarks/crab_tiny_quality.py --model runs/rerun/model --out runs/rerun-quality
    python benchmarks/crab_tiny_quality.py --model crab-tiny --seeds test=201,test-compositional=202 \\
        --name crab_tiny_quality_seeds201
    python benchmarks/recipe_reproduction.py --rerun runs/rerun/model \\
        --rerun-quality runs/rerun-quality/crab_tiny_quality.json
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from benchmarks._report import header, write_report  # noqa: E402
from benchmarks.crab_tiny_quality import HEADLINE  # noqa: E402

log = logging.getLogger("recipe_reproduction")


def weight_diffs(a: Path, b: Path) -> dict[str, float]:
    """Largest absolute difference per top-level component of two ``model.safetensors`` files."""
    from safetensors.torch import load_file

    for folder in (a, b):
        if not (folder / "model.safetensors").is_file():
            raise SystemExit(f"{folder} has no model.safetensors (expected a model folder, e.g. DIR/model)")
    sa, sb = load_file(str(a / "model.safetensors")), load_file(str(b / "model.safetensors"))
    if set(sa) != set(sb):
        raise SystemExit(f"the two models have different keys: {sorted(set(sa) ^ set(sb))[:5]}")
    out: dict[str, float] = {}
    for k in sorted(sa):
        comp = k.split(".")[0]
        d = float((sa[k].float() - sb[k].float()).abs().max()) if sa[k].numel() else 0.0
        out[comp] = max(out.get(comp, 0.0), d)
    return out


def wall_minutes(model_dir: Path) -> float | None:
    card = model_dir / "training.json"
    return json.loads(card.read_text()).get("wall_minutes_with_setup") if card.is_file() else None


def quality_rows(shipped: dict, rerun: dict, other_seeds: dict) -> tuple[list[str], int]:
    """Markdown rows ``metric | split | shipped | rerun | |diff| | seed noise | within``."""
    rows, outside = [], 0
    for task, key, label, _target, _higher in HEADLINE:
        noise = max(
            abs(shipped[s]["metrics"][task][key] - other_seeds[s]["metrics"][task][key])
            for s in shipped
            if s in other_seeds
        )
        for split in shipped:
            a, b = shipped[split]["metrics"][task][key], rerun[split]["metrics"][task][key]
            ok = abs(a - b) <= noise + 1e-9
            outside += not ok
            rows.append(
                f"| {label} | {split} | {a:.3f} | {b:.3f} | {abs(a - b):.3f} | {noise:.3f} | "
                f"{'yes' if ok else '**no**'} |"
            )
    return rows, outside


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--shipped", default=str(ROOT / "assets" / "crab-tiny"))
    p.add_argument("--rerun", required=True, help="model folder of the recipe rerun")
    p.add_argument("--shipped-quality", default=str(ROOT / "benchmarks/results/crab_tiny_quality.json"))
    p.add_argument(
        "--rerun-quality", required=True, help="crab_tiny_quality.py JSON of the rerun (same seeds)"
    )
    p.add_argument(
        "--other-seeds",
        default=str(ROOT / "benchmarks/results/crab_tiny_quality_seeds201.json"),
        help="crab_tiny_quality.py JSON of the shipped model on other seeds (the noise)",
    )
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    shipped, rerun = Path(args.shipped), Path(args.rerun)
    diffs = weight_diffs(shipped, rerun)
    q = []
    for f in (args.shipped_quality, args.rerun_quality, args.other_seeds):
        try:
            q.append(json.loads(Path(f).read_text()))
        except (OSError, json.JSONDecodeError) as exc:
            raise SystemExit(f"cannot read the quality report {f}: {exc}") from None
    rows, outside = quality_rows(*q)
    identical = all(v == 0.0 for v in diffs.values())
    md = [
        "# Does the crab-tiny recipe reproduce the shipped model?",
        "",
        header("python benchmarks/recipe_reproduction.py --rerun ... --rerun-quality ...", 2),
        "",
        f"Wall time from scratch (setup included): shipped {wall_minutes(shipped)} min, "
        f"rerun {wall_minutes(rerun)} min.",
        "",
        "## Weights (largest absolute difference per component)",
        "",
        "| component | max abs diff |",
        "|---|---|",
    ]
    md += [f"| {k} | {v:.3g} |" for k, v in diffs.items()]
    md += [
        "",
        f"Bit-identical weights: **{'yes' if identical else 'no'}**.",
        "",
        "## Quality on the same fresh splits",
        "",
        "Seed noise: the largest change of the shipped model's metric between evaluation seeds "
        "101/102 and 201/202 (same model, other fresh samples).",
        "",
        "| metric | split | shipped | rerun | abs diff | seed noise | within noise |",
        "|---|---|---|---|---|---|---|",
        *rows,
        "",
        f"Metrics outside the seed noise: **{outside}** of {len(rows)}.",
        "",
    ]
    return write_report(args.out, "recipe_reproduction.md", "\n".join(md))


if __name__ == "__main__":
    raise SystemExit(main())
