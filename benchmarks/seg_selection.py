"""Why crab-tiny's S4 / MS3 masks stop near 0.55 mIoU: does the mask decoder select the sounding object?

Three measurements on S4 samples of a fresh SynthAV ``test`` split (seed 101, as the quality table):

* **IoU by scene**: S4 per-frame IoU on frames with one visible object vs several, and on empty targets
  (the named object is silent at that second).
* **seg-token states**: the share of the variance of the six seg-token LLM states (the decoder's
  prompt) that is explained by the target class (between-class / total), and their spread relative
  to their mean.
* **prompt swap**: each frame decoded with the seg-token states of other samples (other target
  classes); the IoU between those masks and the frame's own mask (1.0 = the decoder ignores its prompt).

``--arms`` also retrains the seg stage from the shipped weights (seg module re-initialised, the
recipe's ``seg`` phase) with and without a first 500-step I-LoRA phase that adds the seg-token
probe (:class:`crab_core.training.probes.SegTokenProbe`, ``Phase.seg_probe_weight``), and reports
the same numbers for each (about 15 minutes on 2 CPU cores, SynthAV rendering included)::

    python benchmarks/seg_selection.py --arms --out benchmarks/results

``--seg-only --seg-steps 3200 --name seg_selection_3200`` retrains only the seg stage, four times
longer than crab-tiny v3's 800 steps (about 16 minutes; v4's recipe runs 2400).
``--name seg_selection_v4`` alone re-measures the shipped model (about 2 minutes).

The committed ``seg_selection.md`` / ``seg_selection_3200.md`` were measured on crab-tiny v3 (its arms
start from v3's weights); ``seg_selection_v4.md`` on v4.
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

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from benchmarks._report import header, write_report  # noqa: E402
from benchmarks.crab_tiny_quality import SPLITS, make_split  # noqa: E402

log = logging.getLogger("seg_selection")


def visible_at(meta: dict, second: int) -> int:
    """Number of objects visible at ``second`` (SynthAV scene meta)."""
    return sum(any(s <= second < e for s, e in o["visible"]) for o in meta["objects"])


def _iou(a: torch.Tensor, b: torch.Tensor) -> float:
    union = (a | b).sum()
    return 1.0 if union == 0 else float((a & b).sum() / union)


def diagnose(model: str, rows: list[dict], swaps: int = 8) -> dict:
    """The three measurements (module docstring) for ``model`` on the S4 ``rows``."""
    from crab_core.metrics.scoring import load_gt, pred_logits
    from crab_core.pipeline import CrabPipeline

    pipe = CrabPipeline.load(model)
    seg = pipe.model.seg_module
    cap: list = []

    def grab(module, args, kwargs):
        frames = kwargs.get("frames")
        cap.append(
            (args[0].detach(), [f.detach() for f in args[1]], None if frames is None else frames.detach())
        )

    hook = seg.register_forward_pre_hook(grab, with_kwargs=True)
    by_scene: dict[str, list[float]] = {
        "one visible object": [],
        "several visible objects": [],
        "empty target": [],
    }
    states, classes, feats, several = [], [], [], []
    try:
        for r in rows:
            cap.clear()
            res = pipe.run(
                "s4",
                video=r.get("video"),
                audio=r.get("audio"),
                image=r.get("image"),
                frame_index=r.get("frame_index"),
            )
            gt = load_gt("s4", r["gt"])["mask"] > 0.5
            pred = pred_logits(res, gt.shape, 1)[0] > 0
            iou = _iou(torch.from_numpy(pred), torch.from_numpy(gt))
            key = (
                "empty target"
                if not gt.any()
                else (
                    "one visible object"
                    if visible_at(r["meta"], r["frame_index"]) == 1
                    else "several visible objects"
                )
            )
            by_scene[key].append(iou)
            if cap and gt.any():
                states.append(cap[-1][0][0])
                feats.append((cap[-1][1], cap[-1][2]))
                classes.append(r["gt"]["object"])
                several.append(key == "several visible objects")
    finally:
        hook.remove()
    x = torch.stack(states).flatten(1).float()  # (N, 6 * D)
    mu = x.mean(0)
    total = ((x - mu) ** 2).sum(1).mean()
    between = sum(
        ((x[[i for i, c in enumerate(classes) if c == k]].mean(0) - mu) ** 2).sum() * classes.count(k)
        for k in set(classes)
    ) / len(classes)
    swap_iou, swap_several = [], []
    with torch.no_grad():
        for i in range(len(states)):
            f, frames = feats[i]
            own = seg(states[i][None], f, ["s4"], frames=frames).pred_masks[0][0] > 0
            others = [j for j in range(len(states)) if classes[j] != classes[i]][:swaps]
            for j in others:
                iou = _iou(own, seg(states[j][None], f, ["s4"], frames=frames).pred_masks[0][0] > 0)
                swap_iou.append(iou)
                if several[i]:
                    swap_several.append(iou)
    n_all = sum(len(v) for v in by_scene.values())
    return {
        "s4_miou": float(np.mean([v for vs in by_scene.values() for v in vs])),
        "by_scene": {k: {"n": len(v), "miou": float(np.mean(v)) if v else None} for k, v in by_scene.items()},
        "samples": n_all,
        "class_variance_share": float(between / total),
        "spread_over_mean": float(total.sqrt() / mu.norm()),
        "prompt_swap_iou": float(np.mean(swap_iou)),
        "prompt_swap_iou_several": float(np.mean(swap_several)) if swap_several else None,
        "prompt_swap_n_several": len(swap_several),
    }


def run_arm(
    name: str,
    with_probe: bool,
    out: Path,
    cache: Path,
    minutes: dict,
    seg_steps: int | None = None,
    decoder: str | None = None,
    seg_trainable: tuple[str, ...] | None = None,
    seg_probe_weight: float | None = None,
) -> Path:
    """Retrain the seg stage from the shipped weights; returns the exported model folder."""
    from crab_core.checkpoint.io import read_state_dict
    from crab_core.model.builder import build_model
    from crab_core.pipeline import TINY_DIR
    from crab_core.tokenizer import CrabTokenizer
    from crab_core.training.data import tokenize_item
    from crab_core.training.recipe import ALL_TASKS, Phase, crab_tiny_recipe
    from crab_core.training.trainer import Trainer

    recipe = crab_tiny_recipe()
    if decoder is not None:
        recipe = recipe.replace(
            model=recipe.model.replace(seg=dataclasses.replace(recipe.model.seg, decoder=decoder))
        )
    by_name = {p.name: p for p in recipe.phases}
    # a 0-step phase on every task keeps the render cache (keyed by the recipe's tasks) shared by both arms
    phases = [Phase("data", 0, ("seg_module",), {t: 1.0 for t in ALL_TASKS})]
    if with_probe:
        ins = by_name["instruct"]
        phases.append(
            Phase(
                "probe",
                500,
                ("lora", "tower_heads"),
                ins.tasks,
                lr=ins.lr,
                batch_size=ins.batch_size,
                seg_probe_weight=1.0,
            )
        )
    seg = by_name["seg"]
    seg = seg if seg_steps is None else dataclasses.replace(seg, steps=seg_steps)
    seg = seg if seg_trainable is None else dataclasses.replace(seg, trainable=seg_trainable)
    phases.append(
        seg if seg_probe_weight is None else dataclasses.replace(seg, seg_probe_weight=seg_probe_weight)
    )
    trainer = Trainer(recipe.replace(phases=tuple(phases)), out / name, cache_dir=cache, progress=False)
    trainer.setup()
    # the shipped model's own tokenizer: the recipe's (retrained) one may differ from the shipped
    # weights' vocabulary
    trainer.tokenizer = CrabTokenizer.from_dir(TINY_DIR / "tokenizer", recipe.model)
    trainer.items = [tokenize_item(x, trainer.tokenizer) for x in trainer.raws]
    trainer.val_items = [tokenize_item(x.raw, trainer.tokenizer) for x in trainer.val_items]
    state = read_state_dict(TINY_DIR / "model.safetensors", float32=True)
    if recipe.model.seg.decoder != "reference":  # the shipped seg module does not fit: it starts fresh anyway
        state = {k: v for k, v in state.items() if not k.startswith("seg_module.")}
    res = trainer.model.load_state_dict(state, strict=False)
    missing = [k for k in res.missing_keys if "rotary" not in k and not k.startswith("seg_module.")]
    if missing or res.unexpected_keys:
        raise RuntimeError(
            f"shipped weights do not fit the recipe's model: {missing[:3]} {res.unexpected_keys[:3]}"
        )
    fresh = build_model(recipe.model, seed=recipe.seed)
    trainer.model.seg_module.load_state_dict(
        fresh.seg_module.state_dict()
    )  # the seg stage starts from scratch
    t0 = time.perf_counter()
    trainer.train()
    minutes[name] = round((time.perf_counter() - t0) / 60, 1)
    return trainer.export(out / name / "model")


def table(results: dict) -> str:
    keys = list(results)
    lines = ["| | " + " | ".join(keys) + " |", "|---|" + "---|" * len(keys)]

    def row(label, get):
        lines.append(f"| {label} | " + " | ".join(get(results[k]) for k in keys) + " |")

    row("S4 mean per-frame IoU (all)", lambda r: f"{r['s4_miou']:.3f}")
    for scene in ("one visible object", "several visible objects", "empty target"):
        row(
            f"S4 mean per-frame IoU, {scene}",
            lambda r, s=scene: (
                "-"
                if r["by_scene"][s]["miou"] is None
                else f"{r['by_scene'][s]['miou']:.3f} (n={r['by_scene'][s]['n']})"
            ),
        )
    row("seg-token states: class share of variance", lambda r: f"{r['class_variance_share']:.2f}")
    row("seg-token states: spread / mean norm", lambda r: f"{r['spread_over_mean']:.2f}")
    row("prompt swap: IoU with own mask (1 = ignored)", lambda r: f"{r['prompt_swap_iou']:.2f}")
    row(
        "prompt swap, several-object frames",
        lambda r: (
            "-"
            if r.get("prompt_swap_iou_several") is None
            else f"{r['prompt_swap_iou_several']:.2f} (pairs={r['prompt_swap_n_several']})"
        ),
    )
    for extra in ("ms3", "ref-avs", "avss"):
        if any(extra in r for r in results.values()):
            row(
                f"{extra} mIoU" + (" (present)" if extra == "avss" else ""),
                lambda r, e=extra: "-" if e not in r else f"{r[e]:.3f}",
            )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="crab-tiny")
    p.add_argument("--per-task", type=int, default=50, help="samples per task of the test split")
    p.add_argument("--data", default="runs/quality-splits")
    p.add_argument("--arms", action="store_true", help="also retrain the seg stage with / without the probe")
    p.add_argument("--seg-only", action="store_true", help="with --arms: only the arm without the probe")
    p.add_argument(
        "--seg-steps", type=int, default=None, help="seg-stage steps of the arms (default: the recipe's)"
    )
    p.add_argument(
        "--decoder",
        choices=("reference", "prompt"),
        default=None,
        help="mask decoder of the arms (default: the recipe's)",
    )
    p.add_argument(
        "--seg-trainable",
        default=None,
        help="comma-separated components the arms' seg stage trains (default: the recipe's)",
    )
    p.add_argument(
        "--seg-probe-weight",
        type=float,
        default=None,
        help="seg-token probe loss weight in the arms' seg stage (default: the recipe's)",
    )
    p.add_argument("--name", default="seg_selection", help="report file name (without extension)")
    p.add_argument("--work", default="runs/seg-selection", help="arm outputs and render cache")
    p.add_argument("--cache", default=None, help="render cache folder (default WORK/cache)")
    p.add_argument("--out", default="benchmarks/results")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    torch.set_num_threads(2)
    from crab_core.evaluation import evaluate, read_manifest
    from crab_core.pipeline import CrabPipeline

    rows = read_manifest(make_split(Path(args.data), "test", SPLITS["test"], args.per_task))
    s4 = [r for r in rows if r["task"] == "s4"]
    models = {"shipped": args.model}
    minutes: dict = {}
    if args.arms:
        work = Path(args.work)
        cache = Path(args.cache) if args.cache else work / "cache"
        steps = f" ({args.seg_steps} steps)" if args.seg_steps else ""
        trainable = tuple(args.seg_trainable.split(",")) if args.seg_trainable else None
        extra = (args.seg_steps, args.decoder, trainable, args.seg_probe_weight)
        label = (
            "seg stage retrained"
            + steps
            + (f", {args.decoder} decoder" if args.decoder else "")
            + (f", trains {args.seg_trainable}" if trainable else "")
            + (f", seg-token probe x{args.seg_probe_weight}" if args.seg_probe_weight else "")
        )
        models[label] = str(run_arm("seg", False, work, cache, minutes, *extra))
        if not args.seg_only:
            models["seg-token probe, then seg stage" + steps] = str(
                run_arm("probe-seg", True, work, cache, minutes, *extra)
            )
    results = {}
    for name, model in models.items():
        results[name] = diagnose(model, s4)
        if name != "shipped":
            rep = evaluate(
                CrabPipeline.load(model),
                [r for r in rows if r["task"] in ("ms3", "ref-avs", "avss")],
                progress=False,
            )
            results[name].update(
                {
                    "ms3": rep.metrics["ms3"]["miou"],
                    "ref-avs": rep.metrics["ref-avs"]["miou"],
                    "avss": rep.metrics["avss"]["miou_present"],
                }
            )
        log.info("%s: %s", name, results[name])
    cmd = "python benchmarks/seg_selection.py" + " ".join(
        [""]
        + [f for f, on in (("--arms", args.arms), ("--seg-only", args.seg_only)) if on]
        + ([f"--seg-steps {args.seg_steps}"] if args.seg_steps else [])
        + ([f"--decoder {args.decoder}"] if args.decoder else [])
        + ([f"--seg-trainable {args.seg_trainable}"] if args.seg_trainable else [])
        + ([f"--seg-probe-weight {args.seg_probe_weight}"] if args.seg_probe_weight is not None else [])
        + ([f"--name {args.name}"] if args.name != "seg_selection" else [])
    )
    md = "# crab-tiny: does the mask decoder select the sounding object?\n\n" + header(
        cmd, torch.get_num_threads()
    )
    md += (
        f"\n\nS4 samples: {len(s4)} of the `test` split (seed {SPLITS['test']}). "
        f"Arm training minutes: {minutes}.\n\n"
    )
    md += table(results)
    md += (
        "\nPer-frame IoU here scores an empty target 1 when the predicted mask is empty, else 0 "
        "(`eval`'s S4 mIoU scores the share of background pixels kept instead, hence its higher value). "
        "MS3 / Ref-AVS / AVSS: `eval`'s metrics on the same split.\n"
    )
    Path(args.out).mkdir(parents=True, exist_ok=True)
    (Path(args.out) / f"{args.name}.json").write_text(json.dumps(results, indent=1))
    return write_report(args.out, f"{args.name}.md", md)


if __name__ == "__main__":
    raise SystemExit(main())
