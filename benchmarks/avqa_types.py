"""crab-tiny's AVQA answers per question type, and how often it says "yes", for saved models.

The same scoring as ``benchmarks/avqa_capacity.py`` (generated answers; accuracy overall and per type,
the share of yes / no questions answered "yes", existential questions whose class is absent answered
"yes") for model folders: the shipped model, candidates, training snapshots::

    python benchmarks/avqa_types.py --models v5=runs/v5/model,v8=runs/v8/model

Every model answers the same fresh ``test`` items. Writes ``benchmarks/results/<name>.{md,json}``.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
log = logging.getLogger("avqa_types")

from _report import header, write_results  # noqa: E402
from avqa_capacity import LABELS, score  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    from crab_core.checkpoint.pretrained import load_pretrained
    from crab_core.training.cli import test_items

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", required=True, help="label=model folder, comma-separated")
    p.add_argument("--fresh", type=int, default=300, help="fresh `test` AVQA items")
    p.add_argument("--seed", type=int, default=501)
    p.add_argument("--name", default="avqa_types", help="results file stem")
    p.add_argument("--out", default="benchmarks/results")
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    torch.set_num_threads(args.threads)
    res: dict = {"args": vars(args), "models": {}}
    items = None
    for spec in args.models.split(","):
        label, folder = spec.split("=", 1)
        model, tok, _ = load_pretrained(folder)
        if items is None:
            size = model.config.vision.image_size
            items = test_items(tok, size, "test", args.fresh, args.seed, tasks=["avqa"], workers=1)
        res["models"][label] = score(model, tok, items)
        log.info("%s: %s", label, json.dumps(res["models"][label]))
    return write_results(args.out, args.name, res, markdown(res))


def markdown(res: dict) -> str:
    a = res["args"]
    cmd = f"python benchmarks/avqa_types.py --models {a['models']}"
    cmd += f" --name {a['name']}" if a.get("name", "avqa_types") != "avqa_types" else ""
    models = list(res["models"])
    keys = list(next(iter(res["models"].values())))
    lines = [
        "# AVQA answers per question type",
        "",
        header(cmd, a["threads"]),
        "",
        f"Generated answers of the same {a['fresh']} fresh `test` AVQA items (seed {a['seed']}) for every "
        "model. n per cell in brackets.",
        "",
        "| reading | " + " | ".join(models) + " |",
        "|---|" + "---|" * len(models),
    ]
    for key in keys:
        cells = []
        for m in models:
            c = res["models"][m].get(key, {"value": None, "n": 0})
            cells.append("-" if c["value"] is None else f"{c['value']:.3f} (n={c['n']})")
        lines.append(f"| {LABELS.get(key, key.replace('type:', 'accuracy, '))} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    raise SystemExit(main())
