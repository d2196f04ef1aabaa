"""Is the LLM side the limit? Continue the instruct phase with LoRA only vs LoRA + the LLM base.

The media tokens hold what AVVP's audio events need (``benchmarks/results/signal_paths.md``: a
linear probe reads an audio second's audible classes at F1 0.96) while the answers reach far less,
on seen items as on fresh ones: the model underfits behind its tokens. crab-tiny's instruct phase
trains I-LoRA (r = 8) and the projectors on a frozen LLM base, as Crab does. This continues a trained
run's final weights for ``--steps`` more instruct steps in two arms that differ only in what trains:

* ``lora``: the recipe's instruct components (I-LoRA, projectors, probes);
* ``lora+base``: the same plus the LLM base (its linear layers and norms);

and scores the text tasks on seen (``train``, user seed 0) and fresh (``test``) items::

    python benchmarks/llm_side.py --checkpoint runs/v5/checkpoint --steps 600

Same data order, learning rate and schedule in both arms (the instruct phase's, at ``--lr``).
Writes ``benchmarks/results/llm_side.{md,json}``.
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
log = logging.getLogger("llm_side")

ARMS = {"lora": (), "lora+base": ("llm_base",)}
TASKS = ("ave", "avvp", "avqa", "arig")
KEYS = {
    "ave": ("accuracy",),
    "avvp": ("segment_audio", "segment_visual"),
    "avqa": ("accuracy",),
    "arig": ("ciou",),
}


def arm_recipe(base, steps: int, lr: float, extra: tuple[str, ...]):
    """The recipe reduced to its instruct phase, ``steps`` long, training ``extra`` as well."""
    inst = next(p for p in base.phases if p.name == "instruct")
    phase = dataclasses.replace(inst, steps=steps, lr=lr, trainable=tuple(inst.trainable) + extra)
    return base.replace(name=f"{base.name}-llm-side", phases=(phase,))


def score(model, tok, items) -> dict:
    from crab_core.training.evaluate import evaluate_items

    summ = evaluate_items(model, tok, items)["summary"]
    return {f"{t}/{k}": summ.get(f"{t}/{k}") for t in TASKS for k in KEYS[t]}


def main(argv: list[str] | None = None) -> int:
    from safetensors.torch import load_file

    from crab_core.training.cli import test_items
    from crab_core.training.recipe import get_recipe
    from crab_core.training.trainer import Trainer, default_accelerator

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", default="runs/v5/checkpoint")
    p.add_argument("--cache", default="runs/v5/cache", help="the run's rendered-data cache")
    p.add_argument("--work", default="runs/llm-side")
    p.add_argument("--steps", type=int, default=600)
    p.add_argument("--lr", type=float, default=5e-4)
    p.add_argument("--per-task", type=int, default=40)
    p.add_argument("--seed", type=int, default=811, help="user seed of the fresh test items")
    p.add_argument("--out", default="benchmarks/results")
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    torch.set_num_threads(args.threads)
    base = get_recipe("crab-tiny")
    state = load_file(Path(args.checkpoint) / "model.safetensors")
    res: dict = {"args": vars(args), "arms": {}}
    first = None
    for arm, extra in ARMS.items():
        recipe = arm_recipe(base, args.steps, args.lr, extra)
        t = Trainer(recipe, Path(args.work) / arm, accelerator=default_accelerator(cpu=True), progress=False)
        if first is None:
            t.cache_dir = Path(args.cache)
            t.setup()
            size = recipe.model.vision.image_size
            items = {
                "train": test_items(t.tokenizer, size, "train", args.per_task, 0, tasks=list(TASKS)),
                "test": test_items(t.tokenizer, size, "test", args.per_task, args.seed, tasks=list(TASKS)),
            }
        else:  # the same data: copy what setup() built instead of loading it again
            for name in ("tokenizer", "raws", "items", "by_task", "val_items", "features"):
                setattr(t, name, getattr(first, name))
            t.module = t._new_module()
            t.out.mkdir(parents=True, exist_ok=True)
        # the seg-token probe of the seg phase is not built for an instruct-only recipe
        missing, unexpected = t.module.load_state_dict(
            {k: v for k, v in state.items() if not k.startswith("tower_heads.seg_probe.")}, strict=False
        )
        if missing or unexpected:
            p.error(
                f"checkpoint does not fit the recipe: {len(missing)} missing, {len(unexpected)} unexpected"
            )
        if first is None:
            res["arms"]["start"] = {split: score(t.model, t.tokenizer, its) for split, its in items.items()}
            log.info("start: %s", json.dumps(res["arms"]["start"]))
        t0 = time.perf_counter()
        t.train()
        row: dict = {"train_s": round(time.perf_counter() - t0, 1)}
        row.update({split: score(t.model, t.tokenizer, its) for split, its in items.items()})
        row["final_loss"] = sum(h["loss"] for h in t.history[-20:]) / len(t.history[-20:])
        res["arms"][arm] = row
        log.info("%s: %s", arm, json.dumps(row))
        first = first or t
    out = Path(args.out)
    (out / "llm_side.json").write_text(json.dumps(res, indent=1))
    md = markdown(res)
    (out / "llm_side.md").write_text(md)
    sys.stdout.write(md)
    return 0


def markdown(res: dict) -> str:
    a = res["args"]
    arms = list(res["arms"])
    lines = [
        "# Is the LLM side the limit? More instruct steps: LoRA only vs LoRA + LLM base",
        "",
        f"`python benchmarks/llm_side.py --checkpoint {a['checkpoint']} --steps {a['steps']} "
        f"--lr {a['lr']}`: "
        f"from that run's final weights, {a['steps']} more instruct steps per arm (same data order and "
        f"schedule); `start` is the checkpoint itself. n = {a['per_task']} items per task and split; "
        f"seen: `train` items (user seed 0), fresh: `test` items (seed {a['seed']}).",
        "",
        "| metric | " + " | ".join(f"{arm} seen | {arm} fresh" for arm in arms) + " |",
        "|---|" + "---|---|" * len(arms),
    ]
    for t in TASKS:
        for k in KEYS[t]:
            key = f"{t}/{k}"
            cells = []
            for arm in arms:
                cells += [f"{res['arms'][arm][s][key]:.3f}" for s in ("train", "test")]
            lines.append(f"| {key} | " + " | ".join(cells) + " |")
    losses = {arm: r.get("final_loss") for arm, r in res["arms"].items() if r.get("final_loss") is not None}
    lines += [
        "",
        "Final training loss (mean of the last 20 steps): "
        + json.dumps({k: round(v, 4) for k, v in losses.items()}),
    ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    raise SystemExit(main())
