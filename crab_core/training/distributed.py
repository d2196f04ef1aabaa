"""What the trainer does differently when ``accelerate`` shards the model (FSDP).

Under DDP / DeepSpeed ZeRO-2 / one process, every rank holds the whole model, so evaluation and
export read the unwrapped module. Under FSDP (version 1, ``configs/accelerate/fsdp.yaml``) the
unwrapped module's parameters are views into this rank's shard, so:

* gradient clipping goes through the wrapped module (``FSDP.clip_grad_norm_`` all-reduces the
  norm over the shards): :func:`clip_parameters` hands accelerate the wrapped module's parameters;
* evaluation and export run on a plain copy built from the gathered full state dict
  (:func:`full_state_dict`, a collective every rank enters);
* a phase that changes the trainable set wraps a fresh copy of the module, loaded from that full
  state (FSDP fixes ``requires_grad`` and the wrapping when it wraps a module).

FSDP version 2 (``fully_shard``) is refused with a clear error: the trainer is tested with version 1.
"""

from __future__ import annotations

import os

import torch
from accelerate import Accelerator
from accelerate.utils import DistributedDataParallelKwargs, DistributedType

from ..errors import ConfigError


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


def mean_over_processes(acc: Accelerator, values: dict[str, float]) -> dict[str, float]:
    """Mean of logged scalars over processes (identical logs on every rank)."""
    if acc.num_processes == 1:
        return values
    keys = sorted(values)
    t = acc.reduce(torch.tensor([values[k] for k in keys], device=acc.device), reduction="mean")
    return dict(zip(keys, t.tolist(), strict=True))


def is_fsdp(acc: Accelerator) -> bool:
    """Whether ``acc`` shards the model with FSDP."""
    return acc.distributed_type == DistributedType.FSDP


def check_supported(acc: Accelerator) -> None:
    """Raise :class:`ConfigError` for a distributed setup the trainer does not support (FSDP 2)."""
    if is_fsdp(acc) and getattr(acc, "is_fsdp2", False):
        raise ConfigError(
            "FSDP version 2 is not supported by the trainer; set fsdp_version: 1 in the accelerate "
            "config (configs/accelerate/fsdp.yaml)"
        )


def clip_parameters(acc: Accelerator, wrapped: torch.nn.Module) -> list[torch.nn.Parameter]:
    """The parameter list to pass to ``acc.clip_grad_norm_``: all of the wrapped module's parameters
    (frozen ones carry no gradient and are skipped by the norm), which is the list accelerate
    recognises to call FSDP's own sharded clipping."""
    return list(wrapped.parameters())


def full_state_dict(acc: Accelerator, wrapped: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The full (unsharded) state dict of the prepared module, on every rank (on the CPU).

    A collective under FSDP: every rank must call it. Keys are those of the unwrapped module.
    """
    if not is_fsdp(acc):
        return {k: v.detach() for k, v in acc.unwrap_model(wrapped).state_dict().items()}
    from torch.distributed.fsdp import FullStateDictConfig, StateDictType
    from torch.distributed.fsdp import FullyShardedDataParallel as FSDP

    # (offloading tensors that already live on the CPU leaves entries pointing at freed memory)
    cfg = FullStateDictConfig(offload_to_cpu=acc.device.type != "cpu", rank0_only=False)
    with FSDP.state_dict_type(wrapped, StateDictType.FULL_STATE_DICT, cfg):
        sd = wrapped.state_dict()
    return {k: v.detach().clone() for k, v in sd.items()}
