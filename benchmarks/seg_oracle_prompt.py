"""Can crab-tiny's mask decoder learn to select the target when its prompt *names* the class?

``seg_selection.py`` shows that the shipped decoder ignores its prompt (the six seg-token LLM
states). Is that because the prompt carries the class only weakly, or because the decoder does not
learn prompt-conditioned selection within the seg stage at all? Two arms retrain the seg stage
(seg module re-initialised, the recipe's ``seg`` phase, ``--steps`` steps) from the shipped weights:

* ``plain``: as the recipe does;
* ``oracle``: a learned linear embedding of the target's classes (the multi-hot ``seg_classes``
  label: the classes painted inside the target mask) is added to every seg-token state before the
  decoder, in training and in scoring: a prompt that names the class exactly.

Both are scored teacher-forced on held-out S4 / MS3 items of the SynthAV ``test`` split (user seed 0,
never used in training): mean per-frame IoU on frames with a non-empty target. If the oracle arm
does not beat the plain one, the limit is the decoder's learning, not the prompt's content.
About 14 minutes on 2 CPU cores::

    python benchmarks/seg_oracle_prompt.py --steps 1200 --out benchmarks/results
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from benchmarks._report import header, write_report  # noqa: E402

log = logging.getLogger("seg_oracle_prompt")
NUM_CLASSES = 10


def target_classes(items) -> torch.Tensor:
    """``(S, NUM_CLASSES)`` multi-hot ``seg_classes`` of the seg items of a micro-batch, in batch order."""
    from crab_core.training.recipe import SEG_TASKS

    rows = [torch.from_numpy(it.raw.labels["seg_classes"]).float() for it in items if it.task in SEG_TASKS]
    return torch.stack(rows) if rows else torch.zeros(0, NUM_CLASSES)


def add_oracle(trainer, current: dict) -> None:
    """Give the seg module a learned class embedding added to the seg-token states (``current["cls"]``)."""
    seg = trainer.model.seg_module
    seg.oracle = nn.Linear(NUM_CLASSES, trainer.model.config.llm.hidden_size)  # trained with the seg module
    plain = seg.forward

    def forward(seg_embeddings, features, task_names, gt_mask=None):
        shift = seg.oracle(current["cls"].to(seg_embeddings)).unsqueeze(1)  # (S, 1, d_model)
        return plain(seg_embeddings + shift, features, task_names, gt_mask)

    seg.forward = forward


def score(trainer, items, current: dict) -> dict:
    """Teacher-forced per-frame IoU on S4 / MS3 items with a non-empty target."""
    from crab_core.training.collate import collate

    trainer.module.eval()
    out: dict = {}
    with torch.no_grad():
        for task in ("s4", "ms3"):
            ious = []
            sub = [it for it in items if it.task == task and np.asarray(it.raw.mask).any()]
            for s in range(0, len(sub), 8):
                batch = collate(sub[s : s + 8], None)
                current["cls"] = target_classes(batch.items)
                res = trainer.model(
                    trainer.module.samples(batch, trainer.module.encode(batch)), compute_masks=True
                )
                for it, logits in zip(batch.items, res.pred_masks, strict=True):
                    gt, pred = torch.from_numpy(np.asarray(it.raw.mask)).bool(), logits[0] > 0
                    ious.append(float((gt & pred).sum() / (gt | pred).sum()))
            out[task] = {"n": len(ious), "iou": float(np.mean(ious))}
    return out


def run_arm(arm: str, steps: int, work: Path, cache: Path, held) -> dict:
    from crab_core.checkpoint.io import read_state_dict
    from crab_core.model.builder import build_model
    from crab_core.pipeline import TINY_DIR
    from crab_core.training.data import tokenize_item
    from crab_core.training.recipe import ALL_TASKS, Phase, crab_tiny_recipe
    from crab_core.training.trainer import Trainer

    recipe = crab_tiny_recipe()
    seg = {p.name: p for p in recipe.phases}["seg"]
    # the 0-step phase on every task keeps the render cache key of the recipe (shared with seg_selection.py)
    phases = (
        Phase("data", 0, ("seg_module",), {t: 1.0 for t in ALL_TASKS}),
        dataclasses.replace(seg, steps=steps),
    )
    trainer = Trainer(recipe.replace(phases=phases), work / arm, cache_dir=cache, progress=False)
    trainer.setup()
    res = trainer.model.load_state_dict(
        read_state_dict(TINY_DIR / "model.safetensors", float32=True), strict=False
    )
    if [k for k in res.missing_keys if "rotary" not in k] or res.unexpected_keys:
        raise RuntimeError("shipped weights do not fit the recipe's model")
    trainer.model.seg_module.load_state_dict(
        build_model(recipe.model, seed=recipe.seed).seg_module.state_dict()
    )
    current: dict = {"cls": torch.zeros(0, NUM_CLASSES)}
    if arm == "oracle":
        add_oracle(trainer, current)
    module_forward = trainer.module.forward

    def forward(batch):
        current["cls"] = target_classes(batch.items)
        return module_forward(batch)

    trainer.module.forward = forward
    t0 = time.perf_counter()
    trainer.train()
    minutes = round((time.perf_counter() - t0) / 60, 1)
    logged = [json.loads(line) for line in (work / arm / "metrics.jsonl").read_text().splitlines()]
    final = [r["mask_loss"] for r in logged if "mask_loss" in r][-10:]  # logged every 10 steps
    result = {
        "minutes": minutes,
        **score(trainer, [tokenize_item(x, trainer.tokenizer) for x in held], current),
    }
    result["final_mask_loss"] = float(np.mean(final)) if final else None
    log.info("%s: %s", arm, result)
    return result


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=1200)
    p.add_argument("--held-out", type=int, default=60, help="S4 and MS3 test items each")
    p.add_argument("--work", default="runs/seg-oracle")
    p.add_argument("--cache", default=None, help="render cache folder (default WORK/cache)")
    p.add_argument("--out", default="benchmarks/results")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    torch.set_num_threads(2)
    from crab_core.training.data import cached_synth, synth_seeds

    work = Path(args.work)
    cache = Path(args.cache) if args.cache else work / "cache"
    held = cached_synth(None, synth_seeds("test", ["s4", "ms3"], args.held_out, 0), 112, 2, with_labels=True)
    results = {arm: run_arm(arm, args.steps, work, cache, held) for arm in ("plain", "oracle")}
    cmd = f"python benchmarks/seg_oracle_prompt.py --steps {args.steps}"
    md = [
        "# crab-tiny: does a prompt that names the class teach the mask decoder to select?",
        "",
        header(cmd, torch.get_num_threads()),
        "",
        f"Seg stage retrained from the shipped weights for {args.steps} steps per arm; held-out S4 / MS3 "
        f"items of the `test` split (user seed 0), teacher-forced, frames with a non-empty target.",
        "",
        "| | plain | oracle class prompt |",
        "|---|---|---|",
    ]
    for task in ("s4", "ms3"):
        md.append(
            f"| {task.upper()} per-frame IoU (n={results['plain'][task]['n']}) | "
            f"{results['plain'][task]['iou']:.3f} | {results['oracle'][task]['iou']:.3f} |"
        )
    md.append(
        f"| mask loss, mean of the last 100 steps | {results['plain']['final_mask_loss']:.3f} | "
        f"{results['oracle']['final_mask_loss']:.3f} |"
    )
    md.append(f"| training minutes | {results['plain']['minutes']} | {results['oracle']['minutes']} |")
    Path(args.out).mkdir(parents=True, exist_ok=True)
    (Path(args.out) / "seg_oracle_prompt.json").write_text(json.dumps(results, indent=1))
    return write_report(args.out, "seg_oracle_prompt.md", "\n".join(md) + "\n")


if __name__ == "__main__":
    raise SystemExit(main())
