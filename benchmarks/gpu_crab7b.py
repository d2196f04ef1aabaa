"""crab-7b decode speed on one GPU: eager vs static cache vs compiled, with and without I-LoRA, vs HF LLaMA.

Random weights at crab-7b geometry in bf16 (built directly in bf16), the LoRA B heads set non-zero so the
adapters take part. AVQA-sized request: 10 frames, 10 audio windows of 2 s, ~60 text tokens, then greedy
generation with EOS disabled. Measured per decoding path:

- prefill: the LLM forward over the spliced prompt (cache filled), after ``encode_media``;
- decode ms/token: ``(t(N) - t(N/2)) / (N - N/2)`` for two ``generate`` calls of N and N/2 new tokens,
  which cancels the prefill and fixed costs;
- peak memory (``torch.cuda.max_memory_allocated``; peak RSS on CPU);
- the fraction of the bandwidth floor: bytes of LLM weights streamed per token (all but the embedding
  table) / the device's nominal memory bandwidth, divided by the measured ms/token;
- token identity of every path's greedy tokens with the eager path's, in the benchmark dtype.

Paths: ``eager`` (:func:`crab_core.model.llm.decode`, dynamic cache), ``static`` (static KV cache + fused
I-LoRA, no compilation), ``compiled`` (static + fused + ``torch.compile(mode="reduce-overhead")``: CUDA
graphs), each with I-LoRA on and off (PEFT ``disable_adapter``), and HF transformers' plain
``LlamaForCausalLM.generate`` at LLaMA-2-7B geometry on a prompt of the same length (the reference point).

``--smoke`` runs everything on CPU at crab-tiny geometry in float32 with 8 tokens and the ``aot_eager``
backend (a check that the script works, not a speed claim); results go to ``--out``.

Usage: ``python benchmarks/gpu_crab7b.py [--new-tokens 100]`` (needs CUDA) or ``... --smoke --out DIR``.
"""

from __future__ import annotations

import argparse
import contextlib
import resource
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks._report import header, write_report  # noqa: E402
from crab_core.model.builder import build_model, reset_rotary  # noqa: E402
from crab_core.model.crab import CrabModel, CrabSample  # noqa: E402
from crab_core.model.fast_decode import FastDecodeConfig, disable_fast_decode, enable_fast_decode  # noqa: E402
from crab_core.model.llm import build_llama  # noqa: E402

#: nominal HBM bandwidth (bytes/s) by a substring of ``torch.cuda.get_device_name``
BANDWIDTH = {"H200": 4.8e12, "H100 PCIe": 2.0e12, "H100": 3.35e12, "A100-SXM4-80GB": 2.04e12, "A100": 1.55e12}


def _sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize()


def _reset_peak(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats()


def _peak_gib(dev: torch.device) -> float:
    if dev.type == "cuda":
        return torch.cuda.max_memory_allocated() / 1024**3
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2  # process peak RSS (KiB -> GiB)


def _timed(fn, dev: torch.device):
    _sync(dev)
    t = time.perf_counter()
    out = fn()
    _sync(dev)
    return out, time.perf_counter() - t


def _per_token_ms(gen, dev: torch.device, n: int, reps: int):
    """``(median t(n) - median t(n/2)) / (n - n/2)`` in ms, and the last ``gen(n)`` output."""
    half = max(1, n // 2)
    full_t, half_t, out = [], [], None
    for _ in range(reps):
        out, t = _timed(lambda: gen(n), dev)
        full_t.append(t)
        half_t.append(_timed(lambda: gen(half), dev)[1])
    return (statistics.median(full_t) - statistics.median(half_t)) / (n - half) * 1000, out


def _request(model: CrabModel, dev: torch.device, gen: torch.Generator) -> CrabSample:
    """AVQA-sized sample: BOS, 20 text, <video>, 10 text, <audio>, 28 text; 10 frames, 10 x 2 s audio."""
    cfg = model.config
    ids, vocab = cfg.token_ids, cfg.llm.vocab_size
    prompt = torch.cat(
        [
            torch.tensor([1]),
            torch.randint(3, vocab, (20,), generator=gen),
            torch.tensor([ids["<video>"]]),
            torch.randint(3, vocab, (10,), generator=gen),
            torch.tensor([ids["<audio>"]]),
            torch.randint(3, vocab, (28,), generator=gen),
        ]
    )
    s = cfg.vision.image_size
    video = torch.randn(10, 3, s, s, generator=gen).to(dev, model.vision_dtype)
    audio = torch.randn(10, 198, 128, generator=gen).to(dev, model.audio_dtype)
    with torch.no_grad():
        media = model.encode_media(video=video, audio=audio)
    return CrabSample(input_ids=prompt, media=media, task="avqa")


def _generate(model: CrabModel, sample: CrabSample, n: int, lora: bool):
    ctx = contextlib.nullcontext() if lora else model.llm.disable_adapter()
    with ctx, torch.no_grad():
        return model.generate([sample], max_new_tokens=n).decode.sequences[0]


def _measure(model, sample, dev, n: int, lora: bool, reps: int) -> dict:
    """Warm-up (compiles / records graphs), then ms/token, greedy tokens and peak memory."""
    _generate(model, sample, n, lora)
    _generate(model, sample, max(1, n // 2), lora)
    _reset_peak(dev)
    ms, toks = _per_token_ms(lambda k: _generate(model, sample, k, lora), dev, n, reps)
    return {"ms": ms, "tokens": toks.cpu(), "peak": _peak_gib(dev)}


def _prefill_ms(model: CrabModel, sample: CrabSample, dev: torch.device, lora: bool) -> float:
    batch = model.prepare([sample])
    ctx = contextlib.nullcontext() if lora else model.llm.disable_adapter()

    def run():
        return model.llm(
            inputs_embeds=batch.inputs_embeds,
            attention_mask=batch.attention_mask,
            position_ids=batch.position_ids,
            use_cache=True,
        )

    with ctx, torch.no_grad():
        run()
        _, t = _timed(run, dev)
    return t * 1000


def _hf_llama_ms(model: CrabModel, seq_len: int, dev, dtype, n: int, reps: int) -> tuple[float, float]:
    """Plain HF ``LlamaForCausalLM.generate`` (vocab 32000, same layers) on ``seq_len`` prompt ids."""
    c = model.config.llm
    with torch.device(dev):
        prev = torch.get_default_dtype()
        torch.set_default_dtype(dtype)
        try:
            hf = build_llama(
                vocab_size=c.vocab_size,
                hidden_size=c.hidden_size,
                intermediate_size=c.intermediate_size,
                num_hidden_layers=c.num_hidden_layers,
                num_attention_heads=c.num_attention_heads,
                num_key_value_heads=c.num_key_value_heads,
            ).eval()
        finally:
            torch.set_default_dtype(prev)
    reset_rotary(hf)  # RoPE frequencies in float32, as for crab-7b
    ids = torch.randint(3, c.vocab_size, (1, seq_len), device=dev)

    def gen(k):
        with torch.no_grad():
            return hf.generate(
                ids, attention_mask=torch.ones_like(ids), max_new_tokens=k, min_new_tokens=k, do_sample=False
            )

    gen(n)
    _reset_peak(dev)
    ms, _ = _per_token_ms(gen, dev, n, reps)
    return ms, _peak_gib(dev)


def _floor_ms(model: CrabModel, dev: torch.device) -> tuple[float | None, float]:
    """(bandwidth-floor ms/token or None, GiB of LLM weights streamed per token)."""
    embed = model.llm.get_input_embeddings().weight
    streamed = (
        sum(p.numel() * p.element_size() for p in model.llm.parameters())
        - embed.numel() * embed.element_size()
    )
    if dev.type != "cuda":
        return None, streamed / 1024**3
    name = torch.cuda.get_device_name(0)
    bw = next((v for k, v in BANDWIDTH.items() if k in name), None)
    return (streamed / bw * 1000 if bw else None), streamed / 1024**3


def _same(a: torch.Tensor, b: torch.Tensor) -> str:
    if torch.equal(a, b):
        return "identical"
    diff = (a != b).nonzero()
    return f"differs from step {int(diff[0])}" if len(diff) else f"length {len(a)} vs {len(b)}"


def run(args) -> str:
    dev = torch.device("cpu" if args.smoke else "cuda")
    dtype = torch.float32 if args.smoke else torch.bfloat16
    preset = "crab-tiny" if args.smoke else "crab-7b"
    model, build_s = _timed(lambda: build_model(preset, device=dev, dtype=dtype, with_seg=False).eval(), dev)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.02)
    sample = _request(model, dev, torch.Generator().manual_seed(0))
    seq_len = model.prepare([sample]).inputs_embeds.shape[1]
    eos = model.config.llm.eos_token_id
    object.__setattr__(model.config.llm, "eos_token_id", -1)  # never stop early
    n = args.new_tokens
    mode = "reduce-overhead" if args.backend == "inductor" else "default"  # modes are inductor's
    compiled = FastDecodeConfig(compile=True, backend=args.backend, compile_mode=mode)
    paths = [("eager", None), ("static", FastDecodeConfig()), ("compiled", compiled)]
    rows, results = [], {}
    try:
        prefill = {lora: _prefill_ms(model, sample, dev, lora) for lora in (True, False)}
        for label, cfg in paths:
            if args.no_compile and cfg is not None and cfg.compile:
                continue
            if cfg is not None:
                enable_fast_decode(model, cfg)
            try:
                for lora in (True, False):
                    results[(label, lora)] = _measure(model, sample, dev, n, lora, args.reps)
            finally:
                disable_fast_decode(model)
    finally:
        object.__setattr__(model.config.llm, "eos_token_id", eos)
    floor, streamed = _floor_ms(model, dev)
    hf_ms, hf_peak = (None, None) if args.skip_hf else _hf_llama_ms(model, seq_len, dev, dtype, n, args.reps)
    ref = {lora: results[("eager", lora)]["tokens"] for lora in (True, False)}
    for (label, lora), r in results.items():
        base = results.get((label, False))
        ratio = f"{r['ms'] / base['ms']:.2f}x" if lora and base else "-"
        bw = f"{floor / r['ms'] * 100:.0f} %" if floor else "-"
        vs_hf = f"{r['ms'] / hf_ms:.2f}x" if hf_ms else "-"
        rows.append(
            f"| {label} | {'on' if lora else 'off'} | {prefill[lora]:.1f} | {r['ms']:.2f} | {ratio} | {bw} | "
            f"{vs_hf} | {r['peak']:.2f} | {_same(r['tokens'], ref[lora])} |"
        )
    if hf_ms:
        rows.append(
            f"| HF LlamaForCausalLM.generate (no LoRA) | - | - | {hf_ms:.2f} | - | "
            f"{f'{floor / hf_ms * 100:.0f} %' if floor else '-'} | 1.00x | {hf_peak:.2f} | - |"
        )
    device_name = torch.cuda.get_device_name(0) if dev.type == "cuda" else "CPU (smoke)"
    cmd = "python benchmarks/gpu_crab7b.py" + (" --smoke" if args.smoke else "") + f" --new-tokens {n}"
    return "\n".join(
        [
            f"# {preset} decode speed ({'CPU smoke, not a speed claim' if args.smoke else 'one GPU'})",
            "",
            header(cmd, torch.get_num_threads()),
            "",
            f"Device: {device_name}; {dtype}; random weights (LoRA B heads non-zero); build {build_s:.1f} s; "
            f"prompt {seq_len} spliced tokens (AVQA-sized); {n} new tokens, EOS disabled; compile backend "
            f"`{args.backend}`; median of {args.reps} timings. LLM weights streamed per token: "
            f"{streamed:.2f} GiB" + (f"; bandwidth floor {floor:.2f} ms/token." if floor else "."),
            "",
            "| path | I-LoRA | prefill ms | decode ms/token | vs no LoRA | of bandwidth floor "
            "| vs HF generate | peak GiB | greedy tokens vs eager |",
            "|---|---|---|---|---|---|---|---|---|",
            *rows,
            "",
        ]
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python benchmarks/gpu_crab7b.py", description=__doc__.split("\n")[0])
    ap.add_argument("--new-tokens", type=int, default=None, help="tokens per generation (100; smoke 8)")
    ap.add_argument(
        "--smoke", action="store_true", help="CPU, crab-tiny geometry, float32: checks the script"
    )
    ap.add_argument("--backend", default=None, help="torch.compile backend (inductor; smoke aot_eager)")
    ap.add_argument("--reps", type=int, default=3, help="timed repetitions (median)")
    ap.add_argument("--no-compile", action="store_true", help="skip the compiled path")
    ap.add_argument("--skip-hf", action="store_true", help="skip the HF LlamaForCausalLM reference")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results"), help="results folder")
    args = ap.parse_args(argv)
    args.new_tokens = args.new_tokens or (8 if args.smoke else 100)
    args.backend = args.backend or ("aot_eager" if args.smoke else "inductor")
    if args.new_tokens < 2:
        ap.error("--new-tokens must be at least 2")
    if not args.smoke and not torch.cuda.is_available():
        print("no CUDA device: nothing measured (use --smoke for a CPU check of the script)")
        return 0
    md = run(args)
    return write_report(args.out, "gpu_crab7b_smoke.md" if args.smoke else "gpu_crab7b.md", md)


if __name__ == "__main__":
    sys.exit(main())
