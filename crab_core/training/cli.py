"""``python -m crab_core train``: train a recipe, or score a saved model on fresh SynthAV splits.

Train (single process, or any ``accelerate launch --config_file configs/accelerate/<x>.yaml -m
crab_core train ...``)::

    python -m crab_core train --recipe crab-tiny --out runs/tiny [--resume | --overwrite] [--max-minutes M]
        [--eval-every N] [--test-per-task N]

An ``OUT`` that already holds a checkpoint needs ``--resume`` (continue it) or ``--overwrite`` (start
over and replace it); without either the command stops before touching it.

The trained model is written to ``OUT/model`` (``save_pretrained`` format, with ``training.json``:
recipe, time, losses and test metrics). Score a model folder on fresh seeds (never used in
training: the ``test`` and ``test-compositional`` splits) or on a Crab-format manifest::

    python -m crab_core train --evaluate assets/crab-tiny --per-task 100 [--split test] [--json out.json]
    python -m crab_core train --evaluate MODEL --manifest data/test/manifest.jsonl
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

log = logging.getLogger(__name__)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m crab_core train", description="Train Crab models (recipes) or score them."
    )
    p.add_argument("--recipe", default="crab-tiny", help="recipe name (crab-tiny, smoke)")
    p.add_argument("--out", help="output folder (logs, checkpoint, model/)")
    p.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint")
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="start over in an OUT that holds a checkpoint (it is replaced)",
    )
    p.add_argument("--max-minutes", type=float, default=None, help="stop after this wall time (checkpointed)")
    p.add_argument("--eval-every", type=int, default=None, help="validation every N optimizer steps (0: off)")
    p.add_argument(
        "--snapshot-every", type=int, default=0, help="export the model every N steps of each LM phase"
    )
    p.add_argument("--cache-dir", help="rendered-data cache (default OUT/cache); reuse another run's")
    p.add_argument(
        "--test-per-task", type=int, default=0, help="after training, score N fresh test samples per task"
    )
    p.add_argument("--cpu", action="store_true", help="train on the CPU even when a GPU is present")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument("--evaluate", metavar="MODEL_DIR", help="score a saved model instead of training")
    p.add_argument("--split", default="test,test-compositional", help="SynthAV split(s) for --evaluate")
    p.add_argument("--per-task", type=int, default=50, help="samples per task for --evaluate")
    p.add_argument("--seed", type=int, default=0, help="SynthAV user seed for --evaluate")
    p.add_argument("--manifest", help="score on this Crab-format manifest instead of SynthAV")
    p.add_argument("--json", help="write the evaluation result to this file")
    return p


def test_items(
    tokenizer, image_size: int, split: str, per_task: int, seed: int = 0, tasks=None, workers: int = 2
):
    """Fresh SynthAV samples of ``split`` (rendered in memory, tokenised)."""
    from .data import render_synth, synth_seeds, tokenize_item
    from .recipe import ALL_TASKS

    tasks = [t for t in (tasks or ALL_TASKS) if t != "caption"]
    raws = render_synth(synth_seeds(split, tasks, per_task, seed), image_size, workers, with_labels=False)
    return [tokenize_item(r, tokenizer) for r in raws]


def evaluate_model(
    folder: str, splits: list[str], per_task: int, seed: int = 0, manifest: str | None = None
) -> dict:
    """Metrics of a saved model per split (or on a manifest)."""
    import torch

    from ..checkpoint.pretrained import load_pretrained
    from .data import read_manifest, tokenize_item
    from .evaluate import evaluate_items

    torch.manual_seed(0)
    model, tok, _ = load_pretrained(folder)
    size = model.config.vision.image_size
    out: dict = {"model": str(folder), "per_task": per_task, "seed": seed, "splits": {}}
    sets = {}
    if manifest:
        sets[Path(manifest).name] = [tokenize_item(r, tok) for r in read_manifest(manifest, size)]
    else:
        for split in splits:
            sets[split] = test_items(tok, size, split, per_task, seed)
    for name, items in sets.items():
        t0 = time.perf_counter()
        res = evaluate_items(model, tok, items)
        res["seconds"] = round(time.perf_counter() - t0, 1)
        out["splits"][name] = res
        log.info("%s: %s", name, json.dumps(res["summary"]))
    return out


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m crab_core train``."""
    args = _parser().parse_args(argv)
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("accelerate").setLevel(logging.WARNING)
    if args.evaluate:
        res = evaluate_model(
            args.evaluate, [s for s in args.split.split(",") if s], args.per_task, args.seed, args.manifest
        )
        if args.json:
            Path(args.json).write_text(json.dumps(res, indent=2))
        for name, r in res["splits"].items():
            print(name, json.dumps(r["summary"], indent=1))  # noqa: T201 - CLI output
        return 0
    if not args.out:
        _parser().error("--out is required for training")
    return train_main(args)


def _refuse_to_restart_over(out: Path, resume: bool, overwrite: bool) -> None:
    """A run started without ``--resume`` in a folder that holds a checkpoint would replace it at its
    first save: refuse unless ``--overwrite`` says so.

    Raises:
        CheckpointError: ``out`` holds a checkpoint and neither flag is given.
    """
    from ..errors import CheckpointError
    from . import checkpointing as ckpt

    if resume or overwrite:
        return
    held = [f for f in ckpt.paths(out) if ckpt.read_state(f) is not None]
    if held:
        raise CheckpointError(
            f"{out} holds a checkpoint ({held[0]}): continue it with --resume, start over with "
            "--overwrite, or choose another --out"
        )


def train_main(args) -> int:
    import torch

    from .evaluate import evaluate_items
    from .recipe import get_recipe
    from .trainer import Trainer, default_accelerator

    t_start = time.perf_counter()
    torch.set_num_threads(max(1, torch.get_num_threads()))
    recipe = get_recipe(args.recipe)
    _refuse_to_restart_over(Path(args.out), resume=args.resume, overwrite=args.overwrite)
    trainer = Trainer(
        recipe,
        args.out,
        accelerator=default_accelerator(cpu=args.cpu),
        max_minutes=args.max_minutes,
        eval_every=args.eval_every,
        progress=not args.no_progress,
        cache_dir=args.cache_dir,
        snapshot_every=args.snapshot_every,
    )
    trainer.setup()
    if not trainer.train(resume=args.resume):
        log.info("stopped by --max-minutes; continue with --resume")
        return 0
    extra: dict = {
        "train_minutes": round((time.perf_counter() - trainer._t0) / 60, 2),
        "wall_minutes_with_setup": round((time.perf_counter() - t_start) / 60, 2),
        "final_losses": {p.name: _last_loss(trainer.history, p.name) for p in recipe.phases},
    }
    model = trainer.full_model() if args.test_per_task else None  # every rank: gathers under FSDP
    if args.test_per_task and trainer.acc.is_main_process:
        items = test_items(
            trainer.tokenizer,
            recipe.model.vision.image_size,
            "test",
            args.test_per_task,
            workers=recipe.data.workers,
        )
        extra["test"] = evaluate_items(model, trainer.tokenizer, items)["summary"]
    trainer.export(Path(args.out) / "model", extra=extra)
    log.info("model written to %s", Path(args.out) / "model")
    return 0


def _last_loss(history: list[dict], phase: str) -> float | None:
    rows = [h["loss"] for h in history if h["phase"] == phase]
    return round(float(sum(rows[-10:]) / len(rows[-10:])), 4) if rows else None
