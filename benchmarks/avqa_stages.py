"""Where does crab-tiny's AVQA answer go wrong? Teacher-forced exactness of each stage of the reasoning.

A SynthAV AVQA answer has three stages: the restatement of the question (first sentence, "The
question asks whether a trumpet is heard."), the evidence from the clip (the middle sentences, "The
sounds are piano and drum. No trumpet is heard."), and the verdict (the last sentence, "So the answer
is <answer> no </answer>."). Fed the reference answer (teacher forcing), a model's greedy next token
at every position of a stage either matches the reference or not; a stage is *exact* when all of its
tokens match. So each stage is read given the right earlier ones::

    python benchmarks/avqa_stages.py --models v5=runs/v5/model,v8=runs/v8/model --per-task 100

A verdict exact near 1 with low evidence says the answer fails in perception, not in the logic that
concludes from it. Rows per stage and question type. Writes ``benchmarks/results/avqa_stages.{md,json}``.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections import defaultdict
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
log = logging.getLogger("avqa_stages")

from _report import header, write_report  # noqa: E402

STAGES = ("restatement", "evidence", "verdict")


def stage_of_tokens(pieces: list[str]) -> list[str]:
    """The stage of each answer token, from the decoded answer prefixes ``pieces[k]`` (tokens ``< k``):
    sentence 0 is the restatement, the last sentence the verdict, the rest evidence."""
    sentence = [p.count(". ") for p in pieces]
    last = max(sentence) if sentence else 0
    return ["restatement" if s == 0 else "verdict" if s == last else "evidence" for s in sentence]


def exact_by_stage(stages: list[str], ok: list[bool]) -> dict[str, bool]:
    """``{stage: all its tokens right}`` for the stages present."""
    out: dict[str, bool] = {}
    for s, o in zip(stages, ok, strict=True):
        out[s] = out.get(s, True) and bool(o)
    return out


@torch.no_grad()
def item_stages(model, tok, items, batch_size: int = 8) -> list[dict[str, bool]]:
    """Teacher-forced :func:`exact_by_stage` of each AVQA item (its reference answer fed in)."""
    from crab_core.training.collate import collate
    from crab_core.training.module import CrabTrainModule

    mod = CrabTrainModule(model)
    model.eval()
    out = []
    for s in range(0, len(items), batch_size):
        chunk = items[s : s + batch_size]
        batch = collate(chunk)
        res = model(mod.samples(batch, mod.encode(batch)), compute_masks=False)
        labels, pred = res.batch.labels[:, 1:], res.logits[:, :-1].argmax(-1)
        for r, it in enumerate(chunk):
            pos = (labels[r] != -100).nonzero().flatten()
            ok = (pred[r, pos] == labels[r, pos]).tolist()
            ids = it.answer_ids.tolist()
            stages = stage_of_tokens([tok.decode(ids[:k]) for k in range(len(ids))])
            out.append(exact_by_stage(stages, ok))
    return out


#: the group of existential questions answered "no": the asked class is not in the clip, so only a
#: copy from the question restates it right
ABSENT = "asked class absent (existential, no)"


def groups_of(gt: dict) -> list[str]:
    """The table rows an item counts in: ``all``, its question type, and :data:`ABSENT` when it is one."""
    qtype = gt["question_type"]
    absent = qtype.endswith("Existential") and gt.get("answer") == "no"
    return ["all", qtype] + ([ABSENT] if absent else [])


def summarise(item_groups: list[list[str]], exact: list[dict[str, bool]]) -> dict:
    """``{group: {stage: {"value", "n"}}}`` shares of exact stages; ``item_groups``: each item's
    :func:`groups_of`."""
    groups: dict[str, list[dict]] = defaultdict(list)
    for gs, e in zip(item_groups, exact, strict=True):
        for g in gs:
            groups[g].append(e)
    res = {}
    for g, rows in groups.items():
        res[g] = {}
        for st in STAGES:
            vals = [r[st] for r in rows if st in r]
            res[g][st] = {"value": round(sum(vals) / len(vals), 3) if vals else None, "n": len(vals)}
    return res


def main(argv: list[str] | None = None) -> int:
    from crab_core.checkpoint.pretrained import load_pretrained
    from crab_core.training.cli import test_items

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", default="v5=runs/v5/model", help="label=model folder, comma-separated")
    p.add_argument("--per-task", type=int, default=100)
    p.add_argument("--seed", type=int, default=501, help="user seed of the fresh `test` items")
    p.add_argument("--out", default="benchmarks/results")
    p.add_argument("--name", default="avqa_stages", help="results file stem")
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    torch.set_num_threads(args.threads)
    from crab_core.training.data import tokenize_item

    res: dict = {"args": vars(args), "models": {}}
    raws = None
    for spec in args.models.split(","):
        label, folder = spec.split("=", 1)
        torch.manual_seed(0)
        model, tok, _ = load_pretrained(folder)
        if raws is None:  # the same clips for every model, tokenised by each model's own tokenizer
            size = model.config.vision.image_size
            raws = [it.raw for it in test_items(tok, size, "test", args.per_task, args.seed, ["avqa"], 1)]
        items = [tokenize_item(r, tok) for r in raws]
        exact = item_stages(model, tok, items)
        res["models"][label] = summarise([groups_of(it.raw.gt) for it in items], exact)
        log.info("%s: %s", label, json.dumps(res["models"][label]["all"]))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{args.name}.json").write_text(json.dumps(res, indent=1))
    return write_report(out, f"{args.name}.md", markdown(res))


def markdown(res: dict) -> str:
    a = res["args"]
    labels = list(res["models"])
    cmd = (
        f"python benchmarks/avqa_stages.py --models {a['models']} --per-task {a['per_task']} "
        f"--seed {a['seed']}"
        + (f" --name {a['name']}" if a.get("name", "avqa_stages") != "avqa_stages" else "")
    )
    lines = [
        "# AVQA: teacher-forced exactness of restatement, evidence and verdict",
        "",
        header(cmd, a["threads"]),
        "",
        f"The same {a['per_task']} fresh AVQA items (`test`, seed {a['seed']}) for every model, each fed its "
        "reference answer: a stage is exact when the model's greedy next token matches the reference at "
        "every token of that stage (restatement: first sentence; verdict: last sentence; evidence: the "
        "sentences between). n items in brackets.",
        "",
        "| question type | " + " | ".join(f"{m} {s}" for m in labels for s in STAGES) + " |",
        "|---|" + "---|" * (len(labels) * len(STAGES)),
    ]
    first = res["models"][labels[0]]
    groups = ["all", ABSENT] + sorted(g for g in first if g not in ("all", ABSENT))
    groups = [g for g in groups if any(g in res["models"][m] for m in labels)]
    for g in groups:
        cells = []
        for m in labels:
            for st in STAGES:
                c = res["models"][m].get(g, {}).get(st, {"value": None, "n": 0})
                cells.append("-" if c["value"] is None else f"{c['value']:.2f} ({c['n']})")
        lines.append(f"| {g} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    raise SystemExit(main())
