"""Is crab-tiny's AVQA answer bound to the question? Restated entity vs answer, per model.

Every SynthAV AVQA reasoning starts by restating the question (``The question asks whether a
trumpet is seen.``). This benchmark scores models on the same fresh AVQA items through
``python -m crab_core eval`` (its ``--results`` file keeps each answer) and splits the accuracy by
whether the model restated the question right (its first sentence equal to the reference's)::

    python benchmarks/avqa_binding.py --models v5=runs/v5/model,v6=crab-tiny

A model that restates a wrong entity ("... whether a dog is seen" for a question about a trumpet)
answers from the clip, not from the question. Writes ``benchmarks/results/avqa_binding.{md,json}``.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
log = logging.getLogger("avqa_binding")

from crab_core.tasks.parsers import normalize_answer, parse_avqa  # noqa: E402


def first_sentence(text: str) -> str:
    """The text up to and including its first full stop, whitespace collapsed."""
    head = " ".join(text.split())
    cut = head.find(". ")
    return head if cut < 0 else head[: cut + 1]


def binding_row(prediction: str, reference: str, answer: str) -> dict:
    """``{"restated": first sentences equal, "correct": parsed answer == answer}`` of one item."""
    pred = parse_avqa(prediction)
    return {
        "restated": first_sentence(prediction) == first_sentence(reference),
        "correct": pred.answer is not None and pred.answer == normalize_answer(str(answer)),
    }


def summarise(rows: list[dict]) -> dict:
    """Counts and shares of restated / correct items (``rows`` of :func:`binding_row`)."""
    n = len(rows)
    res = [r for r in rows if r["restated"]]
    wrong = [r for r in rows if not r["restated"]]

    def acc(rs: list[dict]) -> float | None:
        return round(sum(r["correct"] for r in rs) / len(rs), 3) if rs else None

    return {
        "n": n,
        "accuracy": acc(rows),
        "restated": round(len(res) / n, 3) if n else None,
        "restated_n": len(res),
        "accuracy_restated": acc(res),
        "accuracy_not_restated": acc(wrong),
    }


def score(model: str, manifest: Path, work: Path) -> list[dict]:
    """:func:`binding_row` of every AVQA row of ``manifest``, answered by ``python -m crab_core eval``."""
    from _report import eval_answers

    return [
        binding_row(text, row["output"], row["gt"]["answer"])
        for row, text in eval_answers(model, manifest, work, "avqa")
    ]


def table(report: dict) -> str:
    lines = [
        "| model | split | n | accuracy | restated the question right | accuracy when restated right "
        "| accuracy when not |",
        "|---|---|---|---|---|---|---|",
    ]
    for model, splits in report["models"].items():
        for split, s in splits.items():

            def f(x):
                return "-" if x is None else f"{x:.3f}"

            lines.append(
                f"| {model} | {split} | {s['n']} | {f(s['accuracy'])} | {f(s['restated'])} "
                f"| {f(s['accuracy_restated'])} | {f(s['accuracy_not_restated'])} |"
            )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", default="crab-tiny", help="label=model,... (model: crab-tiny or a folder)")
    p.add_argument("--data", default="runs/quality-splits", help="the splits of crab_tiny_quality.py")
    p.add_argument("--seeds", default="test=501,test-compositional=502")
    p.add_argument("--per-task", type=int, default=50, help="samples per task of the splits")
    p.add_argument("--out", default="benchmarks/results")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from crab_tiny_quality import make_split

    seeds = {k: int(v) for k, v in (x.split("=") for x in args.seeds.split(",") if x)}
    models = dict(x.split("=", 1) for x in args.models.split(",") if x)
    report: dict = {
        "command": f"python benchmarks/avqa_binding.py --models {args.models} --seeds {args.seeds}",
        "models": {},
    }
    for label, model in models.items():
        report["models"][label] = {}
        for split, seed in seeds.items():
            manifest = make_split(Path(args.data), split, seed, args.per_task)
            with tempfile.TemporaryDirectory() as tmp:
                rows = score(model, manifest, Path(tmp))
            report["models"][label][f"{split} (seed {seed})"] = summarise(rows)
            log.info("%s %s: %s", label, split, report["models"][label][f"{split} (seed {seed})"])
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "avqa_binding.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    md = (
        "# AVQA: is the answer bound to the question?\n\n"
        f"`{report['command']}`: the same fresh AVQA items for every model, answered through "
        "`python -m crab_core eval`. *Restated right*: the answer's first sentence (\"The question asks "
        "...\") equals the reference's, i.e. the model named the asked entity.\n\n" + table(report)
    )
    (out / "avqa_binding.md").write_text(md, encoding="utf-8")
    sys.stdout.write(md)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
