"""Where does a ``checked`` AVQA flag go wrong: in the comparison, or in writing the flag token?

In the ``checked`` layout (:mod:`crab_core.training.layouts`) an Audio / Visual existential answer
flags each listed class against the asked one: "The sounds are car (no), drum (yes) and piano
(no)." crab-tiny v10 and v11 write ``(no)`` after nearly every class (``avqa_types_v10.md``,
``avqa_types_v11.md``). This teacher-forces the reference answers of fresh items and reads, at every
flag (the state after ``(`` that writes the flag's first token):

- *model*: does the model's next-token choice between the two flag tokens pick the right one?
- *probe, layer k*: does a logistic-regression probe on the hidden state of layer k (0 = the input
  embeddings) read whether the class is the asked one? Folds split items, not flags.

A probe near 1 with the model near its prior says the comparison is computed and the flag token is
where it dies (the tokenizer writes ``(no)`` as ``(``, ``no``, ``)`` and ``(yes)`` as ``(``, ``y``,
``es``, ``)``: a rare first piece); probes near the baseline at every layer say the comparison is
never made::

    python benchmarks/avqa_flag_probe.py --models v11=runs/v11/model --per-type 150

Writes ``benchmarks/results/avqa_flag_probe.{md,json}`` (``--name`` for another stem).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
log = logging.getLogger("avqa_flag_probe")

from _report import header, write_results  # noqa: E402
from avqa_decision_probe import _fit  # noqa: E402

TYPES = ("Audio/Existential", "Visual/Existential")


def flag_positions(tokens: list[str]) -> list[tuple[int, bool]]:
    """``(k, is_yes)`` for every flag of an answer's token pieces: ``tokens[k]`` is the ``(`` whose
    next piece starts the flag (``y`` of ``(yes)``, ``no`` of ``(no)``)."""
    out = []
    for k in range(len(tokens) - 2):
        if tokens[k].lstrip("\u2581") == "(" and tokens[k + 2].startswith((")", "es")):
            if tokens[k + 1] in ("y", "no"):
                out.append((k, tokens[k + 1] == "y"))
    return out


def grouped_probe(x: torch.Tensor, y: torch.Tensor, groups: torch.Tensor, folds: int = 5) -> float:
    """Held-out accuracy of a logistic-regression probe ``x (N, D) -> y (N,)``; the folds split
    ``groups`` (N,) so that no item has flags on both sides."""
    ids = groups.unique()
    order = ids[torch.randperm(len(ids), generator=torch.Generator().manual_seed(0))]
    right = 0
    for f in range(folds):
        test = torch.isin(groups, order[f::folds])
        mu, sd = x[~test].mean(0), x[~test].std(0) + 1e-6
        xs = (x - mu) / sd
        w, b = _fit(xs[~test], y[~test], 300, 1e-3)
        right += int(((xs[test] @ w + b > 0).long() == y[test]).sum())
    return round(right / len(y), 3)


def teacher_forced(model, mod, chunk, hidden: bool = False):
    """``(spliced batch, LLM output)`` of ``chunk`` (tokenised items) teacher-forced with their answers;
    the media encoded without gradients, the LLM with them unless the caller disables them."""
    from crab_core.training.collate import collate

    batch = collate(chunk)
    with torch.no_grad():
        media = mod.encode(batch)
    spliced = model.prepare(mod.samples(batch, media))
    out = model.llm(
        inputs_embeds=spliced.inputs_embeds,
        attention_mask=spliced.attention_mask,
        position_ids=spliced.position_ids,
        output_hidden_states=hidden,
        use_cache=False,
    )
    return spliced, out


@torch.no_grad()
def read_flags(model, tok, items, batch_size: int = 8) -> dict:
    """Per flag of the teacher-forced reference answers: hidden states ``(F, layers + 1, D)``, the
    target (class is the asked one), the model's pick between the two flag tokens, the item index."""
    from crab_core.training.module import CrabTrainModule

    mod = CrabTrainModule(model)
    model.eval()
    yes_id, no_id = tok.hf.convert_tokens_to_ids("y"), tok.hf.convert_tokens_to_ids("no")
    hs, target, pick, item = [], [], [], []
    for s in range(0, len(items), batch_size):
        chunk = items[s : s + batch_size]
        spliced, out = teacher_forced(model, mod, chunk, hidden=True)
        hidden = torch.stack(out.hidden_states, 1)  # (B, layers + 1, L, D)
        for r, it in enumerate(chunk):
            pieces = tok.hf.convert_ids_to_tokens(it.answer_ids.tolist())
            pos = (spliced.labels[r] != -100).nonzero().flatten()  # answer token k's input position
            for k, is_yes in flag_positions(pieces):
                at = pos[k]  # labels align with the inputs: the state at "(" writes the flag
                hs.append(hidden[r, :, at].float())
                logits = out.logits[r, at]
                target.append(is_yes)
                pick.append(bool(logits[yes_id] > logits[no_id]))
                item.append(s + r)
    return {
        "x": torch.stack(hs),
        "y": torch.tensor(target).long(),
        "pick": torch.tensor(pick).long(),
        "item": torch.tensor(item),
    }


def main(argv: list[str] | None = None) -> int:
    from avqa_decision_probe import existential_seeds

    from crab_core.checkpoint.pretrained import load_pretrained
    from crab_core.training.data import render_synth, tokenize_item
    from crab_core.training.layouts import apply_layouts

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", default="v11=runs/v11/model", help="label=model folder, comma-separated")
    p.add_argument("--per-type", type=int, default=150)
    p.add_argument("--seed", type=int, default=501, help="user seed of the fresh `test` items")
    p.add_argument("--folds", type=int, default=5)
    p.add_argument("--name", default="avqa_flag_probe", help="results file stem")
    p.add_argument("--out", default="benchmarks/results")
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    torch.set_num_threads(args.threads)
    res: dict = {"args": vars(args), "models": {}}
    raws = None
    for spec in args.models.split(","):
        label, folder = spec.split("=", 1)
        model, tok, _ = load_pretrained(folder)
        if raws is None:
            seeds = existential_seeds(args.per_type, args.seed)
            raws = render_synth(seeds, model.config.vision.image_size, 1, with_labels=False)
            raws = [r for r in apply_layouts(raws, avqa="checked") if r.gt["question_type"] in TYPES]
        items = [tokenize_item(r, tok) for r in raws]
        f = read_flags(model, tok, items)
        if not len(f["y"]):
            raise SystemExit(f"{label}: no flags found in the checked answers")
        share = float(f["y"].float().mean())
        yes = f["y"] == 1
        row = {
            "items": len(items),
            "flags": len(f["y"]),
            "majority": round(max(share, 1 - share), 3),
            "model": round(float((f["pick"] == f["y"]).float().mean()), 3),
            "model_on_yes": round(float(f["pick"][yes].float().mean()), 3) if yes.any() else None,
            "model_on_no": round(float(1 - f["pick"][~yes].float().mean()), 3) if (~yes).any() else None,
            "probe": [
                grouped_probe(f["x"][:, k], f["y"], f["item"], args.folds) for k in range(f["x"].shape[1])
            ],
        }
        res["models"][label] = row
        log.info("%s: %s", label, json.dumps(row))
    return write_results(args.out, args.name, res, markdown(res))


def markdown(res: dict) -> str:
    a = res["args"]
    cmd = f"python benchmarks/avqa_flag_probe.py --models {a['models']} --per-type {a['per_type']}"
    cmd += f" --name {a['name']}" if a.get("name", "avqa_flag_probe") != "avqa_flag_probe" else ""
    layers = len(next(iter(res["models"].values()))["probe"])
    lines = [
        "# AVQA `checked` flags: is the comparison in the LLM's states?",
        "",
        header(cmd, a["threads"]),
        "",
        f"Fresh Audio / Visual existential items (`test`, seed {a['seed']}), teacher-forced with their "
        "reference answer in the `checked` layout. At each flag (the state after `(` that writes the flag): "
        "*model*, the model's pick between the flag tokens `y` (of `yes`) and `no` is right (on the flags "
        "that are yes / no); *probe, layer k*, a logistic-regression probe on layer k's hidden state "
        f"(0: the input embeddings) reads whether the class is the asked one, held-out over {a['folds']} "
        "folds of items. *majority*: the share of the commoner flag.",
        "",
        "| model | items | flags | majority | model | model, yes flags | model, no flags | "
        + " | ".join(f"probe, layer {i}" for i in range(layers))
        + " |",
        "|---|---|---|---|---|---|---|" + "---|" * layers,
    ]
    for label, r in res["models"].items():
        probes = " | ".join(f"{v:.3f}" for v in r["probe"])
        lines.append(
            f"| {label} | {r['items']} | {r['flags']} | {r['majority']:.3f} | {r['model']:.3f} | "
            f"{_n(r['model_on_yes'])} | {_n(r['model_on_no'])} | {probes} |"
        )
    return "\n".join(lines) + "\n"


def _n(v: float | None) -> str:
    return "-" if v is None else f"{v:.3f}"


if __name__ == "__main__":
    raise SystemExit(main())
