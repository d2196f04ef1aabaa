"""Where crab-tiny's AVVP audio events fail: per-second recall by how many sources sound at once.

Scores models on the same fresh AVVP items through ``python -m crab_core eval`` (its ``--results``
file keeps each answer), turns each answer's audio events into a (class, second) set and compares it
with the ground truth second by second::

    python benchmarks/avvp_polyphony.py --models v5=runs/v5/model,v7=runs/v7/model

* recall of the (class, second) pairs, split by the number of sources sounding in that second (1,
  2, 3 or more) and by the source's loudness (SynthAV gain: loud >= -6 dB, soft < -12 dB);
* precision of the predicted pairs, and the share of predicted pairs whose class does not sound
  anywhere in the clip (a wrong class) vs at another second (a wrong time);
* with ``--checkpoints v5=runs/v5/checkpoint:crab-tiny,...`` (training checkpoints: the exported
  models have no probes) the same recall read from the audio tokens by the run's linear probe
  (``tower_heads.probes.audio``, per second audible classes) on the same clips: whether the tokens or
  the answers lose the concurrent sources.

Writes ``benchmarks/results/avvp_polyphony.{md,json}``.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
log = logging.getLogger("avvp_polyphony")

from crab_core.tasks.parsers import normalize_label, parse_avvp  # noqa: E402


def pairs(events, num_seconds: int = 10) -> set[tuple[str, int]]:
    """``[(class, [(s, e), ...])]`` -> ``{(class, second)}`` (ranges are ``[s, e)``)."""
    return {
        (normalize_label(name), t)
        for name, ranges in events
        for s, e in ranges
        for t in range(max(0, int(s)), min(num_seconds, int(e)))
    }


def item_counts(prediction: str, gt: dict, meta: dict) -> Counter:
    """Counts of one item: ``hit|miss:poly=K`` / ``hit|miss:gain=G`` per GT pair,
    ``tp|wrong_class|wrong_time`` per predicted pair."""
    n = int(gt.get("num_segments", 10))
    truth = pairs([(ev["event"], ev["ranges"]) for ev in gt.get("audio", [])], n)
    pred = pairs(parse_avvp(prediction).audio, n)
    poly = Counter(t for _, t in truth)
    gain = {normalize_label(o["class"]): o.get("gain_db", 0.0) for o in meta.get("objects", [])}
    c: Counter = Counter()
    for cls, t in truth:
        hit = "hit" if (cls, t) in pred else "miss"
        k = min(poly[t], 3)
        g = gain.get(cls, 0.0)
        c[f"{hit}:poly={k}{'+' if k == 3 else ''}"] += 1
        c[f"{hit}:gain={'loud' if g >= -6 else ('soft' if g < -12 else 'medium')}"] += 1
    classes = {cls for cls, _ in truth}
    for cls, t in pred:
        c["tp" if (cls, t) in truth else ("wrong_time" if cls in classes else "wrong_class")] += 1
    return c


def summarise(counts: Counter) -> dict:
    """Recall per polyphony / loudness bucket (with n), precision and the false-positive split."""
    out: dict = {}
    keys = sorted({k.split(":", 1)[1] for k in counts if k.startswith(("hit:", "miss:"))})
    for key in keys:
        hit, miss = counts[f"hit:{key}"], counts[f"miss:{key}"]
        out[f"recall {key}"] = {"value": round(hit / (hit + miss), 3), "n": hit + miss}
    npred = counts["tp"] + counts["wrong_time"] + counts["wrong_class"]
    if npred:
        out["precision"] = {"value": round(counts["tp"] / npred, 3), "n": npred}
        for k in ("wrong_time", "wrong_class"):
            out[f"share of predictions: {k.replace('_', ' ')}"] = {
                "value": round(counts[k] / npred, 3),
                "n": npred,
            }
    return out


def score(model: str, manifest: Path, work: Path) -> Counter:
    """:func:`item_counts` summed over the AVVP rows of ``manifest`` (``python -m crab_core eval``)."""
    from _report import eval_answers

    total: Counter = Counter()
    for row, text in eval_answers(model, manifest, work, "avvp"):
        total += item_counts(text, row["gt"], row.get("meta", {}))
    return total


def probe_counts(checkpoint: str, recipe: str, model_dir: str, manifest: Path) -> Counter:
    """``hit|miss:poly=K`` and ``tp|fp`` of the run's audio probe on the clips of ``manifest``'s AVVP rows
    (rendered again from their seeds, with the per-second audible labels); ``model_dir``: the run's
    exported model (its tokenizer)."""
    import torch
    from _report import load_run

    from crab_core.synthav.world import CLASSES
    from crab_core.tokenizer import CrabTokenizer
    from crab_core.training.collate import collate
    from crab_core.training.data import render_synth, tokenize_item

    module = load_run(checkpoint, recipe)
    rows = [json.loads(x) for x in manifest.read_text(encoding="utf-8").splitlines() if x.strip()]
    seeds = [(int(r["seed"]), "avvp") for r in rows if r["task"] == "avvp"]
    raws = render_synth(seeds, module.model.config.vision.image_size, 2, with_labels=True)
    tok = CrabTokenizer.from_dir(Path(model_dir) / "tokenizer", module.model.config)
    items = [tokenize_item(r, tok) for r in raws]
    q_a = module.model.config.al_qformer.num_query_tokens
    c: Counter = Counter()
    with torch.no_grad():
        for s in range(0, len(items), 8):
            batch = collate(items[s : s + 8])
            for it, media in zip(batch.items, module.encode(batch), strict=True):
                a = media.features["audio"].float()
                logits = module.tower_heads.probes.audio(a.reshape(-1, q_a * a.shape[-1]))
                pred = (logits.view(-1, len(CLASSES), 2)[..., 0] > 0).numpy()
                gt = it.raw.labels["audible"][: len(pred)] > 0
                pred = pred[: len(gt)]
                for t in range(len(gt)):
                    k = min(int(gt[t].sum()), 3)
                    for j in range(len(CLASSES)):
                        if gt[t, j]:
                            c[f"{'hit' if pred[t, j] else 'miss'}:poly={k}{'+' if k == 3 else ''}"] += 1
                        elif pred[t, j]:
                            c["fp"] += 1
                c["tp"] += int((pred & gt).sum())
    return c


def table(report: dict) -> str:
    cols = [(m, s) for m, splits in report["models"].items() for s in splits]
    keys = list(dict.fromkeys(k for m, s in cols for k in report["models"][m][s]))
    lines = [
        "| reading | " + " | ".join(f"{m} {s}" for m, s in cols) + " |",
        "|---|" + "---|" * len(cols),
    ]
    for k in keys:
        cells = []
        for m, s in cols:
            v = report["models"][m][s].get(k)
            cells.append("-" if v is None else f"{v['value']:.3f} (n={v['n']})")
        lines.append(f"| {k} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", default="crab-tiny", help="label=model,... (model: crab-tiny or a folder)")
    p.add_argument("--data", default="runs/quality-splits", help="the splits of crab_tiny_quality.py")
    p.add_argument("--seeds", default="test=501,test-compositional=502")
    p.add_argument("--per-task", type=int, default=50, help="samples per task of the splits")
    p.add_argument("--checkpoints", default="", help="label=checkpoint_dir:recipe,... (probe readings)")
    p.add_argument("--out", default="benchmarks/results")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from crab_tiny_quality import make_split

    seeds = {k: int(v) for k, v in (x.split("=") for x in args.seeds.split(",") if x)}
    models = dict(x.split("=", 1) for x in args.models.split(",") if x)
    report: dict = {
        "command": f"python benchmarks/avvp_polyphony.py --models {args.models} --seeds {args.seeds}"
        + (f" --checkpoints {args.checkpoints}" if args.checkpoints else ""),
        "models": {},
    }
    for label, model in models.items():
        report["models"][label] = {}
        for split, seed in seeds.items():
            manifest = make_split(Path(args.data), split, seed, args.per_task)
            with tempfile.TemporaryDirectory() as tmp:
                counts = score(model, manifest, Path(tmp))
            report["models"][label][split] = summarise(counts)
            log.info("%s %s: %s", label, split, report["models"][label][split])
    for label, spec in (x.split("=", 1) for x in args.checkpoints.split(",") if x):
        ckpt, recipe = spec.rsplit(":", 1)
        model_dir = str(Path(ckpt).parent / "model")
        report["models"][f"{label} probe"] = {}
        for split, seed in seeds.items():
            c = probe_counts(ckpt, recipe, model_dir, make_split(Path(args.data), split, seed, args.per_task))
            row = {k: v for k, v in summarise(c).items() if k.startswith("recall poly")}
            row["precision"] = {
                "value": round(c["tp"] / max(c["tp"] + c["fp"], 1), 3),
                "n": c["tp"] + c["fp"],
            }
            report["models"][f"{label} probe"][split] = row
            log.info("%s probe %s: %s", label, split, row)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "avvp_polyphony.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    md = (
        "# AVVP audio events: per-second recall by how many sources sound at once\n\n"
        f"`{report['command']}`: the same fresh AVVP items ({args.per_task} per split) for every model, "
        "answered through `python -m crab_core eval`. Each answer's audio events become (class, second) "
        "pairs. *poly=K*: K sources sound in that second; loud: gain >= -6 dB, soft: < -12 dB. "
        "*wrong time*: the class sounds in the clip, at other seconds; *wrong class*: it does not sound. "
        "*probe*: the run's linear probe on the audio tokens of the same clips (per-second audible labels; "
        "precision over every class and second).\n\n" + table(report)
    )
    (out / "avvp_polyphony.md").write_text(md, encoding="utf-8")
    sys.stdout.write(md)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
