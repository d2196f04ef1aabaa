"""Where does the signal die? Media-token probes vs the LLM's answers, on seen and fresh items.

For the crab-tiny targets still missed (ARIG boxes, AVVP audio events), three readings of the same
items, from a training checkpoint (``OUT/checkpoint`` of ``python -m crab_core train``, which keeps
the recipe's linear media probes next to the model)::

    python benchmarks/signal_paths.py --checkpoint runs/v5/checkpoint --model runs/v5/model

* **tokens**: the recipe's linear probes (:mod:`crab_core.training.probes`) read the projected media
  tokens the LLM receives: a frame's ``Q_v`` tokens -> each visible class's box (scored as the share
  with IoU > 0.5, the class given: an oracle on the class), an audio second's ``Q_a`` tokens -> the
  audible classes (per-second F1). High here and low in the answers: the LLM does not read or write
  what its inputs hold. Low here: the information is gone before the LLM.
* **answers**: the model's generated answers scored by the eval path (ARIG cIoU, AVVP segment F1).
* **seen vs fresh**: both on ``train``-split items the recipe trained on (user seed 0) and on fresh
  ``test`` items: close values mean the model underfits rather than memorises.

Writes ``benchmarks/results/signal_paths.{md,json}``.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
log = logging.getLogger("signal_paths")


def box_iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """IoU of matching rows of two ``(N, 4)`` ``(x1, y1, x2, y2)`` box tensors."""
    ix = (torch.minimum(a[:, 2], b[:, 2]) - torch.maximum(a[:, 0], b[:, 0])).clamp_min(0)
    iy = (torch.minimum(a[:, 3], b[:, 3]) - torch.maximum(a[:, 1], b[:, 1])).clamp_min(0)
    inter = ix * iy
    area = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1]) + (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    return inter / (area - inter).clamp_min(1e-9)


def probe_readings(module, items, task: str) -> dict:
    """Probe scores on the projected media tokens of ``items`` (one task)."""
    from crab_core.synthav.world import CLASSES
    from crab_core.training.collate import collate
    from crab_core.training.probes import frame_targets

    cfg = module.model.config
    q_v, q_a = cfg.vl_qformer.num_query_tokens, cfg.al_qformer.num_query_tokens
    probes = module.tower_heads.probes
    ious, tp, fp, fn = [], 0, 0, 0
    with torch.no_grad():
        for s in range(0, len(items), 8):
            batch = collate(items[s : s + 8])
            for it, media in zip(batch.items, module.encode(batch), strict=True):
                f = media.features
                if task == "arig":  # one frame: the target class's box, in 224-px answer coordinates
                    tok = f["image"].float().reshape(-1, q_v * f["image"].shape[-1])
                    out = probes.video(tok).view(-1, len(CLASSES), 5)[0]
                    pred = out[CLASSES.index(it.raw.gt["object"]), 1:].sigmoid()
                    gt = torch.tensor(it.raw.gt["box"], dtype=torch.float32) / 224.0
                    ious.append(box_iou(pred[None], gt[None]))
                elif task == "avvp":  # per-second audible classes
                    tok = f["audio"].float().reshape(-1, q_a * f["audio"].shape[-1])
                    pred = (probes.audio(tok).view(-1, len(CLASSES), 2)[..., 0] > 0).numpy()
                    gt = it.raw.labels["audible"][: len(pred)] > 0
                    pred = pred[: len(gt)]
                    tp += int((pred & gt).sum())
                    fp += int((pred & ~gt).sum())
                    fn += int((~pred & gt).sum())
                else:  # every visible class's box in every frame
                    tok = f["video"].float().reshape(-1, q_v * f["video"].shape[-1])
                    out = probes.video(tok).view(-1, len(CLASSES), 5)
                    vis, boxes = frame_targets(torch.from_numpy(it.raw.labels["patch"]))
                    sel = vis > 0
                    ious.append(box_iou(out[..., 1:].sigmoid()[sel], boxes[sel]))
    if task == "avvp":
        return {"audio second -> audible classes, F1": 2 * tp / max(2 * tp + fp + fn, 1)}
    x = torch.cat(ious)
    return {"boxes with IoU > 0.5": float((x > 0.5).float().mean()), "boxes": int(len(x))}


ANSWER_KEYS = {"arig": ("ciou",), "avvp": ("segment_audio", "segment_visual"), "ave": (), "s4": ()}


def main(argv: list[str] | None = None) -> int:
    from safetensors.torch import load_file

    from crab_core.checkpoint.pretrained import load_pretrained
    from crab_core.training.data import render_synth, synth_seeds, tokenize_item
    from crab_core.training.evaluate import evaluate_items
    from crab_core.training.module import build_train_module
    from crab_core.training.recipe import get_recipe

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", default="runs/v5/checkpoint", help="a training checkpoint folder")
    p.add_argument("--model", default="runs/v5/model", help="the exported model of the same run")
    p.add_argument("--recipe", default="crab-tiny")
    p.add_argument("--per-task", type=int, default=40)
    p.add_argument("--seed", type=int, default=801, help="user seed of the fresh test items")
    p.add_argument("--out", default="benchmarks/results")
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    module = build_train_module(get_recipe(args.recipe))
    missing, unexpected = module.load_state_dict(
        load_file(Path(args.checkpoint) / "model.safetensors"), strict=False
    )
    if missing or unexpected:
        p.error(
            f"checkpoint does not match recipe {args.recipe}: "
            f"{len(missing)} missing, {len(unexpected)} unexpected"
        )
    module.eval()
    model, tok, _ = load_pretrained(args.model)
    size = module.model.config.vision.image_size
    res: dict = {"checkpoint": args.checkpoint, "per_task": args.per_task, "splits": {}}
    for split, seed in (("train", 0), ("test", args.seed)):
        res["splits"][split] = {}
        for task in ANSWER_KEYS:
            raws = render_synth(synth_seeds(split, [task], args.per_task, seed), size, 2, with_labels=True)
            items = [tokenize_item(r, tok) for r in raws]
            row = {"tokens": probe_readings(module, items, task)}
            if ANSWER_KEYS[task]:
                summ = evaluate_items(model, tok, items)["summary"]
                row["answers"] = {k: summ[f"{task}/{k}"] for k in ANSWER_KEYS[task]}
                row["baseline"] = {k: summ.get(f"{task}/{k}@majority") for k in ANSWER_KEYS[task]}
            res["splits"][split][task] = row
            log.info("%s %s: %s", split, task, row)
    res["seconds"] = round(time.perf_counter() - t0, 1)
    out = Path(args.out)
    (out / "signal_paths.json").write_text(json.dumps(res, indent=1))
    md = markdown(res, args)
    (out / "signal_paths.md").write_text(md)
    sys.stdout.write(md)
    return 0


def markdown(res: dict, args) -> str:
    lines = [
        "# Where the signal dies: media-token probes vs answers",
        "",
        f"`python benchmarks/signal_paths.py --checkpoint {args.checkpoint} --model {args.model} "
        f"--per-task {args.per_task} --seed {args.seed}` ({res['seconds']:.0f} s). n = {args.per_task} "
        "items per task and split; `train`: items the recipe trained on (user seed 0); `test`: fresh.",
        "",
        "| task | reading | train (seen) | test (fresh) | majority baseline (test) |",
        "|---|---|---|---|---|",
    ]
    names = {"ave": "AVE frames", "s4": "S4 frames", "arig": "ARIG frame", "avvp": "AVVP audio"}
    for task in ANSWER_KEYS:
        tr, te = res["splits"]["train"][task], res["splits"]["test"][task]
        for k, v in te["tokens"].items():
            if k == "boxes":
                continue
            n = f" ({te['tokens']['boxes']} boxes)" if "boxes" in te["tokens"] else ""
            lines.append(
                f"| {names[task]} | tokens (linear probe): {k}{n} | {tr['tokens'][k]:.3f} | {v:.3f} | - |"
            )
        for k, v in te.get("answers", {}).items():
            base = te["baseline"].get(k)
            b = "-" if base is None else f"{base:.3f}"
            lines.append(f"| {names[task]} | answers: {k} | {tr['answers'][k]:.3f} | {v:.3f} | {b} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    raise SystemExit(main())
