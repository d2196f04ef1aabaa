"""Benchmark: fused I-LoRA layer vs the reference-style per-head loop at LLaMA-7B projection shapes.

The naive layer mirrors the reference forward: ``A(dropout(x))`` recomputed for every head and each
head's (..., out) contribution materialised and accumulated. Both run in eval mode (dropout off) in
float32 on CPU, on identical weights; outputs and gradients are checked with ``allclose``.
Reported: median times of the frozen base Linear, ours and naive, and the LoRA overhead ratio
``(ours - base) / (naive - base)`` (target <= 1/3). Results also go to ``benchmarks/results/ilora.md``.

Usage: ``python benchmarks/ilora.py [--seq 256] [--reps 7]``
"""

from __future__ import annotations

import argparse
import datetime
import platform
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from crab_core.model.ilora import ILoraLinear  # noqa: E402

SHAPES = [(4096, 4096), (4096, 11008), (11008, 4096)]
H, R, ALPHA = 3, 8, 16


class NaiveILora(nn.Module):
    """Reference-style I-LoRA: per-head loop, A recomputed per head."""

    def __init__(self, ours: ILoraLinear) -> None:
        super().__init__()
        self.base = ours.base_layer
        self.scaling = ours.scaling["default"]
        self.drop = ours.lora_dropout["default"]
        self.A = nn.Linear(ours.in_features, R, bias=False)
        self.route = nn.Linear(ours.in_features, H, bias=False)
        self.Bs = nn.ModuleList(nn.Linear(R, ours.out_features, bias=False) for _ in range(H))
        with torch.no_grad():
            self.A.weight.copy_(ours.lora_A["default"].weight)
            self.route.weight.copy_(ours.lora_route["default"].weight)
            for h, b in enumerate(self.Bs):
                b.weight.copy_(ours.head_weight()[h])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        result = self.base(x)
        g = F.softmax(self.route(x), dim=-1, dtype=torch.float32).to(result.dtype)
        for h, b in enumerate(self.Bs):
            result = result + g[..., h].unsqueeze(-1) * b(self.A(self.drop(x))) * self.scaling
        return result


def _fwd(mod: nn.Module, x: torch.Tensor) -> None:
    with torch.no_grad():
        mod(x)


def _fwd_bwd(mod: nn.Module, x: torch.Tensor, gy: torch.Tensor) -> None:
    x.grad = None
    for p in mod.parameters():
        p.grad = None
    mod(x).backward(gy)


def _median_times(fns: dict[str, callable], reps: int) -> dict[str, float]:
    """Interleave the candidates (reduces drift bias); 2 warm-up rounds; median seconds."""
    times: dict[str, list[float]] = {k: [] for k in fns}
    for i in range(reps + 2):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            if i >= 2:
                times[name].append(time.perf_counter() - t0)
    return {k: statistics.median(v) for k, v in times.items()}


def _check_equal(ours: ILoraLinear, naive: NaiveILora, x: torch.Tensor, gy: torch.Tensor) -> None:
    xo, xn = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
    yo, yn = ours(xo), naive(xn)
    assert torch.allclose(yo, yn, atol=1e-4, rtol=1e-4), (yo - yn).abs().max()
    yo.backward(gy)
    yn.backward(gy)
    pairs = [
        (xo.grad, xn.grad),
        (ours.lora_A["default"].weight.grad, naive.A.weight.grad),
        (ours.lora_route["default"].weight.grad, naive.route.weight.grad),
    ]
    gb = ours.lora_B["default"].weight.grad.view(ours.out_features, H, R).permute(1, 0, 2)
    pairs += [(gb[h], b.weight.grad) for h, b in enumerate(naive.Bs)]
    for a, b in pairs:
        assert torch.allclose(a, b, atol=1e-3, rtol=1e-4), (a - b).abs().max()


def bench_shape(d_in: int, d_out: int, seq: int, reps: int) -> list[dict]:
    torch.manual_seed(0)
    base = nn.Linear(d_in, d_out, bias=False).requires_grad_(False)
    ours = ILoraLinear.wrap(base, r=R, alpha=ALPHA, dropout=0.05, num_heads=H).eval()
    nn.init.normal_(ours.lora_B["default"].weight, std=0.02)
    naive = NaiveILora(ours).eval()
    x = torch.randn(1, seq, d_in)
    gy = torch.randn(1, seq, d_out)
    _check_equal(ours, naive, x, gy)
    xg = x.clone().requires_grad_(True)
    rows = []
    for mode in ("forward", "forward+backward"):
        if mode == "forward":
            fns = {k: (lambda m=m: _fwd(m, x)) for k, m in (("base", base), ("ours", ours), ("naive", naive))}
        else:
            fns = {
                k: (lambda m=m: _fwd_bwd(m, xg, gy))
                for k, m in (("base", base), ("ours", ours), ("naive", naive))
            }
        t = _median_times(fns, reps)
        ratio = (t["ours"] - t["base"]) / max(t["naive"] - t["base"], 1e-12)
        rows.append({"shape": f"{d_in}->{d_out}", "mode": mode, **t, "ratio": ratio})
    return rows


def _machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu}, {torch.get_num_threads()} threads, torch {torch.__version__}, {platform.system()}"


def _table(rows: list[dict], seq: int) -> str:
    lines = [
        f"B=1, L={seq}, H={H}, r={R}, float32, eval mode (dropout off); median ms; "
        "ratio = (ours - base) / (naive - base)",
        "",
        "| shape (in->out) | pass | base ms | ours ms | naive ms | ours overhead ms | naive overhead ms | ratio |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['shape']} | {r['mode']} | {r['base'] * 1e3:.2f} | {r['ours'] * 1e3:.2f} | "
            f"{r['naive'] * 1e3:.2f} | {(r['ours'] - r['base']) * 1e3:.2f} | "
            f"{(r['naive'] - r['base']) * 1e3:.2f} | {r['ratio']:.3f} |"
        )
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seq", type=int, default=256)
    ap.add_argument("--reps", type=int, default=9)
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "ilora.md")
    args = ap.parse_args()
    torch.set_num_threads(2)
    rows = [r for d_in, d_out in SHAPES for r in bench_shape(d_in, d_out, args.seq, args.reps)]
    table = _table(rows, args.seq)
    print(table)
    stamp = datetime.datetime.now().strftime("%Y-%m-%d %H:%M")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        f"# I-LoRA layer benchmark\n\nDate: {stamp}  \nMachine: {_machine()}  \n"
        f"Command: `python benchmarks/ilora.py --seq {args.seq} --reps {args.reps}`\n\n"
        "Outputs and gradients (input, A, B heads, router) of ours and naive checked with allclose "
        "before timing.\n\n" + table + "\n"
    )


if __name__ == "__main__":
    main()
