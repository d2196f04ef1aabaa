"""Run by the distributed-training tests: :func:`dist_recipe` trained by ``accelerate launch`` (DDP
or FSDP, two CPU processes), or as the single-process reference of the same global batch.

    python -m tests.training._dist_run OUT CACHE [reference | fsdp]

``fsdp`` shards the model with FSDP as ``configs/accelerate/fsdp.yaml`` does (version 1, full
shard, one unit per transformer layer) over the gloo processes: accelerate turns FSDP on only for
GPU process groups, so the runner sets its distributed type and plugin itself (torch's FSDP runs on
CPU with gloo).

Writes ``OUT/model`` (the exported model) and ``OUT/run.json``: process count, distributed type,
loss history, the trainer's evaluation of a few items (``run_eval``, on the full weights) and the
same evaluation of the exported model loaded back.
"""

import contextlib
import json
import os
import sys

import torch
from accelerate import Accelerator, FullyShardedDataParallelPlugin, PartialState
from accelerate.utils import DistributedType
from torch.distributed.fsdp import FullyShardedDataParallel as FSDP

from crab_core.checkpoint.pretrained import load_pretrained
from crab_core.training.evaluate import evaluate_items
from crab_core.training.trainer import Trainer, default_accelerator
from tests.training.conftest_recipes import dist_recipe

WORLD = 2


class ReferenceTrainer(Trainer):
    """One process doing what ``WORLD`` processes do together: its micro-step ``m`` of a step is the
    share of rank ``m % WORLD`` of the distributed micro-step ``m // WORLD`` (its recipe accumulates
    ``WORLD`` times as many micro-steps)."""

    def micro_batch(self, phase_index, step, micro, world=None, rank=None):
        return super().micro_batch(phase_index, step, micro // WORLD, world=WORLD, rank=micro % WORLD)


_state_dict_type = FSDP.state_dict_type


@contextlib.contextmanager
def _cpu_state_dict_type(module, state_dict_type, state_dict_config=None, optim_state_dict_config=None):
    """``FSDP.state_dict_type`` with ``offload_to_cpu`` off: accelerate turns it on for multi-process
    saves, and on CPU ranks torch's FSDP then clones state-dict entries from freed memory (segfault)."""
    for cfg in (state_dict_config, optim_state_dict_config):
        if cfg is not None and hasattr(cfg, "offload_to_cpu"):
            cfg.offload_to_cpu = False
    with _state_dict_type(module, state_dict_type, state_dict_config, optim_state_dict_config):
        yield


def cpu_fsdp_accelerator() -> Accelerator:
    """An accelerator for FSDP over CPU processes (gloo), as ``configs/accelerate/fsdp.yaml`` asks on GPUs."""
    FSDP.state_dict_type = staticmethod(_cpu_state_dict_type)
    os.environ["ACCELERATE_TORCH_DEVICE"] = "cpu"  # FSDP wants "cpu", accelerate would say "cpu:0"
    acc = default_accelerator(cpu=True)
    assert acc.distributed_type == DistributedType.MULTI_CPU, acc.distributed_type
    acc.state.fsdp_plugin = FullyShardedDataParallelPlugin(
        fsdp_version=1,
        sharding_strategy="FULL_SHARD",
        auto_wrap_policy="transformer_based_wrap",
        transformer_cls_names_to_wrap=["LlamaDecoderLayer", "CLIPEncoderLayer"],
        state_dict_type="FULL_STATE_DICT",
        use_orig_params=True,
        sync_module_states=False,  # needs GPUs; every rank builds the same seeded model
        cpu_ram_efficient_loading=False,
    )
    # AcceleratorState() copies PartialState's fields on every construction: set both
    PartialState._shared_state["distributed_type"] = DistributedType.FSDP
    acc.state.distributed_type = DistributedType.FSDP
    return acc


def main() -> None:
    out, cache, mode = sys.argv[1], sys.argv[2], (sys.argv[3:] or ["dist"])[0]
    torch.set_num_threads(1)
    reference = mode == "reference"
    cls = ReferenceTrainer if reference else Trainer
    acc = cpu_fsdp_accelerator() if mode == "fsdp" else default_accelerator(cpu=True)
    recipe = dist_recipe(accumulate=WORLD if reference else 1)
    trainer = cls(recipe, out, accelerator=acc, progress=False, cache_dir=cache)
    trainer.setup()
    assert trainer.train()
    folder = trainer.export(f"{out}/model")
    items = [next(it for it in trainer.items if it.task == t) for t in ("ave", "s4")]
    res = trainer.run_eval("final", items)
    if trainer.acc.is_main_process:
        model, tok, _ = load_pretrained(folder)
        again = evaluate_items(model, tok, items)
        row = {
            "processes": trainer.acc.num_processes,
            "distributed_type": str(trainer.acc.distributed_type),
            "wrapped": type(trainer._wrapped).__name__,
            "history": [h["loss"] for h in trainer.history],
            "eval": res["summary"],
            "eval_exported": again["summary"],
            "answers": [e["output"][:80] for t in sorted(res["tasks"]) for e in res["tasks"][t]["examples"]],
            "answers_exported": [
                e["output"][:80] for t in sorted(again["tasks"]) for e in again["tasks"][t]["examples"]
            ],
        }
        with open(f"{out}/run.json", "w") as fh:
            json.dump(row, fh)


if __name__ == "__main__":
    main()
