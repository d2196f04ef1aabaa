"""Does the LLM work out whether the asked class is there? Probes on its states, layer by layer.

crab-tiny answers "yes" to most existential AVQA questions whose class is absent from the clip
(``avqa_capacity.md``), though its answers list the clip's classes right. This reads the LLM's hidden
state where the answer has just restated the question (the position of the restatement's full stop,
teacher-forced with the reference answer: the question and every media token are read by then, the
evidence is still to come) on fresh existential items (``Audio/``, ``Visual/`` and
``Audio-Visual/Existential``), and fits a logistic-regression probe per layer (0 = the input
embeddings) for the true answer: is the asked class heard / seen / seen and heard? Held-out accuracy
over ``--folds`` folds of the items, beside the majority baseline::

    python benchmarks/avqa_decision_probe.py --models v5=runs/v5/model --per-type 200

``--avqa-layout checked`` teacher-forces the references in the training layout of that name
(:mod:`crab_core.training.layouts`: each listed class flagged), for models trained on it.

A probe near 1 at some layer says the LLM computes the decision and the answer fails to use it; a
probe near the baseline at every layer says the LLM never computes it. Writes
``benchmarks/results/avqa_decision_probe.{md,json}``.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
log = logging.getLogger("avqa_decision_probe")

from _report import header, write_results  # noqa: E402

TYPES = ("Audio/Existential", "Visual/Existential", "Audio-Visual/Existential")


def existential_seeds(per_type: int, seed: int, split: str = "test") -> list[tuple[int, str]]:
    """``(seed, "avqa")`` of the first ``per_type`` samples of each type of :data:`TYPES` in ``split``
    (read from their strata, nothing rendered)."""
    from crab_core.synthav.avqa import planned
    from crab_core.synthav.generate import stratum, task_seed

    count = dict.fromkeys(TYPES, 0)
    out, k = [], 0
    while min(count.values()) < per_type:
        s = task_seed(split, "avqa", k, seed)
        qtype = planned(stratum(s))[0]
        if qtype in count and count[qtype] < per_type:
            count[qtype] += 1
            out.append((s, "avqa"))
        k += 1
    return out


def sentence_end(pieces: list[str], n: int = 1) -> int:
    """Index of the answer token that ends its ``n``-th sentence; ``pieces[k]`` = the decoded answer
    tokens ``0..k``."""
    seen = 0
    for k, text in enumerate(pieces):
        if text.rstrip().endswith(".") and (k == 0 or not pieces[k - 1].rstrip().endswith(".")):
            seen += 1
            if seen == n:
                return k
    raise ValueError(f"the answer has fewer than {n} sentences")


#: position -> the sentence whose end it is, per question type: ``restatement`` ends sentence 1; the
#: ``decision`` state writes the first word of the sentence that says whether the class is there
#: (sentence 2 of an audio-visual existential answer, sentence 3 of the others, after their list)
POSITIONS = {
    "restatement": lambda qtype: 1,
    "decision": lambda qtype: 1 if qtype.startswith("Audio-Visual") else 2,
}


@torch.no_grad()
def states(model, tok, items, batch_size: int = 8) -> dict[str, torch.Tensor]:
    """``{position: (N, layers + 1, D)}``: each item's LLM hidden states at the ends of the sentences
    of :data:`POSITIONS` (teacher-forced with its reference answer)."""
    from crab_core.training.collate import collate
    from crab_core.training.module import CrabTrainModule

    mod = CrabTrainModule(model)
    model.eval()
    rows: dict[str, list] = {p: [] for p in POSITIONS}
    for s in range(0, len(items), batch_size):
        chunk = items[s : s + batch_size]
        batch = collate(chunk)
        spliced = model.prepare(mod.samples(batch, mod.encode(batch)))
        out = model.llm(
            inputs_embeds=spliced.inputs_embeds,
            attention_mask=spliced.attention_mask,
            position_ids=spliced.position_ids,
            output_hidden_states=True,
            use_cache=False,
        )
        hidden = torch.stack(out.hidden_states, 1)  # (B, layers + 1, L, D)
        for r, it in enumerate(chunk):
            ids = it.answer_ids.tolist()
            pieces = [tok.decode(ids[: j + 1]) for j in range(len(ids))]
            answer_pos = (spliced.labels[r] != -100).nonzero().flatten()
            for name, sentence in POSITIONS.items():
                k = sentence_end(pieces, sentence(it.raw.gt["question_type"]))
                rows[name].append(hidden[r, :, answer_pos[k]].float())
    return {p: torch.stack(v) for p, v in rows.items()}


def _fit(x: torch.Tensor, y: torch.Tensor, steps: int, l2: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Weights and bias of an L2-regularised logistic regression ``x (N, D) -> y (N,)`` (L-BFGS)."""
    w = torch.zeros(x.shape[1], requires_grad=True)
    b = torch.zeros(1, requires_grad=True)
    opt = torch.optim.LBFGS([w, b], max_iter=steps, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = F.binary_cross_entropy_with_logits(x @ w + b, y.float()) + l2 * (w * w).sum()
        loss.backward()
        return loss

    opt.step(closure)
    return w.detach(), b.detach()


def probe_accuracy(
    x: torch.Tensor, y: torch.Tensor, folds: int = 5, steps: int = 300, l2: float = 1e-3
) -> float:
    """Held-out accuracy of a logistic-regression probe ``x (N, D) -> y (N,) in {0, 1}``, k-fold."""
    g = torch.Generator().manual_seed(0)
    order = torch.randperm(len(y), generator=g)
    right = 0
    for f in range(folds):
        test = order[f::folds]
        train = order[torch.isin(order, test, invert=True)]
        mu, sd = x[train].mean(0), x[train].std(0) + 1e-6
        xs = (x - mu) / sd
        w, b = _fit(xs[train], y[train], steps, l2)
        right += int(((xs[test] @ w + b > 0).long() == y[test]).sum())
    return round(right / len(y), 3)


def main(argv: list[str] | None = None) -> int:
    from crab_core.checkpoint.pretrained import load_pretrained
    from crab_core.training.data import render_synth, tokenize_item
    from crab_core.training.layouts import apply_layouts

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", default="v5=runs/v5/model", help="label=model folder, comma-separated")
    p.add_argument("--per-type", type=int, default=200)
    p.add_argument("--seed", type=int, default=501, help="user seed of the fresh `test` items")
    p.add_argument("--folds", type=int, default=5)
    p.add_argument("--avqa-layout", default="reference", help="layout of the teacher-forced references")
    p.add_argument("--name", default="avqa_decision_probe", help="results file stem")
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
            raws = apply_layouts(raws, avqa=args.avqa_layout)
        items = [tokenize_item(r, tok) for r in raws]
        xs = states(model, tok, items)
        row: dict = {}
        for qtype in (*TYPES, "all"):
            sel = [i for i, r in enumerate(raws) if qtype in ("all", r.gt["question_type"])]
            y = torch.tensor([raws[i].gt["answer"] == "yes" for i in sel]).long()
            share = float(y.float().mean())
            row[qtype] = {"n": len(sel), "majority": round(max(share, 1 - share), 3)}
            for pos, x in xs.items():
                row[qtype][pos] = [probe_accuracy(x[sel, k], y, args.folds) for k in range(x.shape[1])]
        res["models"][label] = row
        log.info("%s: %s", label, json.dumps(row))
    return write_results(args.out, args.name, res, markdown(res))


def markdown(res: dict) -> str:
    a = res["args"]
    cmd = f"python benchmarks/avqa_decision_probe.py --models {a['models']} --per-type {a['per_type']}"
    if a.get("avqa_layout", "reference") != "reference":
        cmd += f" --avqa-layout {a['avqa_layout']}"
    cmd += f" --name {a['name']}" if a.get("name", "avqa_decision_probe") != "avqa_decision_probe" else ""
    first = next(iter(res["models"].values()))
    layers = len(first["all"]["decision"])
    lines = [
        "# AVQA existential questions: is the answer in the LLM's states?",
        "",
        header(cmd, a["threads"]),
        "",
        f"Fresh existential items (`test`, seed {a['seed']}), teacher-forced with the reference answer. The "
        "LLM's hidden state (layer 0: the input embeddings) where the restatement ends (*restatement*) and "
        "where the answer starts to say whether the class is there (*decision*: after the list of sounds "
        "or objects; for audio-visual questions the same position as the restatement's end). A "
        f"logistic-regression probe for the true answer, held-out accuracy over {a['folds']} folds.",
        "",
        "| model | question type | position | n | majority | "
        + " | ".join(f"layer {i}" for i in range(layers))
        + " |",
        "|---|---|---|---|---|" + "---|" * layers,
    ]
    for label, row in res["models"].items():
        for qtype, r in row.items():
            for pos in POSITIONS:
                cells = " | ".join(f"{v:.3f}" for v in r[pos])
                lines.append(f"| {label} | {qtype} | {pos} | {r['n']} | {r['majority']:.3f} | {cells} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    raise SystemExit(main())
