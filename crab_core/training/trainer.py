"""The trainer: recipe phases on ``accelerate`` (CPU, one GPU, DDP / FSDP / DeepSpeed via
``accelerate launch``).

Per phase: freeze all but the phase's components, one AdamW parameter group per component,
linear warmup + linear decay, gradient accumulation (``accelerator.accumulate``), bf16 autocast
on GPU, mixed-task micro-batches drawn deterministically from ``(seed, phase, step, micro-step)``
(so the data position is the step number), a JSONL metrics log, tqdm bars, periodic evaluation
and checkpoints (model, optimizer, RNG via ``accelerator.save_state``; phase, step and scheduler
in ``trainer_state.json``) that resume to an identical continuation.

Example:
    >>> trainer = Trainer(get_recipe("crab-tiny"), "runs/tiny")  # doctest: +SKIP
    >>> trainer.setup(); trainer.train(); trainer.export("runs/tiny/model")  # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import time
from pathlib import Path

import numpy as np
import torch
from accelerate import Accelerator
from accelerate.utils import DistributedDataParallelKwargs, set_seed

from ..errors import CheckpointError
from .collate import Batch, collate
from .data import LABELS_VERSION, cached_synth, read_manifest, synth_seeds, tokenize_item
from .features import compute_features
from .module import CrabTrainModule
from .probes import MediaProbes, SegTokenProbe
from .recipe import Phase, Recipe
from .towers import TowerHeads

log = logging.getLogger(__name__)

CKPT_DIR = "checkpoint"
STATE_FILE = "trainer_state.json"
METRICS_FILE = "metrics.jsonl"


def _lr_lambda(steps: int, warmup_ratio: float):
    warm = max(1, int(round(warmup_ratio * steps)))

    def f(s: int) -> float:
        if s < warm:
            return (s + 1) / warm
        return max(0.0, (steps - s) / max(1, steps - warm))

    return f


def default_accelerator(cpu: bool | None = None) -> Accelerator:
    """An Accelerator with bf16 on GPU (unless ``accelerate launch`` configured precision) and DDP
    set to tolerate parameters a mixed-task step does not use."""
    kw = {}
    if "ACCELERATE_MIXED_PRECISION" not in os.environ:
        kw["mixed_precision"] = (
            "bf16" if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else "no"
        )
    return Accelerator(
        cpu=bool(cpu), kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=True)], **kw
    )


class Trainer:
    """Runs a :class:`Recipe` and writes logs / checkpoints / the final model under ``out_dir``.

    Args:
        recipe: what to train.
        out_dir: output folder (``metrics.jsonl``, ``checkpoint/``, ``model/``, ``cache/``).
        accelerator: optional prepared :class:`accelerate.Accelerator` (default: :func:`default_accelerator`).
        max_minutes: stop (after a checkpoint) when this wall time is exceeded; resume later.
        eval_every: override the recipe's evaluation period (optimizer steps; 0 = off).
        progress: show tqdm bars (main process).
        cache_dir: where rendered SynthAV tensors are cached (default ``out_dir/cache``).
    """

    def __init__(
        self,
        recipe: Recipe,
        out_dir: str | Path,
        accelerator: Accelerator | None = None,
        max_minutes: float | None = None,
        eval_every: int | None = None,
        progress: bool = True,
        cache_dir: str | Path | None = None,
    ) -> None:
        self.recipe = recipe
        self.out = Path(out_dir)
        self.acc = accelerator or default_accelerator()
        self.max_s = None if max_minutes is None else max_minutes * 60.0
        self.eval_every = recipe.eval_every if eval_every is None else eval_every
        self.progress = progress and self.acc.is_main_process
        self.cache_dir = Path(cache_dir) if cache_dir is not None else self.out / "cache"
        self.features: dict | None = None
        self.elapsed = 0.0
        self.history: list[dict] = []
        self._t0 = time.perf_counter()

    # ------------------------------------------------------------------ setup
    def setup(self) -> None:
        """Tokenizer, model (+ tower heads), training and validation data."""
        from ..model.builder import build_model
        from ..tokenizer import CrabTokenizer, task_corpus

        r, cfg = self.recipe, self.recipe.model
        set_seed(r.seed)
        self.out.mkdir(parents=True, exist_ok=True)
        self.tokenizer = CrabTokenizer.train_bpe(task_corpus(samples_per_task=r.tokenizer_samples), cfg)
        model = build_model(cfg, seed=r.seed)
        probes = MediaProbes(
            cfg.llm.hidden_size, cfg.vl_qformer.num_query_tokens, cfg.al_qformer.num_query_tokens
        )
        # only built when a phase uses it (keeps the other recipes' init and checkpoints unchanged)
        seg_probe = (
            SegTokenProbe(cfg.llm.hidden_size, cfg.seg.num_seg_tokens)
            if any(p.seg_probe_weight > 0 for p in r.phases)
            else None
        )
        heads = TowerHeads(
            cfg.vision.hidden_size,
            cfg.audio.encoder_embed_dim,
            cfg.vision.patch_size,
            probes=probes,
            seg_probe=seg_probe,
        )
        self.module = CrabTrainModule(model, heads).to(self.acc.device)
        self.raws = self._load_data("train", r.data.synth_per_task, with_labels=True)
        for path in r.data.manifests:
            self.raws += read_manifest(path, cfg.vision.image_size)
        self.items = [tokenize_item(x, self.tokenizer) for x in self.raws]
        self.by_task: dict[str, list[int]] = {}
        for i, it in enumerate(self.items):
            self.by_task.setdefault(it.task, []).append(i)
        val = self._load_data("val", r.data.val_per_task, with_labels=False) if r.data.val_per_task else []
        self.val_items = [tokenize_item(x, self.tokenizer) for x in val]
        log.info("training items: %s", {t: len(v) for t, v in self.by_task.items()})

    @property
    def model(self):
        return self.module.model

    def _load_data(self, split: str, per_task: int, with_labels: bool):
        d, size = self.recipe.data, self.recipe.model.vision.image_size
        pairs = synth_seeds(split, list(self.recipe.tasks), per_task, d.user_seed)
        key = hashlib.sha1(json.dumps([pairs, size, with_labels, LABELS_VERSION]).encode()).hexdigest()[:12]
        with self.acc.main_process_first():
            return cached_synth(
                self.cache_dir / f"{split}-{key}.pt",
                pairs,
                size,
                d.workers,
                with_labels,
                progress=self.progress,
            )

    # ------------------------------------------------------------------ data position
    def micro_batch(self, phase_index: int, step: int, micro: int) -> Batch:
        """This process's share of micro-batch ``micro`` of optimizer step ``step`` (deterministic)."""
        p = self.recipe.phases[phase_index]
        tasks = [t for t, w in p.tasks.items() if w > 0 and self.by_task.get(t)]
        w = np.array([p.tasks[t] for t in tasks], dtype=np.float64)
        rng = np.random.default_rng([self.recipe.seed, phase_index, step, micro])
        world, rank = self.acc.num_processes, self.acc.process_index
        picks = rng.choice(len(tasks), size=p.batch_size * world, p=w / w.sum())
        idx = [self.by_task[tasks[c]][int(rng.integers(len(self.by_task[tasks[c]])))] for c in picks]
        mine = [self.items[i] for i in idx[rank::world]]
        return collate(mine, self.features if p.frozen_towers else None, media=not p.text_only)

    # ------------------------------------------------------------------ train
    def train(self, resume: bool = False) -> bool:
        """Run (or resume) every phase. Returns True when finished, False when stopped by ``max_minutes``."""
        state = self._read_state() if resume else None
        start_phase = state["phase"] if state else 0
        if state:
            self.elapsed = state.get("elapsed_s", 0.0)
            self.history = state.get("history", [])
        self._t0 = time.perf_counter() - self.elapsed
        for pi in range(start_phase, len(self.recipe.phases)):
            if not self._run_phase(pi, state if state and pi == start_phase else None):
                return False
        return True

    def _optimizer(self, p: Phase):
        groups: dict[str, list] = {}
        from .module import component_of

        for name, prm in self.module.named_parameters():
            if prm.requires_grad:
                groups.setdefault(component_of(name), []).append(prm)
        params = [
            {"params": v, "lr": p.lr * p.lr_scale.get(k, 1.0), "name": k} for k, v in sorted(groups.items())
        ]
        opt = torch.optim.AdamW(params, lr=p.lr, weight_decay=p.weight_decay)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, _lr_lambda(p.steps, p.warmup_ratio))
        return opt, sched

    def _run_phase(self, pi: int, state: dict | None) -> bool:
        p, acc = self.recipe.phases[pi], self.acc
        self.module.objective, self.module.mask_loss, self.module.text_only = (
            p.objective,
            p.mask_loss,
            p.text_only,
        )
        self.module.probe_weight, self.module.seg_probe_weight = p.probe_weight, p.seg_probe_weight
        self.module.seg_swap_weight = p.seg_swap_weight
        if self.model.seg_module is not None:  # a training option of the mask loss, not of the model
            self.model.seg_module.avss_balance = p.avss_balance
        counts = self.module.set_trainable(p.trainable)
        log.info("phase %s: %d steps, trainable %s", p.name, p.steps, counts)
        self.module.train()
        if not ({"visual_encoder", "audio_encoder"} & set(p.trainable)):
            self.model.visual_encoder.eval()
            self.model.audio_encoder.eval()
        else:
            self.features = None
        opt, sched = self._optimizer(p)
        acc.gradient_accumulation_steps = p.grad_accum
        wrapped, opt = acc.prepare(self.module, opt)
        step = 0
        if state is not None:
            acc.load_state(str(self.out / CKPT_DIR))
            sched.load_state_dict(state["scheduler"])
            step = state["step"]
        if p.frozen_towers and p.objective == "lm" and self.features is None:
            with acc.main_process_first():
                self.features = compute_features(self.model, self.raws, progress=self.progress)
        finished = self._loop(pi, p, wrapped, opt, sched, step)
        acc.free_memory()
        return finished

    def _loop(self, pi, p: Phase, wrapped, opt, sched, step: int) -> bool:
        from tqdm import tqdm

        acc = self.acc
        bar = tqdm(total=p.steps, initial=step, desc=p.name, disable=not self.progress)
        tick, seen = time.perf_counter(), 0
        while step < p.steps:
            sums: dict[str, float] = {}
            for micro in range(p.grad_accum):
                batch = self.micro_batch(pi, step, micro)
                with acc.accumulate(wrapped):
                    out = wrapped(batch)
                    acc.backward(out["loss"])
                    if acc.sync_gradients and p.max_grad_norm > 0:
                        acc.clip_grad_norm_(
                            [q for q in self.module.parameters() if q.requires_grad], p.max_grad_norm
                        )
                    opt.step()
                    opt.zero_grad(set_to_none=True)
                for k, v in out.items():
                    if v is not None:
                        sums[k] = sums.get(k, 0.0) + float(v.detach()) / p.grad_accum
                seen += len(batch)
            sched.step()
            step += 1
            sums = self._reduce(sums)
            bar.update(1)
            bar.set_postfix(loss=f"{sums['loss']:.3f}")
            self.history.append({"phase": p.name, "step": step, "loss": sums["loss"]})
            if step % self.recipe.log_every == 0 or step == p.steps:
                now = time.perf_counter()
                self._log(
                    {
                        "phase": p.name,
                        "step": step,
                        **{k: round(v, 5) for k, v in sums.items()},
                        "lr": sched.get_last_lr()[0],
                        "samples_per_s": round(seen / max(now - tick, 1e-9), 2),
                        "elapsed_s": round(now - self._t0, 1),
                    }
                )
                tick, seen = now, 0
            if self.eval_every and step % self.eval_every == 0 and p.objective == "lm":
                self.run_eval(tag=f"{p.name}@{step}")
            over = self.max_s is not None and time.perf_counter() - self._t0 > self.max_s
            if step % self.recipe.checkpoint_every == 0 or step == p.steps or over:
                self.save_checkpoint(pi, step, sched)
            if over and step < p.steps:
                log.info(
                    "time limit reached in phase %s at step %d: checkpoint saved, resume with --resume",
                    p.name,
                    step,
                )
                bar.close()
                return False
        bar.close()
        return True

    def _reduce(self, sums: dict[str, float]) -> dict[str, float]:
        """Mean of the logged values over processes (identical logs on every rank)."""
        if self.acc.num_processes == 1:
            return sums
        keys = sorted(sums)
        t = self.acc.reduce(torch.tensor([sums[k] for k in keys], device=self.acc.device), reduction="mean")
        return dict(zip(keys, t.tolist(), strict=True))

    # ------------------------------------------------------------------ checkpoints
    def save_checkpoint(self, phase_index: int, step: int, sched) -> Path:
        """Model, optimizer and RNG states (accelerate) plus phase, step, scheduler and loss history."""
        acc, final = self.acc, self.out / CKPT_DIR
        tmp = self.out / (CKPT_DIR + ".tmp")
        if acc.is_main_process and tmp.exists():
            shutil.rmtree(tmp)
        acc.wait_for_everyone()
        acc.save_state(str(tmp), safe_serialization=True)
        if acc.is_main_process:
            self.elapsed = time.perf_counter() - self._t0
            state = {
                "recipe": self.recipe.name,
                "phase": phase_index,
                "phase_name": self.recipe.phases[phase_index].name,
                "step": step,
                "scheduler": sched.state_dict(),
                "elapsed_s": self.elapsed,
                "history": self.history,
            }
            (tmp / STATE_FILE).write_text(json.dumps(state))
            if final.exists():
                shutil.rmtree(final)
            tmp.rename(final)
        acc.wait_for_everyone()
        return final

    def _read_state(self) -> dict:
        path = self.out / CKPT_DIR / STATE_FILE
        if not path.is_file():
            raise CheckpointError(f"{path}: no checkpoint to resume from")
        state = json.loads(path.read_text())
        if state.get("recipe") != self.recipe.name:
            raise CheckpointError(
                f"checkpoint is from recipe {state.get('recipe')!r}, not {self.recipe.name!r}"
            )
        return state

    # ------------------------------------------------------------------ logs, eval, export
    def _log(self, row: dict) -> None:
        if not self.acc.is_main_process:
            return
        with (self.out / METRICS_FILE).open("a", encoding="utf-8") as fh:
            fh.write(json.dumps(row) + "\n")
        log.info("%s", row)

    def run_eval(self, tag: str = "eval", items=None) -> dict:
        """Quick metrics on the validation items (main process; others wait)."""
        from .evaluate import evaluate_items

        res: dict = {}
        items = self.val_items if items is None else items
        if self.acc.is_main_process and items:
            res = evaluate_items(self.model, self.tokenizer, items)
            self._log({"eval": tag, **{k: v for k, v in res.items() if not isinstance(v, dict)}})
        self.acc.wait_for_everyone()
        return res

    def export(self, folder: str | Path, extra: dict | None = None) -> Path:
        """Write the trained model in ``save_pretrained`` format (main process)."""
        from ..checkpoint.pretrained import save_pretrained

        card = {
            "recipe": self.recipe.to_dict(),
            "train_time_s": round(time.perf_counter() - self._t0, 1),
            **(extra or {}),
        }
        card["recipe"]["model"] = self.recipe.model.name
        if self.acc.is_main_process:
            self.model.eval()
            save_pretrained(self.model, self.tokenizer, folder, extra=card)
        self.acc.wait_for_everyone()
        return Path(folder)
