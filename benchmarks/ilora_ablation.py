"""Does I-LoRA reduce negative transfer? Four arms of the ``instruct`` phase on SynthAV (issue #17).

Protocol (docs/science.md):

* one shared starting point per seed: the crab-tiny recipe's phases before ``instruct`` (``audio``,
  ``towers``, ``align``), at ``base_scale`` of their steps;
* arms of the ``instruct`` phase from that point, same steps, data order (the seed), LR schedule:
  ``ilora-h3`` (the shipped I-LoRA), ``lora-matched`` (one head, rank raised to the same number of
  trainable adapter parameters), ``ilora-h1`` (the reference's degenerate case: one head, router
  weight 1) and ``single-task`` (one I-LoRA H=3 adapter per scored task, trained on that task alone
  for the number of samples the multi-task arms draw of it);
* every model is scored on the same fresh ``test`` items (``eval_per_task`` per task) through the
  eval path (:func:`crab_core.training.evaluate.generate_items` + the :mod:`crab_core.metrics`
  accumulators), per item, so transfer intervals can be bootstrapped;
* the router of the multi-task I-LoRA arms is read on a few items per task (entropy, mean weight
  per token kind and per task).

Each (seed, arm[, task]) job writes ``result.json`` in its folder under ``--out``; rerunning skips
finished jobs and resumes a stopped training from its checkpoint. ``--smoke`` runs a miniature of
every arm on the micro geometry (CI). The report (md / json / png) is written by
``benchmarks/ilora_ablation_report.py`` from the job results.

    python benchmarks/ilora_ablation.py [--out runs/ilora-ablation] [--seeds 1,2,3]
    python benchmarks/ilora_ablation.py --smoke --out /tmp/abl-smoke --results /tmp/abl-results
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from crab_core.training.recipe import (  # noqa: E402
    DataSpec,
    Phase,
    Recipe,
    _tiny_phases,
    crab_tiny_recipe,
    smoke_recipe,
)

log = logging.getLogger("ilora_ablation")
ARMS = ("ilora-h3", "lora-matched", "ilora-h1", "single-task")
MULTI_ARMS = ARMS[:3]
#: scored tasks -> (metric accumulator, key) of each headline number (text tasks: the seg tasks train
#: as text here, as in the reference's joint finetune, and have no mask to score)
SCORED = {
    "ave": [("ave_accuracy", "accuracy")],
    "avqa": [("avqa_accuracy", "accuracy")],
    "avvp": [("avvp", "segment_audio"), ("avvp", "segment_visual")],
    "arig": [("arig", "ciou")],
}
BASE_PHASES = ("audio", "towers", "align")


@dataclass(frozen=True)
class Protocol:
    """Sizes of one run of the protocol."""

    name: str
    seeds: tuple[int, ...]
    base_scale: float
    instruct_steps: int
    synth_per_task: int
    eval_per_task: int
    router_items: int
    eval_seed: int = 7100


FULL = Protocol(
    "full",
    (1, 2, 3),
    base_scale=0.25,
    instruct_steps=400,
    synth_per_task=300,
    eval_per_task=100,
    router_items=12,
)
SMOKE = Protocol(
    "smoke", (1,), base_scale=1.0, instruct_steps=4, synth_per_task=3, eval_per_task=2, router_items=1
)


# ------------------------------------------------------------------------------------ recipes
def _source(proto: Protocol) -> tuple[Recipe, tuple[Phase, ...], Phase]:
    """The recipe the protocol starts from, its base phases and its instruct phase."""
    if proto.name == "smoke":
        r = smoke_recipe()
        phases = r.phases
    else:
        r = crab_tiny_recipe()
        phases = _tiny_phases(proto.base_scale)
    base = tuple(p for p in phases if p.name in BASE_PHASES)
    instruct = next(p for p in r.phases if p.name == "instruct")
    return r, base, dataclasses.replace(instruct, steps=proto.instruct_steps)


def _data(proto: Protocol) -> DataSpec:
    return DataSpec(
        synth_per_task=proto.synth_per_task, val_per_task=0, workers=1 if proto.name == "smoke" else 2
    )


def base_recipe(proto: Protocol, seed: int) -> Recipe:
    """The shared starting point of one seed."""
    r, base, instruct = _source(proto)
    # the instruct phase's tasks with 0 steps: same task set (and rendered data) as the arms
    return r.replace(name=f"ablation-base-{proto.name}", phases=base, seed=seed, data=_data(proto))


def task_shares(proto: Protocol) -> dict[str, float]:
    """Share of the multi-task instruct batches that each task gets."""
    tasks = _source(proto)[2].tasks
    total = sum(tasks.values())
    return {t: w / total for t, w in tasks.items()}


def matched_rank(model_cfg) -> int:
    """Rank of a one-head LoRA with as many adapter parameters as the H-head I-LoRA of ``model_cfg``."""
    from crab_core.model.builder import build_model
    from crab_core.model.ilora_inject import iter_ilora_layers

    model = build_model(model_cfg, seed=0)
    r, h = model_cfg.lora.r, model_cfg.lora.num_heads
    target = total_io = 0
    for _, layer in iter_ilora_layers(model.llm):
        base = layer.get_base_layer()
        i, o = base.in_features, base.out_features
        target += r * i + h * r * o + h * i
        total_io += i + o
    return max(1, int(round(target / total_io)))


def arm_recipe(proto: Protocol, seed: int, arm: str, task: str | None = None) -> Recipe:
    """The instruct phase of one arm (``task``: the single-task arm's task)."""
    r, _, instruct = _source(proto)
    cfg = r.model
    if arm == "lora-matched":
        cfg = dataclasses.replace(cfg, lora=dataclasses.replace(cfg.lora, num_heads=1, r=matched_rank(cfg)))
    elif arm == "ilora-h1":
        cfg = dataclasses.replace(cfg, lora=dataclasses.replace(cfg.lora, num_heads=1))
    phase = instruct
    if arm == "single-task":
        steps = max(1, int(round(proto.instruct_steps * task_shares(proto)[task])))
        phase = dataclasses.replace(instruct, name=f"instruct-{task}", steps=steps, tasks={task: 1.0})
    name = f"ablation-{arm}" + (f"-{task}" if task else "")
    return r.replace(name=name, model=cfg, phases=(phase,), seed=seed, data=_data(proto))


def adapter_params(model, heads: int) -> dict[str, int]:
    """Trainable adapter parameters: all, and without a one-head router (whose softmax is constant 1)."""
    total = router = 0
    for name, p in model.llm.named_parameters():
        if "lora_" in name:
            total += p.numel()
            router += p.numel() if "lora_route" in name else 0
    return {"all": total, "effective": total - (router if heads == 1 else 0)}


# ------------------------------------------------------------------------------------ scoring
def score_items(model, tok, items) -> dict:
    """Per-item headline values ``{task: {key: [v_i]}}`` and the corpus value of each key."""
    from crab_core.metrics import metrics_for_task
    from crab_core.training.evaluate import generate_items

    outs = generate_items(model, tok, items)
    per_item: dict[str, dict[str, list[float]]] = {}
    corpus: dict[str, dict[str, float]] = {}
    for task, heads in SCORED.items():
        idx = [i for i, it in enumerate(items) if it.task == task]
        if not idx:
            continue
        names = sorted({name for name, _ in heads})
        whole = metrics_for_task(task)
        for i in idx:
            one = metrics_for_task(task)
            for name in names:  # one update per accumulator (AVVP has two headline keys)
                one[name].update(outs[i][0], items[i].raw.gt)
                whole[name].update(outs[i][0], items[i].raw.gt)
            for name, key in heads:
                per_item.setdefault(task, {}).setdefault(key, []).append(float(one[name].compute()[key]))
        corpus[task] = {key: float(whole[name].compute()[key]) for name, key in heads}
    return {"per_item": per_item, "corpus": corpus, "examples": {it.task: o[0] for it, o in zip(items, outs)}}


@torch.no_grad()
def router_stats(model, items, per_task: int) -> dict:
    """Router readout on ``per_task`` items per task: entropy / log H, mean weight per kind and task."""
    from crab_core.interpret.capture import capture_routing
    from crab_core.model.crab import CrabSample
    from crab_core.training.collate import collate

    model.eval()
    heads = model.config.lora.num_heads
    by_kind: dict[str, list[np.ndarray]] = {}
    by_task: dict[str, np.ndarray] = {}
    ent = []
    for task in SCORED:
        chunk = [it for it in items if it.task == task][:per_task]
        batch = collate(chunk)
        media = [None] * len(chunk)
        for g in batch.groups:
            for i, e in zip(g.index, model.encode_media_batch(g.video, g.audio, g.image, False)):
                media[i] = e
        samples = [CrabSample(input_ids=it.prompt_ids, media=m, task=it.task) for it, m in zip(chunk, media)]
        with capture_routing(model) as rec:
            gen = model.generate(samples, max_new_tokens=48)
        ws = []
        for i in range(len(chunk)):
            n = int(gen.decode.lengths[i])
            tr = rec.trace(gen.batch, gen.decode.sequences[i, :n].tolist(), index=i)
            w = np.nanmean(tr.weights, axis=(1, 2))  # (N, H) mean over layers and projections
            ws.append(w)
            for kind in set(tr.kinds.tolist()):
                by_kind.setdefault(kind, []).append(w[tr.kinds == kind])
        w = np.concatenate(ws)
        by_task[task] = w.mean(0)
        p = np.clip(w, 1e-12, 1.0)
        ent.append(-(p * np.log(p)).sum(-1) / (np.log(heads) if heads > 1 else 1.0))
    return {
        "heads": heads,
        "entropy": float(np.concatenate(ent).mean()),
        "by_kind": {k: np.concatenate(v).mean(0).round(4).tolist() for k, v in by_kind.items()},
        "by_task": {k: v.round(4).tolist() for k, v in by_task.items()},
    }


# ------------------------------------------------------------------------------------ jobs
def _trainer(recipe: Recipe, folder: Path, cache: Path):
    from crab_core.training.trainer import Trainer, default_accelerator

    t = Trainer(recipe, folder, accelerator=default_accelerator(cpu=True), progress=False, cache_dir=cache)
    t.setup()
    return t


def run_base(proto: Protocol, seed: int, out: Path) -> Path:
    """Train (or resume) the shared starting point of ``seed``; returns its state file."""
    folder = out / f"seed{seed}" / "base"
    state = folder / "module.pt"
    if state.is_file():
        return state
    t = _trainer(base_recipe(proto, seed), folder, out / "cache")
    t0 = time.perf_counter()
    t.train(resume=(folder / "checkpoint" / "trainer_state.json").is_file())
    torch.save({k: v.detach().clone() for k, v in t.module.state_dict().items()}, folder / "module.tmp")
    (folder / "module.tmp").rename(state)
    (folder / "vocab.json").write_text(json.dumps(t.tokenizer.hf.get_vocab(), sort_keys=True))
    log.info("seed %d: base trained in %.1f min", seed, (time.perf_counter() - t0) / 60)
    return state


def run_arm(proto, seed, arm, task, out: Path, shared: dict) -> dict:
    """Train one arm (or one task of the single-task arm) from the seed's base, score it."""
    folder = out / f"seed{seed}" / arm / (task or "")
    done = folder / "result.json"
    if done.is_file():
        return json.loads(done.read_text())
    recipe = arm_recipe(proto, seed, arm, task)
    t = _trainer(recipe, folder, out / "cache")
    base_vocab = json.loads((out / f"seed{seed}" / "base" / "vocab.json").read_text())
    if t.tokenizer.hf.get_vocab() != base_vocab:
        raise RuntimeError("the arm's tokenizer differs from the base's: the protocol is not deterministic")
    state = torch.load(shared["base_state"], map_location="cpu", weights_only=True)
    state = {k: v for k, v in state.items() if "lora_" not in k}  # untrained (B = 0) before instruct
    missing, unexpected = t.module.load_state_dict(state, strict=False)
    stray = [k for k in [*missing, *unexpected] if "lora_" not in k]
    if stray:
        raise RuntimeError(f"base state does not fit the arm's model beyond its adapter: {stray[:5]}")
    if shared.get("features") is not None:
        t.features = shared["features"]
    t0 = time.perf_counter()
    t.train(resume=(folder / "checkpoint" / "trainer_state.json").is_file())
    train_s = time.perf_counter() - t0
    shared["features"] = t.features
    if "test" not in shared:
        from crab_core.training.cli import test_items

        size = recipe.model.vision.image_size
        shared["test"] = test_items(
            t.tokenizer, size, "test", proto.eval_per_task, seed=proto.eval_seed, tasks=list(SCORED)
        )
    items = [it for it in shared["test"] if task is None or it.task == task]
    t0 = time.perf_counter()
    res = score_items(t.model, t.tokenizer, items)
    res.update(
        seed=seed,
        arm=arm,
        task=task,
        steps=recipe.phases[0].steps,
        lora={"r": recipe.model.lora.r, "num_heads": recipe.model.lora.num_heads},
        adapter_params=adapter_params(t.model, recipe.model.lora.num_heads),
        train_s=round(train_s, 1),
        eval_s=round(time.perf_counter() - t0, 1),
        final_loss=float(np.mean([h["loss"] for h in t.history[-20:]])) if t.history else None,
    )
    if task is None and recipe.model.lora.num_heads > 1:
        res["router"] = router_stats(t.model, items, proto.router_items)
    done.write_text(json.dumps(res, indent=1))
    log.info("seed %d %s%s: %s", seed, arm, f"/{task}" if task else "", json.dumps(res["corpus"]))
    return res


def _commit() -> str:
    """The git commit the jobs ran on (recorded with the results)."""
    import subprocess

    root = Path(__file__).resolve().parents[1]
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=10
        )
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "crab_core", "benchmarks"],
            cwd=root,
            capture_output=True,
            text=True,
            timeout=10,
        )
        return out.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def run(proto: Protocol, out: Path, arms=ARMS) -> None:
    """Every job of the protocol, seed by seed (finished jobs are skipped)."""
    (out / "protocol.json").parent.mkdir(parents=True, exist_ok=True)
    (out / "protocol.json").write_text(
        json.dumps({**dataclasses.asdict(proto), "commit": _commit()}, indent=1)
    )
    for seed in proto.seeds:
        shared = {"base_state": run_base(proto, seed, out)}
        for arm in arms:
            for task in SCORED if arm == "single-task" else [None]:
                run_arm(proto, seed, arm, task, out, shared)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default="runs/ilora-ablation", help="job folders (resumable)")
    p.add_argument("--results", default="benchmarks/results/ilora_ablation", help="report path stem")
    p.add_argument("--smoke", action="store_true", help="a minutes-long miniature of every arm (CI)")
    p.add_argument("--seeds", help="comma-separated seeds (default: the protocol's)")
    p.add_argument("--report-only", action="store_true", help="only aggregate finished jobs")
    p.add_argument("--threads", type=int, default=2)
    a = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("accelerate").setLevel(logging.WARNING)
    torch.set_num_threads(a.threads)
    proto = SMOKE if a.smoke else FULL
    if a.seeds:
        proto = dataclasses.replace(proto, seeds=tuple(int(s) for s in a.seeds.split(",")))
    out = Path(a.out)
    if not a.report_only:
        run(proto, out)
    from ilora_ablation_report import write_report

    paths = write_report(out, Path(a.results), proto)
    log.info("report: %s", ", ".join(str(x) for x in paths))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
