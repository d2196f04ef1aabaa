"""crab-7b geometry with random weights in bf16 on one GPU: forward latency, memory, decode speed.

AVQA-sized request: 10 frames, 10 audio windows of 2 s, ~60 prompt tokens, then greedy
generation of 100 tokens (EOS disabled so all 100 are produced). Writes
``benchmarks/results/gpu_crab7b.md``. Needs CUDA; exits 0 with a message when none is present.

Usage: python benchmarks/gpu_crab7b.py [--new-tokens 100]
"""

from __future__ import annotations

import argparse
import datetime
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from crab_core.model.builder import build_model, materialize  # noqa: E402
from crab_core.model.crab import CrabSample  # noqa: E402


def _init(model: torch.nn.Module) -> None:
    """Random, numerically sane values for an uninitialised (to_empty) model."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.dim() == 1:
                p.fill_(1.0 if "norm" in name or "ln" in name.lower() else 0.0)
            else:
                p.normal_(0, 0.02)
        for name, b in model.named_buffers():
            if b.is_floating_point() and "gaussian" in name:
                b.normal_()


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--new-tokens", type=int, default=100)
    args = ap.parse_args()
    if not torch.cuda.is_available():
        print("no CUDA device: nothing measured")
        return 0
    dev = torch.device("cuda")
    t0 = time.perf_counter()
    model = materialize(build_model("crab-7b", device="meta"), dev, torch.bfloat16)
    _init(model)
    model.eval()
    torch.cuda.synchronize()
    build_s = time.perf_counter() - t0
    cfg = model.config
    ids = cfg.token_ids
    prompt = torch.cat(
        [
            torch.tensor([1]),
            torch.randint(3, 32000, (20,)),
            torch.tensor([ids["<video>"]]),
            torch.randint(3, 32000, (10,)),
            torch.tensor([ids["<audio>"]]),
            torch.randint(3, 32000, (28,)),
        ]
    )
    video = torch.randn(10, 3, 224, 224, device=dev, dtype=torch.bfloat16)
    audio = torch.randn(10, 198, 128, device=dev, dtype=torch.bfloat16)
    torch.cuda.reset_peak_memory_stats()
    with torch.no_grad():
        for _ in range(2):  # warm-up
            media = model.encode_media(video=video, audio=audio)
        torch.cuda.synchronize()
        t1 = time.perf_counter()
        media = model.encode_media(video=video, audio=audio)
        sample = CrabSample(input_ids=prompt, media=media, task="avqa")
        out = model([sample], compute_masks=False)
        torch.cuda.synchronize()
        fwd_s = time.perf_counter() - t1
        seq_len = out.logits.shape[1]
        eos = cfg.llm.eos_token_id
        cfg_llm = model.config.llm
        object.__setattr__(cfg_llm, "eos_token_id", -1)  # never stop early
        torch.cuda.synchronize()
        t2 = time.perf_counter()
        gen = model.generate([sample], max_new_tokens=args.new_tokens)
        torch.cuda.synchronize()
        gen_s = time.perf_counter() - t2
        object.__setattr__(cfg_llm, "eos_token_id", eos)
    n = int(gen.decode.lengths[0])
    peak = torch.cuda.max_memory_allocated() / 1024**3
    lines = [
        "# crab-7b geometry, random weights, bf16",
        "",
        f"Date: {datetime.datetime.now():%Y-%m-%d %H:%M}; device: {torch.cuda.get_device_name(0)}; "
        f"torch {torch.__version__}",
        "Command: `python benchmarks/gpu_crab7b.py`",
        "",
        "| measure | value |",
        "|---|---|",
        f"| build + materialise | {build_s:.1f} s |",
        f"| AVQA forward (encode 10 frames + 10x2 s audio, LLM over {seq_len} tokens) | "
        f"{fwd_s * 1000:.1f} ms |",
        f"| greedy generation of {n} tokens (prefill included) | {gen_s:.2f} s |",
        f"| decode tokens/s | {n / gen_s:.1f} |",
        f"| peak GPU memory | {peak:.1f} GiB |",
    ]
    out_path = Path(__file__).resolve().parent / "results" / "gpu_crab7b.md"
    out_path.parent.mkdir(exist_ok=True)
    out_path.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
