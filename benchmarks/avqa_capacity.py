"""Is AVQA limited by what trains, by depth, or by neither? Long AVQA-only continuations, per question type.

crab-tiny v5's AVQA answers restate the question and list the clip's classes right far more often
than they answer right (``avqa_stages.md``, ``avqa_restate.md``). This continues a trained run's
``instruct`` phase on AVQA alone (with ``--variants`` any-type questions per clip, so the data is not
the limit: :mod:`crab_core.training.variants`) for ``--steps`` steps, in arms that differ only in what
trains:

* ``lora``: the phase's own components (I-LoRA, projectors, probes);
* ``lora+base``: the same plus the 4-layer LLM base;
* ``lora+base+K layers``: the same on an LLM deepened by ``K`` layers on top of the trained ones. The
  new layers start as the identity (their attention output and MLP down projections are zero), so
  the arm starts from exactly the trained model's function.

and scores generated answers per question type on fresh (``test``) and seen (``train``) items::

    python benchmarks/avqa_capacity.py --checkpoint runs/v5/checkpoint --steps 1200

*said yes*: the share of yes/no questions answered ``yes`` (their true answers are half yes, half no);
*absent class called present*: existential questions whose answer is ``no`` answered ``yes``.
Writes ``benchmarks/results/avqa_capacity.{md,json}``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import sys
import time
from collections import defaultdict
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
log = logging.getLogger("avqa_capacity")

from _report import header, write_results  # noqa: E402
from avqa_binding import binding_row  # noqa: E402
from avqa_restate import arm_recipe  # noqa: E402

#: arm key -> (label, extra trainable components, extra layers: None = ``--extra-layers``)
ARMS = {
    "lora": ("lora", (), 0),
    "base": ("lora+base", ("llm_base",), 0),
    "deeper": ("lora+base+{k} layers", ("llm_base",), None),
}
#: table labels of the summary readings (per-type rows read ``accuracy, <type>``)
LABELS = {
    "accuracy": "accuracy",
    "restated": "restated the question right",
    "said_yes": "yes/no questions answered yes",
    "absent_called_present": "asked class absent (existential, no) answered yes",
    "flags_right": "checked list: its (yes) flag right (Audio / Visual existential)",
    "verdict_follows_flags": "checked list: the answer follows its flags",
}
#: identity at init: the outputs of these projections of a new layer are zeroed
ZEROED = ("self_attn.o_proj", "mlp.down_proj")


def deepen(recipe, extra_layers: int):
    """``recipe`` with its LLM ``extra_layers`` layers deeper (the new ones on top)."""
    llm = recipe.model.llm
    model = recipe.model.replace(
        llm=dataclasses.replace(llm, num_hidden_layers=llm.num_hidden_layers + extra_layers)
    )
    return recipe.replace(model=model)


def load_deepened(module: torch.nn.Module, state: dict, first_new: int) -> int:
    """Load ``state`` (a shallower run's weights) into ``module`` and make the layers ``>= first_new``
    the identity (zero :data:`ZEROED` weights). Returns how many tensors were zeroed; raises when a key
    other than a new layer's is missing or unexpected."""
    missing, unexpected = module.load_state_dict(state, strict=False)

    def new_layer(key: str) -> bool:
        part = key.split(".layers.", 1)
        return len(part) == 2 and int(part[1].split(".", 1)[0]) >= first_new

    bad = [k for k in missing if not new_layer(k)] + list(unexpected)
    if bad:
        raise ValueError(f"checkpoint does not fit the deepened model: {bad[:5]}")
    zeroed = 0
    with torch.no_grad():
        for name, p in module.named_parameters():
            if new_layer(name) and any(z in name for z in ZEROED) and "lora_" not in name:
                p.zero_()
                zeroed += 1
    return zeroed


def item_row(gt: dict, prediction: str, reference: str) -> dict:
    """One scored item: its type, whether it is right and restated, and the parsed answer."""
    from crab_core.tasks.parsers import parse_avqa

    row = binding_row(prediction, reference, gt["answer"])
    flagged = "(yes)" in prediction or "(no)" in prediction
    return {
        "type": gt["question_type"],
        "answer": gt["answer"],
        "said": parse_avqa(prediction).answer,
        "flag": ("(yes)" in prediction) if flagged else None,
        **row,
    }


def summarise(rows: list[dict]) -> dict:
    """Accuracy overall and per type, the yes share of yes/no answers, absent classes called present,
    and for answers in the ``checked`` layout whether their flags are right and the answer follows them."""
    from crab_core.training.layouts import CHECKED_TYPES

    def share(sel: list[dict], pred) -> dict:
        return {"value": round(sum(bool(pred(r)) for r in sel) / len(sel), 3) if sel else None, "n": len(sel)}

    types = defaultdict(list)
    for r in rows:
        types[r["type"]].append(r)
    yes_no = [r for r in rows if r["answer"] in ("yes", "no")]
    absent = [r for r in rows if r["type"].endswith("Existential") and r["answer"] == "no"]
    # in both listed types the asked class is in the list exactly when the answer is yes
    flagged = [r for r in rows if r["type"] in CHECKED_TYPES and r.get("flag") is not None]
    out = {
        "accuracy": share(rows, lambda r: r["correct"]),
        "restated": share(rows, lambda r: r["restated"]),
        "said_yes": share(yes_no, lambda r: r["said"] == "yes"),
        "absent_called_present": share(absent, lambda r: r["said"] == "yes"),
        "flags_right": share(flagged, lambda r: r["flag"] == (r["answer"] == "yes")),
        "verdict_follows_flags": share(flagged, lambda r: r["flag"] == (r["said"] == "yes")),
    }
    out.update({f"type:{t}": share(rs, lambda r: r["correct"]) for t, rs in sorted(types.items())})
    return out


def score(model, tok, items) -> dict:
    from crab_core.training.evaluate import generate_items

    outs = generate_items(model, tok, items)
    return summarise([item_row(it.raw.gt, o[0], it.raw.output) for it, o in zip(items, outs)])


def main(argv: list[str] | None = None) -> int:
    from safetensors.torch import load_file

    from crab_core.training.cli import test_items
    from crab_core.training.recipe import get_recipe
    from crab_core.training.trainer import Trainer, default_accelerator

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", default="runs/v5/checkpoint")
    p.add_argument("--recipe", default="crab-tiny", help="the run's recipe (its data layouts carry over)")
    p.add_argument("--cache", default="runs/v5/cache", help="the run's rendered-data cache")
    p.add_argument("--work", default="runs/avqa-capacity")
    p.add_argument("--steps", type=int, default=1200)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--variants", type=int, default=6)
    p.add_argument("--extra-layers", type=int, default=2)
    p.add_argument("--arms", default=",".join(ARMS), help=f"comma-separated, of {list(ARMS)}")
    p.add_argument("--fresh", type=int, default=300, help="fresh `test` items (seed --seed)")
    p.add_argument("--seen", type=int, default=120, help="`train` items the run trained on")
    p.add_argument("--seed", type=int, default=501)
    p.add_argument("--name", default="avqa_capacity", help="results file stem")
    p.add_argument("--out", default="benchmarks/results")
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args(argv)
    arms = [a for a in args.arms.split(",") if a]
    if unknown := [a for a in arms if a not in ARMS]:
        p.error(f"unknown arms {unknown}; known: {list(ARMS)}")
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    torch.set_num_threads(args.threads)
    base = get_recipe(args.recipe)
    state = load_file(Path(args.checkpoint) / "model.safetensors")
    state = {k: v for k, v in state.items() if not k.startswith("tower_heads.seg_probe.")}
    layers = base.model.llm.num_hidden_layers
    res: dict = {"args": vars(args), "layers": layers, "arms": {}}
    items = None
    for arm in arms:
        label, extra, k = ARMS[arm]
        k = args.extra_layers if k is None else k
        recipe = arm_recipe(base, args.steps, args.lr, args.variants, extra=extra)
        recipe = deepen(recipe, k) if k else recipe
        t = Trainer(recipe, Path(args.work) / arm, accelerator=default_accelerator(cpu=True), progress=False)
        t.cache_dir = Path(args.cache)
        t.setup()
        zeroed = load_deepened(t.module, state, layers)
        if items is None:
            size = recipe.model.vision.image_size
            items = {
                "test": test_items(
                    t.tokenizer, size, "test", args.fresh, args.seed, tasks=["avqa"], workers=1
                ),
                "train": test_items(t.tokenizer, size, "train", args.seen, 0, tasks=["avqa"], workers=1),
            }
            res["arms"]["start"] = {s: score(t.model, t.tokenizer, its) for s, its in items.items()}
            log.info("start: %s", json.dumps(res["arms"]["start"]))
        t0 = time.perf_counter()
        t.train()
        row: dict = {"train_s": round(time.perf_counter() - t0, 1), "zeroed": zeroed, "layers": layers + k}
        row.update({s: score(t.model, t.tokenizer, its) for s, its in items.items()})
        res["arms"][label.format(k=k)] = row
        log.info("%s: %s", arm, json.dumps(row))
    return write_results(args.out, args.name, res, markdown(res))


def markdown(res: dict) -> str:
    a = res["args"]
    arms = list(res["arms"])
    cmd = f"python benchmarks/avqa_capacity.py --checkpoint {a['checkpoint']} --steps {a['steps']}"
    for flag, key, default in (
        ("--recipe", "recipe", "crab-tiny"),
        ("--lr", "lr", 1e-3),
        ("--arms", "arms", ",".join(ARMS)),
        ("--name", "name", "avqa_capacity"),
    ):
        if a.get(key, default) != default:
            cmd += f" {flag} {a[key]}"
    keys = list(res["arms"]["start"]["test"])
    grown = any(r.get("layers", res["layers"]) > res["layers"] for r in res["arms"].values())
    deeper = "; the deeper arm's new layers start as the identity" if grown else ""
    lines = [
        "# AVQA: what limits it? Long AVQA-only continuations, per question type",
        "",
        header(cmd, a["threads"]),
        "",
        f"From that run's final weights, {a['steps']} more `instruct` steps on AVQA alone per arm "
        f"({a['variants']} more any-type questions per training clip, lr {a['lr']}, the phase's schedule); "
        f"`start` is the checkpoint itself. The LLM has {res['layers']} layers{deeper}. "
        f"Generated answers of {a['fresh']} fresh `test` items (seed {a['seed']}) "
        f"and {a['seen']} seen `train` items (user seed 0). n per cell in brackets.",
        "",
        "| reading | " + " | ".join(f"{arm} fresh | {arm} seen" for arm in arms) + " |",
        "|---|" + "---|---|" * len(arms),
    ]
    for key in keys:
        cells = []
        for arm in arms:
            for split in ("test", "train"):
                c = res["arms"][arm][split].get(key, {"value": None, "n": 0})
                cells.append("-" if c["value"] is None else f"{c['value']:.3f} (n={c['n']})")
        label = LABELS.get(key, key.replace("type:", "accuracy, "))
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    mins = {arm: round(r["train_s"] / 60, 1) for arm, r in res["arms"].items() if "train_s" in r}
    lines += ["", "Training minutes per arm: " + json.dumps(mins)]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    raise SystemExit(main())
