"""The trainer: recipe phases on ``accelerate`` (CPU, one GPU, DDP / FSDP / DeepSpeed via
``accelerate launch``).

Per phase: freeze all but the phase's components, one AdamW parameter group per component,
linear warmup + linear decay, gradient accumulation (``accelerator.accumulate``), bf16 autocast
on GPU, mixed-task micro-batches drawn deterministically from ``(seed, phase, step, micro-step)``
(so the data position is the step number), a JSONL metrics log, tqdm bars, periodic evaluation
and checkpoints (model, optimizer, RNG via ``accelerator.save_state``; phase, step, scheduler and
the whole recipe in ``trainer_state.json``) that resume to an identical continuation. A checkpoint
is swapped in by renames, so a crash at any point leaves a complete one
(:mod:`crab_core.training.checkpointing`); resuming with a different recipe configuration is refused
with the differences listed. Under FSDP, clipping, evaluation and export go through the sharded
model (:mod:`crab_core.training.distributed`).

Example:
    >>> trainer = Trainer(get_recipe("crab-tiny"), "runs/tiny")  # doctest: +SKIP
    >>> trainer.setup(); trainer.train(); trainer.export("runs/tiny/model")  # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from pathlib import Path

import numpy as np
import torch
from accelerate import Accelerator
from accelerate.utils import set_seed

from ..errors import CheckpointError
from . import checkpointing as ckpt
from .checkpointing import CKPT_DIR, STATE_FILE
from .collate import Batch, collate
from .data import LABELS_VERSION, cached_synth, data_seeds, read_manifest, tokenize_item
from .distributed import (
    check_supported,
    clip_parameters,
    default_accelerator,
    full_state_dict,
    is_fsdp,
    mean_over_processes,
)
from .features import compute_features
from .flags import FlagTokens
from .layouts import apply_layouts
from .module import CrabTrainModule, build_train_module
from .recipe import Phase, Recipe
from .variants import add_question_variants

log = logging.getLogger(__name__)

__all__ = ["CKPT_DIR", "STATE_FILE", "Trainer", "default_accelerator"]

METRICS_FILE = "metrics.jsonl"


def _lr_lambda(steps: int, warmup_ratio: float):
    warm = max(1, int(round(warmup_ratio * steps)))

    def f(s: int) -> float:
        if s < warm:
            return (s + 1) / warm
        return max(0.0, (steps - s) / max(1, steps - warm))

    return f


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
        snapshot_every: also export the model every N steps of each ``lm`` phase (and at its end) to
            ``out_dir/snapshots/<phase>-<step>/`` (learning curves; 0 = off).
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
        snapshot_every: int = 0,
    ) -> None:
        self.recipe = recipe
        self.out = Path(out_dir)
        self.acc = accelerator or default_accelerator()
        self.max_s = None if max_minutes is None else max_minutes * 60.0
        self.eval_every = recipe.eval_every if eval_every is None else eval_every
        self.progress = progress and self.acc.is_main_process
        self.cache_dir = Path(cache_dir) if cache_dir is not None else self.out / "cache"
        self.snapshot_every = snapshot_every
        self.features: dict | None = None
        self.elapsed = 0.0
        self.history: list[dict] = []
        self._t0 = time.perf_counter()
        self._wrapped: torch.nn.Module | None = None  # the module as prepared for the current phase
        self._plain: CrabTrainModule | None = None  # FSDP: an unsharded copy for evaluation / export
        check_supported(self.acc)

    # ------------------------------------------------------------------ setup
    def setup(self) -> None:
        """Tokenizer, model (+ tower heads), training and validation data."""
        from ..tokenizer import CrabTokenizer, task_corpus

        r, cfg = self.recipe, self.recipe.model
        set_seed(r.seed)
        self.out.mkdir(parents=True, exist_ok=True)
        self.tokenizer = CrabTokenizer.train_bpe(task_corpus(samples_per_task=r.tokenizer_samples), cfg)
        self.module = self._new_module()
        self.raws = self._load_data("train", r.data.synth_per_task, with_labels=True)
        self.raws += add_question_variants(self.raws, r.data.avqa_questions, r.data.avqa_variant_types)
        self.raws += add_question_variants(self.raws, r.data.avqa_checked_questions, "checked")
        self.raws = apply_layouts(self.raws, r.data.avvp_layout, r.data.avqa_layout)
        for path in r.data.manifests:
            self.raws += read_manifest(path, cfg.vision.image_size)
        self.items = [tokenize_item(x, self.tokenizer) for x in self.raws]
        self.by_task: dict[str, list[int]] = {}
        for i, it in enumerate(self.items):
            self.by_task.setdefault(it.task, []).append(i)
        val = self._load_data("val", r.data.val_per_task, with_labels=False) if r.data.val_per_task else []
        val = apply_layouts(val, r.data.avvp_layout, r.data.avqa_layout)
        self.val_items = [tokenize_item(x, self.tokenizer) for x in val]
        log.info("training items: %s", {t: len(v) for t, v in self.by_task.items()})

    def _new_module(self) -> CrabTrainModule:
        """A freshly initialised model (+ tower heads) on the accelerator's device (seeds the global RNG)."""
        return build_train_module(self.recipe).to(self.acc.device)

    def _module_copy(self, state: dict[str, torch.Tensor]) -> CrabTrainModule:
        """A plain module holding ``state`` (a full state dict), built without touching the training RNG."""
        devices = [self.acc.device] if self.acc.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            module = self._new_module()
        module.load_state_dict(state)
        return module

    def full_model(self, everywhere: bool = False):
        """The model with its full weights, for evaluation and export.

        Without sharding this is :attr:`model`. Under FSDP every rank must call it (it gathers the
        shards) and it returns an unsharded copy on the main process (on every rank with
        ``everywhere``), None on the others.
        """
        if self._wrapped is None or not is_fsdp(self.acc):
            return self.model
        state = full_state_dict(self.acc, self._wrapped)
        if not (everywhere or self.acc.is_main_process):
            return None
        if self._plain is None:
            self._plain = self._module_copy(state)
        else:
            self._plain.load_state_dict(state)
        return self._plain.model.eval()

    @property
    def model(self):
        return self.module.model

    def _load_data(self, split: str, per_task: int, with_labels: bool):
        d, size = self.recipe.data, self.recipe.model.vision.image_size
        pairs = data_seeds(d, list(self.recipe.tasks), split, per_task)
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
    def micro_batch(
        self, phase_index: int, step: int, micro: int, world: int | None = None, rank: int | None = None
    ) -> Batch:
        """This process's share of micro-batch ``micro`` of optimizer step ``step`` (deterministic).

        ``world`` / ``rank`` default to the accelerator's; given, they pick the share rank ``rank``
        of a ``world``-process run would get (a single-process reference of a distributed run).
        """
        p = self.recipe.phases[phase_index]
        tasks = [t for t, w in p.tasks.items() if w > 0 and self.by_task.get(t)]
        w = np.array([p.tasks[t] for t in tasks], dtype=np.float64)
        rng = np.random.default_rng([self.recipe.seed, phase_index, step, micro])
        world = self.acc.num_processes if world is None else world
        rank = self.acc.process_index if rank is None else rank
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
        if self._wrapped is not None and is_fsdp(acc):
            # FSDP fixed the last phase's trainable set and wrapping: wrap a fresh, full copy
            self.module = self._module_copy(full_state_dict(acc, self._wrapped))
            self._wrapped = None
        self.module.objective, self.module.mask_loss, self.module.text_only = (
            p.objective,
            p.mask_loss,
            p.text_only,
        )
        self.module.probe_weight, self.module.seg_probe_weight = p.probe_weight, p.seg_probe_weight
        self.module.seg_swap_weight, self.module.lm_weighting = p.seg_swap_weight, p.lm_weighting
        self.module.flag_weight = p.flag_weight
        if p.flag_weight > 0 and self.module.flag_tokens is None:
            self.module.flag_tokens = FlagTokens.from_tokenizer(self.tokenizer)
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
        self._wrapped = wrapped
        step = 0
        if state is not None:
            acc.load_state(str(ckpt.paths(self.out)[0]))
            sched.load_state_dict(state["scheduler"])
            step = state["step"]
        if p.frozen_towers and p.objective == "lm" and self.features is None:
            towers = self.full_model(everywhere=True)  # a collective under FSDP: not inside the next
            with acc.main_process_first():
                self.features = compute_features(towers, self.raws, progress=self.progress)
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
                        acc.clip_grad_norm_(clip_parameters(acc, wrapped), p.max_grad_norm)
                    opt.step()
                    opt.zero_grad(set_to_none=True)
                for k, v in out.items():
                    if v is not None:
                        sums[k] = sums.get(k, 0.0) + float(v.detach()) / p.grad_accum
                seen += len(batch)
            sched.step()
            step += 1
            sums = mean_over_processes(self.acc, sums)
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
            snap = self.snapshot_every and (step % self.snapshot_every == 0 or step == p.steps)
            if snap and p.objective == "lm":
                self.export(self.out / "snapshots" / f"{p.name}-{step:05d}", {"phase": p.name, "step": step})
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

    # ------------------------------------------------------------------ checkpoints
    def save_checkpoint(self, phase_index: int, step: int, sched) -> Path:
        """Model, optimizer and RNG states (accelerate) plus phase, step, scheduler, loss history and
        the recipe, written to a new folder and swapped in by renames (:mod:`.checkpointing`)."""
        acc = self.acc
        tmp = ckpt.paths(self.out)[1]
        if acc.is_main_process:
            ckpt.prepare_tmp(self.out)
        acc.wait_for_everyone()
        acc.save_state(str(tmp), safe_serialization=True)
        acc.wait_for_everyone()
        if acc.is_main_process:
            self.elapsed = time.perf_counter() - self._t0
            state = {
                "recipe": self.recipe.name,
                "recipe_config": self.recipe.to_dict(),
                "phase": phase_index,
                "phase_name": self.recipe.phases[phase_index].name,
                "step": step,
                "scheduler": sched.state_dict(),
                "elapsed_s": self.elapsed,
                "history": self.history,
            }
            ckpt.write_state(tmp, state)
            ckpt.swap_in(self.out)
        acc.wait_for_everyone()
        return ckpt.paths(self.out)[0]

    def _read_state(self) -> dict:
        """The state of the newest complete checkpoint (repairing what a crashed save left), checked
        against this trainer's recipe."""
        if self.acc.is_main_process:
            ckpt.recover(self.out)
        self.acc.wait_for_everyone()
        final = ckpt.paths(self.out)[0]
        state = ckpt.read_state(final)
        if state is None:
            raise CheckpointError(f"{final / STATE_FILE}: no checkpoint to resume from")
        ckpt.check_recipe(state, self.recipe.name, self.recipe.to_dict(), final)
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
        model = self.full_model()  # every rank: a collective under FSDP
        if self.acc.is_main_process and items:
            res = evaluate_items(model, self.tokenizer, items)
            self._log({"eval": tag, **{k: v for k, v in res.items() if not isinstance(v, dict)}})
        self.acc.wait_for_everyone()
        return res

    def export(self, folder: str | Path, extra: dict | None = None) -> Path:
        """Write the model in ``save_pretrained`` format (every rank calls it, the main one writes)."""
        from ..checkpoint.pretrained import save_pretrained

        card = {
            "recipe": self.recipe.to_dict(),
            "train_time_s": round(time.perf_counter() - self._t0, 1),
            **(extra or {}),
        }
        card["recipe"]["model"] = self.recipe.model.name
        model = self.full_model()
        if self.acc.is_main_process:
            modes = {m: m.training for m in model.modules()}  # a snapshot mid-run keeps them
            save_pretrained(model.eval(), self.tokenizer, folder, extra=card)
            for m, mode in modes.items():
                m.train(mode)
        self.acc.wait_for_everyone()
        return Path(folder)
