"""Accelerator slots for the model calls of the handlers (ZeroGPU's ``spaces.GPU`` on a Space).

:class:`app.handlers.Handlers` runs each model part (``run``, ``intervene``, ``compare`` (the head
grid), ``attention``, ``attribution``) through ``gpu(name, fn)``; the default runs ``fn`` as is. On a
ZeroGPU Space the entry (``spaces/app.py``) passes :func:`zerogpu_wrapper`, which decorates each part
once, at start-up, with ``spaces.GPU(fn, duration=...)``: ZeroGPU then runs the call in a process
that holds a GPU for at most that many seconds. A shorter request gets a better place in ZeroGPU's
queue and a call that runs over is cut, so each duration is sized from what the call does
(:class:`GpuBudget`): the task's answer budget, the number of head variants, the IG steps.

The call's arguments and its result cross a process boundary on ZeroGPU (pickled), so the parts take
and return plain data (requests, run records, dicts of arrays); handlers keep their own request
object (its upload lease) rather than the copy that comes back.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

from crab_core.tasks import get_task

#: ``gpu(name, fn) -> fn``: how a handler's model part is run.
GpuWrapper = Callable[[str, Callable], Callable]
CALLS = ("run", "intervene", "compare", "attention", "attribution")


def on_host(name: str, fn: Callable) -> Callable:
    """The default: run the model part in this process, on the model's device."""
    return fn


@dataclass(frozen=True)
class GpuBudget:
    """Seconds requested per model call; settings sized for crab-7b in bf16 (not measurements: the
    GPU numbers of issue #16 are still to come), with the request clamped to ``min_s..max_s`` (ZeroGPU
    refuses requests above a few minutes).

    Attributes:
        start_s: loading, encoding the clip and the prompt's prefill.
        token_s: one decoded token (eager decode with I-LoRA, with margin).
        mask_s: the mask decoder of a segmentation task.
        attention_s: the attention read-out of one answer.
        ig_step_s: one integrated-gradients step (forward + backward).
    """

    start_s: float = 10.0
    token_s: float = 0.06
    mask_s: float = 5.0
    attention_s: float = 30.0
    ig_step_s: float = 3.0
    min_s: float = 15.0
    max_s: float = 300.0

    def clamp(self, seconds: float) -> int:
        return int(min(self.max_s, max(self.min_s, math.ceil(seconds))))

    def run_s(self, task: str, max_new_tokens: int | None = None) -> float:
        """One generation of ``task`` (its answer budget unless ``max_new_tokens``), unclamped."""
        spec = get_task(task)
        tokens = max_new_tokens or spec.max_new_tokens
        return self.start_s + tokens * self.token_s + (self.mask_s if spec.needs_mask else 0.0)


def durations(budget: GpuBudget, num_heads: int) -> dict[str, Callable[..., int]]:
    """Per-call duration functions, called by ``spaces.GPU`` with the call's own arguments."""

    def run(req, *args, **kwargs) -> int:
        return budget.clamp(budget.run_s(req.task, req.max_new_tokens))

    def compare(record, *args, **kwargs) -> int:  # normal run cached + only/without each head + NLLs
        req = record.request
        return budget.clamp(2 * num_heads * budget.run_s(req.task, req.max_new_tokens) + budget.start_s)

    def attention(record, *args, **kwargs) -> int:
        return budget.clamp(budget.start_s + budget.attention_s)

    def attribution(record, n_steps: int = 8, *args, **kwargs) -> int:
        return budget.clamp(budget.start_s + int(n_steps) * budget.ig_step_s)

    return {
        "run": run,
        "intervene": run,
        "compare": compare,
        "attention": attention,
        "attribution": attribution,
    }


def zerogpu_wrapper(gpu_decorator: Callable, num_heads: int, budget: GpuBudget | None = None) -> GpuWrapper:
    """A :data:`GpuWrapper` that applies ``gpu_decorator`` (``spaces.GPU``) with per-call durations.

    Args:
        gpu_decorator: called as ``gpu_decorator(fn, duration=callable)``.
        num_heads: I-LoRA heads of the served model (the head grid runs ``2 * num_heads`` variants).
    """
    table = durations(budget or GpuBudget(), num_heads)

    def wrap(name: str, fn: Callable) -> Callable:
        if name not in table:
            raise ValueError(f"unknown model call {name!r} (known: {', '.join(CALLS)})")
        return gpu_decorator(fn, duration=table[name])

    return wrap
