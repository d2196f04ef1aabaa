"""Do the audio tokens hold what AVQA's audio comparisons ask? The run's probe vs its answers.

Two AVQA question types ask about two named sounds only: ``Audio/Comparative`` ("Is the dog louder
than the flute?") and ``Audio/Temporal`` ("Does the flute start sounding before the dog?"). The
training run's linear probe on each audio second's tokens (:mod:`crab_core.training.probes`: per class
audible and loudness) answers them on its own: louder = higher mean predicted loudness over the
class's sounding seconds; before = an earlier first second the probe hears the class in. The model's
generated answers are scored on the same fresh items::

    python benchmarks/avqa_probe.py --runs v5=runs/v5/checkpoint:crab-tiny:runs/v5/model --per-task 300

A probe far above the answers says the tokens hold the comparison and the LLM does not read it out.
Writes ``benchmarks/results/avqa_probe.{md,json}``.
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
log = logging.getLogger("avqa_probe")

from _report import header, write_report  # noqa: E402

TYPES = ("Audio/Comparative", "Audio/Temporal")


def asked_classes(question: str, classes: list[str]) -> tuple[str, str] | None:
    """The two class names of a question, in the order it names them (None when not two)."""
    found = sorted((m.start(), c) for c in classes for m in re.finditer(rf"\b{re.escape(c)}\b", question))
    return (found[0][1], found[1][1]) if len(found) == 2 else None


def probe_answer(qtype: str, a: int, b: int, audible_logit: np.ndarray, loud: np.ndarray, gt_audible) -> str:
    """``yes`` / ``no`` from the probe's per-second ``(T, C)`` audible logits and loudness; loudness is
    averaged over each class's sounding seconds (``gt_audible``, ``(T, C)`` bool)."""
    if qtype == "Audio/Comparative":
        la, lb = (float(loud[gt_audible[:, k], k].mean()) if gt_audible[:, k].any() else -1e9 for k in (a, b))
        return "yes" if la > lb else "no"
    heard = audible_logit > 0
    first = [int(np.argmax(heard[:, k])) if heard[:, k].any() else len(heard) for k in (a, b)]
    return "yes" if first[0] < first[1] else "no"


def question_of(prompt: str) -> str:
    return prompt.split("Please answer this question: ")[-1].split(" [/INST]")[0]


@torch.no_grad()
def run_rows(checkpoint: str, recipe: str, model_dir: str, per_task: int, seed: int) -> list[dict]:
    """``{"type", "probe", "answer"}`` (each right or not) of every Audio comparative / temporal item."""
    from _report import load_run

    from crab_core.synthav.world import CLASSES
    from crab_core.tasks.parsers import normalize_answer, parse_avqa
    from crab_core.tokenizer import CrabTokenizer
    from crab_core.training.collate import collate
    from crab_core.training.data import render_synth, synth_seeds, tokenize_item
    from crab_core.training.evaluate import generate_items

    module = load_run(checkpoint, recipe)
    size = module.model.config.vision.image_size
    raws = render_synth(synth_seeds("test", ["avqa"], per_task, seed), size, 1, with_labels=True)
    raws = [r for r in raws if r.gt["question_type"] in TYPES]
    tok = CrabTokenizer.from_dir(Path(model_dir) / "tokenizer", module.model.config)
    items = [tokenize_item(r, tok) for r in raws]
    answers = generate_items(module.model, tok, items)
    q_a = module.model.config.al_qformer.num_query_tokens
    rows = []
    for s in range(0, len(items), 8):
        batch = collate(items[s : s + 8])
        for k, (it, media) in enumerate(zip(batch.items, module.encode(batch), strict=True)):
            pair = asked_classes(question_of(it.raw.prompt), list(CLASSES))
            if pair is None:
                continue
            x = media.features["audio"].float()
            out = module.tower_heads.probes.audio(x.reshape(-1, q_a * x.shape[-1])).view(-1, len(CLASSES), 2)
            gt_audible = it.raw.labels["audible"][: out.shape[0]] > 0
            out = out[: len(gt_audible)].numpy()
            qtype, truth = it.raw.gt["question_type"], normalize_answer(str(it.raw.gt["answer"]))
            a, b = (CLASSES.index(c) for c in pair)
            pred = parse_avqa(answers[s + k][0]).answer
            rows.append(
                {
                    "type": qtype,
                    "probe": probe_answer(qtype, a, b, out[..., 0], out[..., 1], gt_audible) == truth,
                    "answer": pred is not None and pred == truth,
                    "truth": truth,
                }
            )
    return rows


def summarise(rows: list[dict]) -> dict:
    """``{type: {"probe", "answer", "majority", "n"}}`` accuracies (``majority``: the share of the
    commonest true answer)."""
    res = {}
    for t in TYPES:
        sel = [r for r in rows if r["type"] == t]
        acc = {k: round(sum(r[k] for r in sel) / len(sel), 3) if sel else None for k in ("probe", "answer")}
        truths = [r["truth"] for r in sel]
        acc["majority"] = round(max(truths.count(x) for x in set(truths)) / len(sel), 3) if sel else None
        res[t] = acc | {"n": len(sel)}
    return res


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument(
        "--runs",
        default="v5=runs/v5/checkpoint:crab-tiny:runs/v5/model",
        help="label=checkpoint:recipe:model folder, comma-separated",
    )
    p.add_argument(
        "--per-task", type=int, default=300, help="AVQA items rendered (about 1 in 6 of these types)"
    )
    p.add_argument("--seed", type=int, default=501, help="user seed of the fresh `test` items")
    p.add_argument("--out", default="benchmarks/results")
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    torch.set_num_threads(args.threads)
    res: dict = {"args": vars(args), "runs": {}}
    for spec in args.runs.split(","):
        label, rest = spec.split("=", 1)
        ckpt, recipe, model_dir = rest.split(":")
        torch.manual_seed(0)
        res["runs"][label] = summarise(run_rows(ckpt, recipe, model_dir, args.per_task, args.seed))
        log.info("%s: %s", label, json.dumps(res["runs"][label]))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "avqa_probe.json").write_text(json.dumps(res, indent=1))
    return write_report(out, "avqa_probe.md", markdown(res))


def markdown(res: dict) -> str:
    a = res["args"]
    cmd = f"python benchmarks/avqa_probe.py --runs {a['runs']} --per-task {a['per_task']} --seed {a['seed']}"
    lines = [
        "# AVQA audio comparisons: the audio-token probe vs the answers",
        "",
        header(cmd, a["threads"]),
        "",
        f"Fresh AVQA items (`test`, seed {a['seed']}, {a['per_task']} rendered; those of the two types "
        "below scored). *probe*: the run's linear probe on the audio tokens answers alone (louder: "
        "higher mean predicted loudness over each class's sounding seconds; before: the earlier first "
        "second it hears); *answer*: the model's generated answer; *majority*: always the commonest "
        "true answer.",
        "",
        "| run | question type | n | probe accuracy | answer accuracy | majority |",
        "|---|---|---|---|---|---|",
    ]
    for label, by_type in res["runs"].items():
        for t, c in by_type.items():
            cells = ["-" if c[k] is None else f"{c[k]:.3f}" for k in ("probe", "answer", "majority")]
            lines.append(f"| {label} | {t} | {c['n']} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    raise SystemExit(main())
