"""Benchmark: cost of routing capture, attention read-out and IG attribution on crab-tiny (CPU).

* generation of a fixed number of tokens (AVE prompt, synthetic media) with and without
  :func:`crab_core.interpret.capture.capture_routing`, plus building the trace (median of reps);
* :func:`crab_core.interpret.attention.attention_maps` (eager teacher-forced pass + Q-Former maps);
* :func:`crab_core.interpret.attribution.attribute` per level (embeddings, pixels, fbank).

Uses the trained crab-tiny when ``assets/crab-tiny/model.safetensors`` exists, else a random one
with perturbed LoRA heads. Results also go to ``benchmarks/results/interpret.md``.

Usage: ``python benchmarks/interpret_overhead.py [--tokens 32] [--reps 5] [--n-steps 16] [--threads 1]``
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

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from crab_core.interpret.ablation import randomize_heads, seg_token_ids  # noqa: E402
from crab_core.interpret.attention import attention_maps  # noqa: E402
from crab_core.interpret.attribution import attribute  # noqa: E402
from crab_core.interpret.capture import capture_routing  # noqa: E402
from crab_core.interpret.inputs import encode, make_sample, synthetic_input  # noqa: E402
from crab_core.pipeline import CrabPipeline  # noqa: E402


def _gen(model, sample, tokens):
    return model.generate([sample], max_new_tokens=tokens)


def bench_capture(pipe, raw, tokens: int, reps: int) -> dict:
    model = pipe.model
    sample = make_sample(raw, encode(model, raw))
    _gen(model, sample, tokens)
    plain, cap, build = [], [], []
    n_gen = 0
    for _ in range(reps):
        t0 = time.perf_counter()
        g = _gen(model, sample, tokens)
        plain.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        with capture_routing(model) as rec:
            g2 = _gen(model, sample, tokens)
        cap.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        n = int(g2.decode.lengths[0])
        rec.trace(
            g2.batch,
            g2.decode.sequences[0, :n].tolist(),
            tokenizer=pipe.tokenizer,
            seg_token_ids=seg_token_ids(model.config),
        )
        build.append(time.perf_counter() - t0)
        assert torch.equal(g.decode.sequences, g2.decode.sequences)
        n_gen = n
    return {
        "tokens": n_gen,
        "prompt": int(g.batch.inputs_embeds.shape[1]),
        "plain": statistics.median(plain),
        "capture": statistics.median(cap),
        "trace": statistics.median(build),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tokens", type=int, default=32)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--n-steps", type=int, default=16)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "interpret.md"))
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    pipe = CrabPipeline.load("crab-tiny")
    if not pipe.trained:
        randomize_heads(pipe.model, std=0.2)
    raw = synthetic_input(pipe, "ave", seed=0)
    cap = bench_capture(pipe, raw, args.tokens, args.reps)
    answer = list(range(40, 40 + args.tokens))
    t0 = time.perf_counter()
    attention_maps(pipe, raw, answer_ids=answer)
    t_att = time.perf_counter() - t0
    att = attribute(pipe, raw, answer_ids=answer, n_steps=args.n_steps)
    over = (cap["capture"] - cap["plain"]) / cap["plain"]
    lines = [
        "# Interpretability overhead (crab-tiny, CPU)",
        "",
        f"{datetime.date.today()} · {platform.processor() or platform.machine()} · "
        f"torch {torch.__version__} · "
        f"{args.threads} thread(s) · model: {pipe.name} · AVE prompt of {cap['prompt']} positions, "
        f"{cap['tokens']} generated tokens, median of {args.reps}",
        "",
        "| measurement | seconds |",
        "|---|---|",
        f"| generate, no capture | {cap['plain']:.3f} |",
        f"| generate, with capture_routing | {cap['capture']:.3f} (overhead {100 * over:+.1f} %) |",
        f"| build RoutingTrace | {cap['trace']:.3f} |",
        f"| attention_maps (eager pass + Q-Former maps), {args.tokens}-token answer | {t_att:.3f} |",
    ]
    for level, secs in att.seconds.items():
        lines.append(f"| attribute: {level} level, IG n_steps={args.n_steps} | {secs:.3f} |")
    lines += [
        "",
        f"IG convergence delta (|sum attr - (f(x) - f(b))|, log-prob units): embeddings "
        f"{att.delta:.4f}, pixels {att.pixel_delta:.4f}, fbank {att.fbank_delta:.4f}; "
        f"answer log-prob {att.logprob:.2f}.",
        "",
    ]
    text = "\n".join(lines)
    print(text)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
