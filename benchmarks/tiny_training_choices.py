"""Two crab-tiny training choices, measured side by side in one run.

1. Dropout: time of an ``instruct``-phase training step (I-LoRA + projectors, LLM frozen, cached
   tower features) with the reference dropout (Q-Former 0.1, I-LoRA 0.05) vs crab-tiny's none.
2. Audio tower head: validation BCE of "which classes sound in this second" after the same number
   of steps for a mean-pooled head vs the per-class attention pooling of
   :class:`crab_core.training.towers.TowerHeads`, next to a linear model on fbank mean / std.

    python benchmarks/tiny_training_choices.py [--steps 250] [--out benchmarks/results]
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from _report import header, write_report  # noqa: E402


def step_time(cfg, raws, tokenizer, reps: int) -> float:
    """Median seconds of one instruct-phase optimizer step (batch 16) on cached tower features."""
    from crab_core.model.builder import build_model
    from crab_core.training.collate import collate
    from crab_core.training.data import tokenize_item
    from crab_core.training.features import compute_features
    from crab_core.training.module import CrabTrainModule

    module = CrabTrainModule(build_model(cfg, seed=0))
    module.mask_loss = False
    module.set_trainable(("lora", "vl_projector", "al_projector"))
    module.train()
    feats = compute_features(module.model, raws)
    items = [tokenize_item(r, tokenizer) for r in raws]
    opt = torch.optim.AdamW([p for p in module.parameters() if p.requires_grad], lr=1e-3)
    times = []
    for i in range(reps + 2):
        batch = collate([items[(i * 16 + j) % len(items)] for j in range(16)], feats)
        t0 = time.perf_counter()
        module(batch)["loss"].backward()
        opt.step()
        opt.zero_grad()
        times.append(time.perf_counter() - t0)
    return sorted(times[2:])[reps // 2]


def audio_heads(cfg, raws, steps: int) -> dict[str, float]:
    """Validation BCE of the audible-class prediction per head kind (80/20 split of 1-s windows)."""
    from crab_core.model.builder import build_model
    from crab_core.training.towers import TowerHeads

    a = torch.cat([torch.from_numpy(r.audio.astype("float32")) for r in raws])
    y = torch.cat([torch.from_numpy(r.labels["audible"]).float() for r in raws])
    n = a.shape[0]
    tr, te = torch.arange(n) < int(0.8 * n), torch.arange(n) >= int(0.8 * n)
    out = {}
    for kind in ("mean", "attention"):
        enc = build_model(cfg, seed=0).audio_encoder.train()
        heads = TowerHeads(cfg.vision.hidden_size, cfg.audio.encoder_embed_dim, cfg.vision.patch_size)
        mean_head = torch.nn.Linear(cfg.audio.encoder_embed_dim, y.shape[1])

        def logits(tok, kind=kind, heads=heads, mean_head=mean_head):
            if kind == "mean":
                return mean_head(tok.mean(1))
            w = heads.audio_attn(tok).softmax(1)
            per = heads.audio(torch.einsum("nik,nid->nkd", w, tok))
            k = torch.arange(y.shape[1])
            return per[:, k, k]

        params = [*enc.parameters(), *(mean_head.parameters() if kind == "mean" else heads.parameters())]
        opt = torch.optim.AdamW(params, lr=5e-3, weight_decay=0.0)
        g = torch.Generator().manual_seed(0)
        idx_tr = torch.nonzero(tr).flatten()
        for _ in range(steps):
            idx = idx_tr[torch.randint(0, len(idx_tr), (64,), generator=g)]
            loss = F.binary_cross_entropy_with_logits(logits(enc(a[idx])), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
        with torch.no_grad():
            out[kind] = float(F.binary_cross_entropy_with_logits(logits(enc.eval()(a[te])), y[te]))
    lin = torch.nn.Linear(2 * a.shape[-1], y.shape[1])
    opt = torch.optim.AdamW(lin.parameters(), lr=1e-2)
    stats = torch.cat([a.mean(1), a.std(1)], -1)
    for _ in range(steps):
        loss = F.binary_cross_entropy_with_logits(lin(stats[tr]), y[tr])
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        out["linear on fbank mean/std"] = float(F.binary_cross_entropy_with_logits(lin(stats[te]), y[te]))
    return out


def main(argv: list[str] | None = None) -> int:
    from crab_core.presets import crab_tiny
    from crab_core.tokenizer import CrabTokenizer, task_corpus
    from crab_core.training.data import render_synth, synth_seeds

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=250)
    p.add_argument("--reps", type=int, default=9)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    tiny = crab_tiny()
    ref_drop = tiny.replace(
        vl_qformer=dataclasses.replace(
            tiny.vl_qformer, hidden_dropout_prob=0.1, attention_probs_dropout_prob=0.1
        ),
        al_qformer=dataclasses.replace(
            tiny.al_qformer, hidden_dropout_prob=0.1, attention_probs_dropout_prob=0.1
        ),
        lora=dataclasses.replace(tiny.lora, dropout=0.05),
    )
    tok = CrabTokenizer.train_bpe(task_corpus(samples_per_task=10), tiny)
    mixed = render_synth(synth_seeds("train", ["ave", "avvp", "avqa", "caption"], 8, 0), 112)
    with_drop, no_drop = step_time(ref_drop, mixed, tok, args.reps), step_time(tiny, mixed, tok, args.reps)
    audio = render_synth(synth_seeds("train", ["ave", "avvp"], 40, 0), 112)
    heads = audio_heads(tiny, audio, args.steps)
    md = (
        "# crab-tiny training choices\n\n"
        + header(f"python benchmarks/tiny_training_choices.py --steps {args.steps}", args.threads)
        + "\n\n"
        "## Dropout (instruct-phase step, batch 16, median of "
        f"{args.reps})\n\n| setting | seconds / step |\n|---|---|\n"
        f"| reference dropout (Q-Former 0.1, I-LoRA 0.05) | {with_drop:.3f} |\n"
        f"| crab-tiny (no dropout) | {no_drop:.3f} |\n\n"
        f"Ratio no-dropout / dropout: {no_drop / with_drop:.2f}\n\n"
        f"## Audio tower head ({args.steps} steps of 64 one-second windows, lr 5e-3, "
        f"{len(audio)} clips, 80/20 split)\n\n| head | validation BCE (audible classes) |\n|---|---|\n"
        + "".join(f"| {k} | {v:.3f} |\n" for k, v in heads.items())
    )
    return write_report(args.out, "tiny_training_choices.md", md)


if __name__ == "__main__":
    raise SystemExit(main())
