"""Can crab-tiny's LLM learn "is the asked class in the list?" Text only, from scratch, per layout and LR.

crab-tiny answers "yes" to most existential AVQA questions whose class is absent, though it lists the
clip's classes right, and its states at the decision do not hold the answer
(``avqa_capacity.md``, ``avqa_decision_probe.md``). An AVQA answer asks for a membership test whose
query word already stands earlier in the sequence: the question names the class, the answer restates
it, lists what the clip holds, then decides. This trains a fresh LLM of crab-tiny's geometry
(:func:`crab_core.presets.crab_tiny`'s ``LLMConfig``, random init, AdamW, constant LR, no media) on a
synthetic token task with the decision as its only target, in two layouts:

* ``after``: ``LIST c1 .. ck . ASK q`` -> yes / no (the asked class first appears after the list);
* ``question-first``: ``ASK q . RESTATE q . LIST c1 .. ck .`` -> yes / no (AVQA's order: ``q`` stands
  twice before the list, so "has ``q`` been seen?" is always true);
* ``restate-after``: ``question-first`` then ``ASK q`` again right before the decision (an answer
  template that names the asked class after the list);
* ``per-item``: ``question-first`` with a flag after each listed class, ``c1 f1 .. ck fk``, ``f`` =
  MATCH / OTHER (is this the asked class?), the flags supervised too (an answer template that compares
  each listed class with the asked one before concluding);
* ``per-item-sep``: ``per-item`` with a separator token between each class and its flag, ``c1 SEP f1``
  (as crab-tiny's tokenizer writes ``car (no)``: ``car``, ``(``, ``no``, ``)``);

1-3 listed classes of 10, the asked one in the list half of the time. Held-out accuracy (500 fresh
sequences) every ``--every`` steps, per layout and learning rate::

    python benchmarks/llm_membership.py --steps 1500 --lrs 2e-3,1e-3,5e-4,2e-4

Writes ``benchmarks/results/llm_membership.{md,json}``.
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
log = logging.getLogger("llm_membership")

from _report import header, write_results  # noqa: E402

CLASSES = 10
#: marker token ids (above the class ids 0..9)
ASK, RESTATE, LIST, STOP, YES, NO, PAD, MATCH, OTHER, SEP = range(20, 30)
#: ``--prefix`` distractor tokens (standing in for the media tokens before the text) are drawn from here
DISTRACTORS = range(100, 300)
LAYOUTS = ("after", "question-first", "restate-after", "per-item", "per-item-sep")


def sequence(rng: random.Random, layout: str) -> tuple[list[int], int]:
    """One ``(tokens, answer)``: 1-3 listed classes, the asked one listed half of the time."""
    listed = rng.sample(range(CLASSES), rng.randint(1, 3))
    if rng.random() < 0.5:
        q = rng.choice(listed)
    else:
        q = rng.choice([c for c in range(CLASSES) if c not in listed])
    if layout == "after":
        toks = [LIST, *listed, STOP, ASK, q]
    elif layout == "question-first":
        toks = [ASK, q, STOP, RESTATE, q, STOP, LIST, *listed, STOP]
    elif layout == "restate-after":
        toks = [ASK, q, STOP, RESTATE, q, STOP, LIST, *listed, STOP, ASK, q]
    elif layout in ("per-item", "per-item-sep"):
        sep = [SEP] if layout == "per-item-sep" else []
        flagged = [t for c in listed for t in (c, *sep, MATCH if c == q else OTHER)]
        toks = [ASK, q, STOP, RESTATE, q, STOP, LIST, *flagged, STOP]
    else:
        raise ValueError(f"unknown layout {layout!r}; known: {LAYOUTS}")
    return toks, YES if q in listed else NO


def batch(
    rng: random.Random, layout: str, n: int, prefix: int = 0
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(tokens (n, L) right-padded, answers (n,), index of each sequence's last token (n,))``; each
    sequence after ``prefix`` random distractor tokens."""
    seqs = [sequence(rng, layout) for _ in range(n)]
    seqs = [([rng.choice(DISTRACTORS) for _ in range(prefix)] + s, a) for s, a in seqs]
    width = max(len(s) for s, _ in seqs)
    x = torch.full((n, width), PAD)
    for i, (s, _) in enumerate(seqs):
        x[i, : len(s)] = torch.tensor(s)
    return x, torch.tensor([a for _, a in seqs]), torch.tensor([len(s) - 1 for s, _ in seqs])


def flag_targets(x: torch.Tensor) -> torch.Tensor:
    """``(n, L)`` next-token targets for the per-item flags (-100 elsewhere): position ``i`` predicts
    ``x[:, i + 1]`` where that is MATCH / OTHER."""
    nxt = torch.full_like(x, -100)
    nxt[:, :-1] = x[:, 1:]
    return nxt.masked_fill((nxt != MATCH) & (nxt != OTHER), -100)


def fresh_llm(seed: int):
    """A randomly initialised LLM of crab-tiny's geometry."""
    from transformers import LlamaConfig, LlamaForCausalLM

    from crab_core.presets import crab_tiny

    c = crab_tiny().llm
    torch.manual_seed(seed)
    return LlamaForCausalLM(
        LlamaConfig(
            vocab_size=c.vocab_size,
            hidden_size=c.hidden_size,
            intermediate_size=c.intermediate_size,
            num_hidden_layers=c.num_hidden_layers,
            num_attention_heads=c.num_attention_heads,
            num_key_value_heads=c.num_key_value_heads,
            max_position_embeddings=c.max_position_embeddings,
        )
    )


@torch.no_grad()
def held_out(
    model, layout: str, prefix: int = 0, n: int = 500, seed: int = 12345
) -> tuple[float, float | None]:
    """``(decision accuracy, flag accuracy)`` on ``n`` fresh sequences, one forward pass: the share
    whose yes / no logit pair picks the right answer, and for the per-item layouts the share of flags
    (MATCH / OTHER, teacher-forced) predicted right (None for the other layouts)."""
    x, y, last = batch(random.Random(seed), layout, n, prefix)
    logits = model(input_ids=x).logits
    decision = logits[torch.arange(n), last][:, [YES, NO]].argmax(-1) == (y == NO).long()
    if not layout.startswith("per-item"):
        return round(float(decision.float().mean()), 3), None
    tgt = flag_targets(x)
    keep = tgt != -100
    flags = logits[..., [MATCH, OTHER]].argmax(-1)[keep] == (tgt[keep] == OTHER).long()
    return round(float(decision.float().mean()), 3), round(float(flags.float().mean()), 3)


def lm_targets(x: torch.Tensor, prefix: int = 0) -> torch.Tensor:
    """``(n, L)`` next-token targets of every text token (-100 on padding and on the distractor
    prefix), as the recipe's LM loss supervises every answer token."""
    nxt = torch.full_like(x, -100)
    nxt[:, :-1] = x[:, 1:]
    nxt[:, : max(prefix - 1, 0)] = -100
    return nxt.masked_fill(nxt == PAD, -100)


def run(
    layout: str,
    lr: float,
    steps: int,
    every: int,
    batch_size: int = 32,
    seed: int = 0,
    prefix: int = 0,
    supervise: str = "targets",
) -> dict:
    """Train one fresh LLM on ``layout`` at ``lr``; held-out accuracy at every ``every`` steps.
    ``supervise="targets"``: the loss is the decision's (and the flags'); ``"all"``: one LM loss over
    every next token of the text, the decision and flags among them."""
    model = fresh_llm(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    rng = random.Random(seed)
    curve, flags, t0 = {}, {}, time.perf_counter()
    for step in range(1, steps + 1):
        x, y, last = batch(rng, layout, batch_size, prefix)
        logits = model(input_ids=x).logits
        if supervise == "all":
            tgt = lm_targets(x, prefix)
            tgt[torch.arange(batch_size), last] = y
            loss = F.cross_entropy(logits.flatten(0, 1), tgt.flatten(), ignore_index=-100)
        else:
            loss = F.cross_entropy(logits[torch.arange(batch_size), last], y)
        if supervise != "all" and layout.startswith("per-item"):
            loss = loss + F.cross_entropy(logits.flatten(0, 1), flag_targets(x).flatten(), ignore_index=-100)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % every == 0:
            model.eval()
            curve[step], flag = held_out(model, layout, prefix)
            if flag is not None:
                flags[step] = flag
            model.train()
    out = {"curve": curve, "seconds": round(time.perf_counter() - t0, 1)}
    return out | ({"flags": flags} if flags else {})


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=1500)
    p.add_argument("--every", type=int, default=250)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--prefix", type=int, default=0, help="random distractor tokens before each sequence")
    p.add_argument("--lrs", default="2e-3,1e-3,5e-4,2e-4")
    p.add_argument("--layouts", default=",".join(LAYOUTS))
    p.add_argument("--out", default="benchmarks/results")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--name", default="llm_membership", help="results file stem")
    p.add_argument(
        "--supervise",
        choices=("targets", "all"),
        default="targets",
        help="loss on the decision (and flags) only, or an LM loss on every next token",
    )
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    torch.set_num_threads(args.threads)
    res: dict = {"args": vars(args), "runs": []}
    for layout in args.layouts.split(","):
        for lr in (float(v) for v in args.lrs.split(",")):
            row = {
                "layout": layout,
                "lr": lr,
                **run(
                    layout,
                    lr,
                    args.steps,
                    args.every,
                    args.batch_size,
                    prefix=args.prefix,
                    supervise=args.supervise,
                ),
            }
            res["runs"].append(row)
            log.info("%s", json.dumps(row))
    return write_results(args.out, args.name, res, markdown(res))


def markdown(res: dict) -> str:
    a = res["args"]
    cmd = f"python benchmarks/llm_membership.py --steps {a['steps']} --lrs {a['lrs']}"
    if a.get("layouts", ",".join(LAYOUTS[:2])) != ",".join(LAYOUTS[:2]):
        cmd += f" --layouts {a['layouts']}"
    for flag, key, default in (
        ("--every", "every", 250),
        ("--batch-size", "batch_size", 32),
        ("--prefix", "prefix", 0),
        ("--supervise", "supervise", "targets"),
    ):
        if a.get(key, default) != default:
            cmd += f" {flag} {a[key]}"
    if a.get("name", "llm_membership") != "llm_membership":
        cmd += f" --name {a['name']}"
    steps = list(res["runs"][0]["curve"])
    prefix = f", each sequence after {a['prefix']} random distractor tokens" if a.get("prefix") else ""
    if a.get("supervise", "targets") == "all":
        prefix += "; one LM loss over every next token of the text, the decision and flags among them"
    lines = [
        "# Can crab-tiny's LLM learn a membership test? Text only, by layout and learning rate",
        "",
        header(cmd, a["threads"]),
        "",
        "A fresh LLM of crab-tiny's geometry (random init; AdamW, constant LR, "
        f"batch {a.get('batch_size', 32)}{prefix}) trained on the "
        + ("text" if a.get("supervise", "targets") == "all" else "yes / no decision alone")
        + ". *after*: the asked class first appears after the list; *question-first*: "
        "it stands twice before the list, as in an AVQA answer; *restate-after*: question-first, then the "
        "class named again right before the decision; *per-item*: question-first with a supervised "
        "MATCH / OTHER flag after each listed class. Held-out accuracy of the decision on 500 fresh "
        "sequences (chance 0.5) after each number of steps; for *per-item* the flags' accuracy "
        "(teacher-forced) in brackets.",
        "",
        "| layout | LR | " + " | ".join(f"step {s}" for s in steps) + " | seconds |",
        "|---|---|" + "---|" * len(steps) + "---|",
    ]
    for r in res["runs"]:
        flags = r.get("flags", {})
        cells = " | ".join(
            f"{r['curve'][s]:.3f}" + (f" ({flags[s]:.3f})" if s in flags else "") for s in steps
        )
        lines.append(f"| {r['layout']} | {r['lr']:g} | {cells} | {r['seconds']} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    raise SystemExit(main())
