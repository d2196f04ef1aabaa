"""Building in bf16 allocates no float32 copy of the weights (what lets crab-7b fit in 24 GiB on CPU)."""

from __future__ import annotations

import torch
from torch.utils._python_dispatch import TorchDispatchMode

from crab_core.model.builder import build_model, materialize


class _LargestAllocation(TorchDispatchMode):
    """Largest float32 / bfloat16 tensor (numel) produced by any op on a real device."""

    def __init__(self) -> None:
        super().__init__()
        self.largest = {torch.float32: 0, torch.bfloat16: 0}

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in out if isinstance(out, (tuple, list)) else (out,):
            if isinstance(t, torch.Tensor) and t.device.type != "meta" and t.dtype in self.largest:
                self.largest[t.dtype] = max(self.largest[t.dtype], t.numel())
        return out


def _largest_param(model) -> int:
    return max(p.numel() for p in model.parameters())


def test_build_model_in_bf16_creates_no_float32_weights():
    with _LargestAllocation() as seen:
        model = build_model("crab-tiny", dtype=torch.bfloat16)
    assert {p.dtype for p in model.parameters()} == {torch.bfloat16}
    biggest = _largest_param(model)
    assert seen.largest[torch.bfloat16] >= biggest
    # before: every weight was made in float32 and then cast (the embedding table first of all)
    assert seen.largest[torch.float32] < biggest // 4
    inv = [b for n, b in model.named_buffers() if n.endswith("rotary_emb.inv_freq")]
    assert inv and all(b.dtype == torch.float32 for b in inv)
    assert torch.get_default_dtype() == torch.float32  # restored


def test_materialize_casts_on_meta_first():
    meta = build_model("crab-tiny", device="meta", seed=None)
    with _LargestAllocation() as seen:
        model = materialize(meta, "cpu", torch.bfloat16)
    assert {p.dtype for p in model.parameters()} == {torch.bfloat16}
    assert seen.largest[torch.float32] < _largest_param(model) // 4


def test_crab7b_cpu_script_runs_on_crab_tiny(tmp_path, capsys):
    """benchmarks/crab7b_cpu.py end to end at crab-tiny size (the real run is crab-7b, ~15 GiB)."""
    from benchmarks.crab7b_cpu import main

    args = ["--preset", "crab-tiny", "--min-free-gib", "0", "--threads", "1", "--out", str(tmp_path)]
    assert main(args) == 0
    md = (tmp_path / "crab7b_cpu.md").read_text()
    assert "| logits finite / generated ids | True / [" in md
    assert "generate 2 greedy tokens" in md and "peak RSS (whole run)" in md


def test_crab7b_cpu_script_refuses_without_memory(tmp_path, capsys):
    from benchmarks.crab7b_cpu import main

    assert main(["--min-free-gib", "100000", "--out", str(tmp_path)]) == 2
    assert "not started" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())
