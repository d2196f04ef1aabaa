"""Can crab-tiny's trained LLM learn the ``checked`` AVQA flags when they are its only target?

``avqa_flag_probe.py`` finds no trace of "is this listed class the asked one?" in v11's states,
though a fresh LLM of the same geometry learns that comparison from text with an LM loss over every
token (``llm_membership_sep_all.md``). This continues a trained model on Audio / Visual existential
items in the ``checked`` layout (user seed 0, the recipe's `train` split) per arm, from the same
weights, AdamW at a constant ``--lr``, batch 8:

- ``lm / lora``: the recipe's LM loss over every answer token, I-LoRA trains (as in ``instruct``);
- ``flags / lora``: the loss on the flag tokens only, I-LoRA trains;
- ``flags / llm``: the loss on the flag tokens only, the whole LLM trains (base, embeddings, head,
  I-LoRA);
- ``lm+flags / lora``: the LM loss plus the mean loss of the flag tokens as a second term (the flags
  weighted up inside the recipe's loss), I-LoRA trains.

Each arm's teacher-forced flag accuracy (the pick between the flag tokens ``y`` and ``no``, as in
``avqa_flag_probe.py``) on fresh `test` items every ``--every`` steps::

    python benchmarks/avqa_flag_train.py --model runs/v11/model --steps 600

Writes ``benchmarks/results/avqa_flag_train.{md,json}``.
"""

from __future__ import annotations

import argparse
import json
import logging
import random
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
log = logging.getLogger("avqa_flag_train")

from _report import header, write_results  # noqa: E402
from avqa_flag_probe import TYPES, read_flags, teacher_forced  # noqa: E402

ARMS = ("lm/lora", "flags/lora", "flags/llm", "lm+flags/lora")


def items_for(per_type: int, seed: int, split: str, model, tok) -> list:
    """Tokenised Audio / Visual existential items of ``split`` in the ``checked`` layout."""
    from avqa_decision_probe import existential_seeds

    from crab_core.training.data import render_synth, tokenize_item
    from crab_core.training.layouts import apply_layouts

    raws = render_synth(existential_seeds(per_type, seed, split), model.config.vision.image_size, 1)
    raws = [r for r in apply_layouts(raws, avqa="checked") if r.gt["question_type"] in TYPES]
    return [tokenize_item(r, tok) for r in raws]


def arm_loss(model, mod, tok, chunk, objective: str) -> torch.Tensor:
    """The LM loss over every answer token (``lm``), over the flag tokens only (``flags``), or both
    terms added (``lm+flags``)."""
    spliced, out = teacher_forced(model, mod, chunk)
    logits = out.logits
    lm = F.cross_entropy(logits[:, :-1].flatten(0, 1), spliced.labels[:, 1:].flatten(), ignore_index=-100)
    if objective == "lm":
        return lm
    from crab_core.training.flags import FlagTokens, flag_loss

    flags = flag_loss(logits, spliced.labels, FlagTokens.from_tokenizer(tok))  # the recipe's own term
    if flags is None:  # no flag in this batch (every list empty): nothing to learn from it
        flags = logits.sum() * 0.0
    return flags + lm if objective == "lm+flags" else flags


def flag_accuracy(model, tok, items) -> dict:
    f = read_flags(model, tok, items)
    yes = f["y"] == 1
    return {
        "all": round(float((f["pick"] == f["y"]).float().mean()), 3),
        "yes": round(float(f["pick"][yes].float().mean()), 3),
        "no": round(float(1 - f["pick"][~yes].float().mean()), 3),
        "flags": len(f["y"]),
    }


def run_arm(folder: str, arm: str, train, test, args) -> dict:
    from crab_core.checkpoint.pretrained import load_pretrained
    from crab_core.training.module import CrabTrainModule

    objective, trains = arm.split("/")
    model, tok, _ = load_pretrained(folder)
    for name, prm in model.named_parameters():
        in_llm = name.startswith("llm.")
        prm.requires_grad_(in_llm and (trains == "llm" or "lora" in name))
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=args.lr, weight_decay=0.0)
    mod = CrabTrainModule(model)
    rng = random.Random(0)
    curve = {0: flag_accuracy(model, tok, test)}
    t0 = time.perf_counter()
    for step in range(1, args.steps + 1):
        model.train()
        loss = arm_loss(model, mod, tok, rng.sample(train, 8), objective)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        if step % args.every == 0:
            model.eval()
            curve[step] = flag_accuracy(model, tok, test)
            log.info("%s step %d loss %.4f %s", arm, step, float(loss), curve[step])
    return {
        "curve": curve,
        "trainable": sum(p.numel() for p in params),
        "seconds": round(time.perf_counter() - t0, 1),
    }


def main(argv: list[str] | None = None) -> int:
    from crab_core.checkpoint.pretrained import load_pretrained

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="runs/v11/model")
    p.add_argument("--steps", type=int, default=600)
    p.add_argument("--every", type=int, default=200)
    p.add_argument("--lr", type=float, default=5e-4)
    p.add_argument("--train-per-type", type=int, default=400)
    p.add_argument("--test-per-type", type=int, default=100)
    p.add_argument("--arms", default=",".join(ARMS[:3]), help=f"comma-separated, of {ARMS}")
    p.add_argument("--name", default="avqa_flag_train", help="results file stem")
    p.add_argument("--out", default="benchmarks/results")
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    torch.set_num_threads(args.threads)
    model, tok, _ = load_pretrained(args.model)
    train = items_for(args.train_per_type, 0, "train", model, tok)
    test = items_for(args.test_per_type, 501, "test", model, tok)
    res: dict = {"args": vars(args), "train_items": len(train), "test_items": len(test), "arms": {}}
    for arm in args.arms.split(","):
        res["arms"][arm] = run_arm(args.model, arm, train, test, args)
        log.info("%s: %s", arm, json.dumps(res["arms"][arm]))
    return write_results(args.out, args.name, res, markdown(res))


def markdown(res: dict) -> str:
    a = res["args"]
    cmd = f"python benchmarks/avqa_flag_train.py --model {a['model']} --steps {a['steps']}"
    for flag, key, default in (
        ("--lr", "lr", 5e-4),
        ("--every", "every", 200),
        ("--arms", "arms", ",".join(ARMS[:3])),
        ("--name", "name", "avqa_flag_train"),
    ):
        if a.get(key, default) != default:
            cmd += f" {flag} {a[key]}"
    steps = list(next(iter(res["arms"].values()))["curve"])
    lines = [
        "# AVQA `checked` flags as the only target: can the trained LLM learn them?",
        "",
        header(cmd, a["threads"]),
        "",
        f"From `{a['model']}`'s weights, per arm: AdamW at {a['lr']:g} (constant), batch 8, on "
        f"{res['train_items']} Audio / Visual existential `train` items (user seed 0) in the `checked` "
        "layout. *lm*: the LM loss over every answer token; *flags*: the loss on the flag tokens only; "
        "*lm+flags*: both added. "
        "*lora*: I-LoRA trains; *llm*: the whole LLM trains. Teacher-forced flag accuracy (the pick "
        f"between `y` and `no`) on {res['test_items']} fresh `test` items (seed 501); in brackets: on the "
        "yes flags / on the no flags. Step 0: the model itself.",
        "",
        "| arm | trainable | " + " | ".join(f"step {s}" for s in steps) + " | seconds |",
        "|---|---|" + "---|" * len(steps) + "---|",
    ]
    for arm, r in res["arms"].items():
        cells = " | ".join(
            f"{c['all']:.3f} ({c['yes']:.3f} / {c['no']:.3f})" for c in (r["curve"][s] for s in steps)
        )
        lines.append(f"| {arm} | {r['trainable']} | {cells} | {r['seconds']} |")
    flags = next(iter(res["arms"].values()))["curve"][steps[0]]["flags"]
    return "\n".join(lines) + f"\n\nFlags scored per cell: {flags}.\n"


if __name__ == "__main__":
    raise SystemExit(main())
