"""Does the AVVP answer layout limit the audio events? ``ranges`` vs ``seconds``, same start.

crab-tiny v5's audio tokens hold an audio second's classes (linear probe F1 0.96) while its audio
tags reach segment F1 0.61 on fresh items and 0.68 on its own training items (``signal_paths.md``,
``llm_side.md``); its answers copy one run to every class. This continues a trained run's final
weights on AVVP alone for ``--steps`` instruct steps (I-LoRA, projectors and the LLM base train) in
two arms that differ only in the layout of the audio targets (:mod:`crab_core.training.layouts`):

* ``ranges``: the reference layout the run was trained on (the control: the same extra steps);
* ``seconds``: one tag per audible second, in time order, after the list of audible classes.

and scores AVVP on seen (``train``, user seed 0) and fresh (``test``) items::

    python benchmarks/avvp_layout.py --checkpoint runs/v5/checkpoint --steps 400

Same data order, learning rate and schedule in both arms. Writes
``benchmarks/results/avvp_layout.{md,json}``.
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
log = logging.getLogger("avvp_layout")

ARMS = ("ranges", "seconds")
KEYS = ("segment_audio", "segment_visual", "event_audio", "event_visual")


def arm_recipe(base, steps: int, lr: float, layout: str):
    """The recipe reduced to an AVVP-only instruct phase, ``steps`` long, the LLM base training too."""
    inst = next(p for p in base.phases if p.name == "instruct")
    phase = dataclasses.replace(
        inst, steps=steps, lr=lr, tasks={"avvp": 1.0}, trainable=tuple(inst.trainable) + ("llm_base",)
    )
    data = dataclasses.replace(base.data, avvp_layout=layout)
    return base.replace(name=f"{base.name}-avvp-{layout}", data=data, phases=(phase,))


def score(model, tok, items) -> dict:
    from crab_core.training.evaluate import evaluate_items

    metrics = evaluate_items(model, tok, items, max_new_tokens=320)["tasks"]["avvp"]["metrics"]
    return {k: metrics.get(k) for k in KEYS}


def main(argv: list[str] | None = None) -> int:
    from safetensors.torch import load_file

    from crab_core.training.cli import test_items
    from crab_core.training.recipe import get_recipe
    from crab_core.training.trainer import Trainer, default_accelerator

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", default="runs/v5/checkpoint")
    p.add_argument("--cache", default="runs/v5/cache", help="the run's rendered-data cache")
    p.add_argument("--work", default="runs/avvp-layout")
    p.add_argument("--steps", type=int, default=400)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--per-task", type=int, default=40)
    p.add_argument("--seed", type=int, default=811, help="user seed of the fresh test items")
    p.add_argument("--out", default="benchmarks/results")
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    torch.set_num_threads(args.threads)
    base = get_recipe("crab-tiny")
    state = load_file(Path(args.checkpoint) / "model.safetensors")
    state = {k: v for k, v in state.items() if not k.startswith("tower_heads.seg_probe.")}
    res: dict = {"args": vars(args), "arms": {}}
    items, features = None, None
    for layout in ARMS:
        recipe = arm_recipe(base, args.steps, args.lr, layout)
        t = Trainer(
            recipe, Path(args.work) / layout, accelerator=default_accelerator(cpu=True), progress=False
        )
        t.cache_dir = Path(args.cache)
        t.setup()
        missing, unexpected = t.module.load_state_dict(state, strict=False)
        if missing or unexpected:
            p.error(f"checkpoint does not fit: {len(missing)} missing, {len(unexpected)} unexpected")
        if items is None:
            size = recipe.model.vision.image_size
            items = {
                "train": test_items(t.tokenizer, size, "train", args.per_task, 0, tasks=["avvp"]),
                "test": test_items(t.tokenizer, size, "test", args.per_task, args.seed, tasks=["avvp"]),
            }
            res["arms"]["start"] = {s: score(t.model, t.tokenizer, its) for s, its in items.items()}
            log.info("start: %s", json.dumps(res["arms"]["start"]))
        t.features = features  # the towers are frozen and equal in both arms: compute their features once
        t0 = time.perf_counter()
        t.train()
        features = t.features
        row: dict = {"train_s": round(time.perf_counter() - t0, 1)}
        row.update({s: score(t.model, t.tokenizer, its) for s, its in items.items()})
        row["final_loss"] = sum(h["loss"] for h in t.history[-20:]) / len(t.history[-20:])
        row["example"] = next(it for it in t.items if it.task == "avvp").raw.output
        res["arms"][layout] = row
        log.info("%s: %s", layout, json.dumps(row))
    out = Path(args.out)
    (out / "avvp_layout.json").write_text(json.dumps(res, indent=1))
    md = markdown(res)
    (out / "avvp_layout.md").write_text(md)
    sys.stdout.write(md)
    return 0


def markdown(res: dict) -> str:
    a = res["args"]
    arms = list(res["arms"])
    lines = [
        "# Does the AVVP answer layout limit the audio events? ranges vs seconds",
        "",
        f"`python benchmarks/avvp_layout.py --checkpoint {a['checkpoint']} --steps {a['steps']} "
        f"--lr {a['lr']}`: "
        f"from that run's final weights, {a['steps']} more AVVP-only instruct steps per arm (I-LoRA, "
        "projectors and LLM base; same data order and schedule); `start` is the checkpoint itself "
        f"(trained on `ranges`). n = {a['per_task']} AVVP items per split; seen: `train` items (user "
        f"seed 0), fresh: `test` items (seed {a['seed']}).",
        "",
        "| metric | " + " | ".join(f"{arm} seen | {arm} fresh" for arm in arms) + " |",
        "|---|" + "---|---|" * len(arms),
    ]
    for k in KEYS:
        cells = [res["arms"][arm][s].get(k) for arm in arms for s in ("train", "test")]
        if all(c is None for c in cells):
            continue
        cells = ["-" if c is None else f"{c:.3f}" for c in cells]
        lines.append(f"| avvp/{k} | " + " | ".join(cells) + " |")
    losses = {arm: round(r["final_loss"], 4) for arm, r in res["arms"].items() if "final_loss" in r}
    lines += ["", "Final training loss (mean of the last 20 steps): " + json.dumps(losses)]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    raise SystemExit(main())
