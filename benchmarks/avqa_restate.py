"""Does crab-tiny copy the asked entity, or memorise each training clip's? AVQA question variants.

Every SynthAV AVQA reasoning first restates the question ("The question asks whether a trumpet is
heard."). crab-tiny v5 names one of the clip's own objects there: right when the asked class is in the
clip, wrong when it is absent (``benchmarks/results/avqa_binding.md``). With one question per
training clip, the clip alone tells which class to name, so memorising it fits the training items.
This continues a trained run's ``instruct`` phase on AVQA alone, from its final weights, in two arms
that differ only in the data:

* ``one question``: each training clip with its own question (the shipped recipe's data);
* ``+K any-type``: plus ``K`` more questions per clip, types drawn with replacement
  (``DataSpec.avqa_variant_types="any"``): one clip is asked one type about several entities;

and scores seen (``train``) and fresh (``test``) AVQA items from generated answers::

    python benchmarks/avqa_restate.py --checkpoint runs/v5/checkpoint --steps 300 --variants 6

*restated*: the answer's first sentence equals the reference's; *restated, asked class absent*: the
same on the existential questions answered "no" (the asked class is not in the clip, so only a copy
from the question gets it right). Same steps, schedule and learning rate in both arms. Writes
``benchmarks/results/avqa_restate.{md,json}``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
log = logging.getLogger("avqa_restate")

sys.path.insert(0, str(ROOT / "benchmarks"))

from _report import header, write_report  # noqa: E402
from avqa_binding import binding_row  # noqa: E402

ROWS = (
    ("accuracy", "accuracy"),
    ("restated", "restated the question right"),
    ("restated_absent", "restated right, asked class absent (existential, answer no)"),
    ("restated_present", "restated right, other questions"),
)


def absent_class(gt: dict) -> bool:
    """Whether an AVQA item asks about a class the clip lacks (existential, answer ``no``)."""
    return gt.get("question_type", "").endswith("Existential") and gt.get("answer") == "no"


def summarise(rows: list[tuple[dict, dict]]) -> dict:
    """``{key: share}`` of :data:`ROWS` plus their ``n``; ``rows`` = ``(gt, binding_row)``."""

    def share(sel: list[dict], key: str) -> dict:
        return {"value": round(sum(r[key] for r in sel) / len(sel), 3) if sel else None, "n": len(sel)}

    every = [b for _, b in rows]
    return {
        "accuracy": share(every, "correct"),
        "restated": share(every, "restated"),
        "restated_absent": share([b for g, b in rows if absent_class(g)], "restated"),
        "restated_present": share([b for g, b in rows if not absent_class(g)], "restated"),
    }


def score(model, tok, items) -> dict:
    from crab_core.training.evaluate import generate_items

    outs = generate_items(model, tok, items)
    rows = [(it.raw.gt, binding_row(o[0], it.raw.output, it.raw.gt["answer"])) for it, o in zip(items, outs)]
    return summarise(rows)


def arm_recipe(
    base,
    steps: int,
    lr: float,
    variants: int,
    mix: bool = False,
    weighting: str = "token",
    extra: tuple[str, ...] = (),
):
    """The shipped recipe reduced to its ``instruct`` phase, on AVQA alone (or, with ``mix``, on the
    phase's own task mixture), with ``variants`` any-type questions, LM loss ``weighting`` and the
    components ``extra`` trained besides the phase's own."""
    inst = next(p for p in base.phases if p.name == "instruct")
    tasks = dict(inst.tasks) if mix else {"avqa": 1.0}
    trainable = tuple(inst.trainable) + tuple(c for c in extra if c not in inst.trainable)
    phase = dataclasses.replace(
        inst, steps=steps, lr=lr, tasks=tasks, lm_weighting=weighting, trainable=trainable
    )
    data = dataclasses.replace(base.data, avqa_questions=variants, avqa_variant_types="any")
    return base.replace(name=f"{base.name}-avqa-restate", phases=(phase,), data=data)


def main(argv: list[str] | None = None) -> int:
    from safetensors.torch import load_file

    from crab_core.training.cli import test_items
    from crab_core.training.recipe import get_recipe
    from crab_core.training.trainer import Trainer, default_accelerator

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", default="runs/v5/checkpoint")
    p.add_argument("--cache", default="runs/v5/cache", help="the run's rendered-data cache")
    p.add_argument("--work", default="runs/avqa-restate")
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--variants", type=int, default=6)
    p.add_argument(
        "--arms",
        default="",
        help="variants:weighting per arm, comma-separated (default: 0:token,VARIANTS:token)",
    )
    p.add_argument("--mix", action="store_true", help="train on the instruct phase's task mixture")
    p.add_argument(
        "--extra-trainable",
        default="",
        help="components trained besides the instruct phase's own, comma-separated (e.g. llm_base)",
    )
    p.add_argument("--name", default="avqa_restate", help="results file stem")
    p.add_argument("--per-task", type=int, default=100)
    p.add_argument("--seed", type=int, default=501, help="user seed of the fresh test items")
    p.add_argument("--out", default="benchmarks/results")
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    torch.set_num_threads(args.threads)
    base = get_recipe("crab-tiny")
    state = load_file(Path(args.checkpoint) / "model.safetensors")
    state = {k: v for k, v in state.items() if not k.startswith("tower_heads.seg_probe.")}
    res: dict = {"args": vars(args), "arms": {}}
    items = None
    specs = [a.split(":") for a in (args.arms or f"0:token,{args.variants}:token").split(",")]
    for v, weighting in specs:
        variants = int(v)
        arm = "one question" if variants == 0 else f"+{variants} any-type"
        arm += ", per-answer loss" if weighting == "answer" else ""
        extra = tuple(c for c in args.extra_trainable.split(",") if c)
        recipe = arm_recipe(base, args.steps, args.lr, variants, args.mix, weighting, extra)
        t = Trainer(
            recipe,
            Path(args.work) / f"{variants}-{weighting}",
            accelerator=default_accelerator(cpu=True),
            progress=False,
        )
        t.cache_dir = Path(args.cache)
        t.setup()
        missing, unexpected = t.module.load_state_dict(state, strict=False)
        if missing or unexpected:
            p.error(
                f"checkpoint does not fit the recipe: {len(missing)} missing, {len(unexpected)} unexpected"
            )
        if items is None:
            size = recipe.model.vision.image_size
            items = {
                "train": test_items(t.tokenizer, size, "train", args.per_task, 0, tasks=["avqa"], workers=1),
                "test": test_items(
                    t.tokenizer, size, "test", args.per_task, args.seed, tasks=["avqa"], workers=1
                ),
            }
            res["arms"]["start"] = {s: score(t.model, t.tokenizer, its) for s, its in items.items()}
            log.info("start: %s", json.dumps(res["arms"]["start"]))
        t0 = time.perf_counter()
        t.train()
        row: dict = {"train_s": round(time.perf_counter() - t0, 1), "avqa_items": len(t.by_task["avqa"])}
        row.update({s: score(t.model, t.tokenizer, its) for s, its in items.items()})
        res["arms"][arm] = row
        log.info("%s: %s", arm, json.dumps(row))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{args.name}.json").write_text(json.dumps(res, indent=1))
    return write_report(out, f"{args.name}.md", markdown(res))


def markdown(res: dict) -> str:
    a = res["args"]
    arms = list(res["arms"])
    cmd = (
        f"python benchmarks/avqa_restate.py --checkpoint {a['checkpoint']} --steps {a['steps']} "
        f"--variants {a['variants']}"
    )
    for flag, key, default in (
        ("--arms", "arms", ""),
        ("--extra-trainable", "extra_trainable", ""),
        ("--name", "name", "avqa_restate"),
    ):
        if a.get(key, default) != default:
            cmd += f" {flag} {a[key]}"
    cmd += " --mix" if a.get("mix") else ""
    on = "the `instruct` task mixture" if a.get("mix") else "AVQA alone"
    extra = f", and also {a['extra_trainable']}" if a.get("extra_trainable") else ""
    lines = [
        "# AVQA: copying the asked entity, with and without question variants",
        "",
        header(cmd, a["threads"]),
        "",
        f"From that run's final weights, {a['steps']} more `instruct` steps on {on} per arm (I-LoRA, "
        f"projectors and probes{extra}; same schedule, lr {a['lr']}); `start` is the checkpoint itself. "
        f"Generated answers of {a['per_task']} AVQA items per split; seen: `train` clips with their own "
        f"question (user seed 0), fresh: `test` items (seed {a['seed']}). n per cell in brackets.",
        "",
        "| reading | " + " | ".join(f"{arm} seen | {arm} fresh" for arm in arms) + " |",
        "|---|" + "---|---|" * len(arms),
    ]
    for key, label in ROWS:
        cells = []
        for arm in arms:
            for split in ("train", "test"):
                c = res["arms"][arm][split][key]
                cells.append("-" if c["value"] is None else f"{c['value']:.3f} (n={c['n']})")
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    sizes = {arm: r["avqa_items"] for arm, r in res["arms"].items() if "avqa_items" in r}
    lines += ["", "AVQA training items per arm: " + json.dumps(sizes)]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    raise SystemExit(main())
