"""BEATs-tiny from scratch: how fast the audio tower learns under different schedules, side by side.

Trains crab-tiny's audio encoder with the tower head of :class:`crab_core.training.towers.TowerHeads`
(``audio_loss``: audible classes + loudness per 1-s window) on SynthAV training clips of the
uniform-audio tasks (AVE, AVVP, caption), 8 clips (80 windows) per step, AdamW with the trainer's
warmup + linear decay, then scores the per-second "which classes sound" prediction (threshold 0.5)
on fresh AVVP test clips: F1, recall and precision over (second, class) pairs.

The schedules compared are v2's (the audio tower trained inside the mixed ``towers`` phase at
2e-3 x 2.5) and the separate ``audio`` phase of the crab-tiny recipe (2e-3, 2000 steps)::

    python benchmarks/audio_tower_schedule.py [--out benchmarks/results]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from _report import header, write_report  # noqa: E402

#: (label, peak lr, optimizer steps)
SCHEDULES = [
    ("v2-like: lr 5e-3, 300 steps (the audio share of v2's mixed towers phase)", 5e-3, 300),
    ("lr 5e-3, 1000 steps", 5e-3, 1000),
    ("lr 2e-3, 1000 steps", 2e-3, 1000),
    ("crab-tiny `audio` phase: lr 2e-3, 2000 steps", 2e-3, 2000),
]


def _windows(items, rows):
    x = torch.cat([torch.from_numpy(items[i].audio.astype("float32")) for i in rows])  # (N, F, 128)
    y = torch.cat([torch.from_numpy(items[i].labels["audible"]).float() for i in rows])  # (N, K)
    g = torch.cat([torch.from_numpy(items[i].labels["gain"].astype("float32")) for i in rows])
    return x, y, g


def f1_scores(enc, heads, test) -> tuple[float, float, float]:
    """Per-(second, class) F1, recall, precision of the tower head on ``test`` clips."""
    enc.eval()
    probs, gold = [], []
    with torch.no_grad():
        for it in test:
            tok = enc(torch.from_numpy(it.audio.astype("float32"))).float()  # (T, n, D)
            w = heads.audio_attn(tok).softmax(1)
            per = heads.audio(torch.einsum("nik,nid->nkd", w, tok))
            k = torch.arange(heads.num_classes)
            probs.append(per[:, k, k].sigmoid().numpy())
            gold.append(it.labels["audible"])
    pred, true = np.concatenate(probs) > 0.5, np.concatenate(gold).astype(bool)
    tp = float((pred & true).sum())
    return 2 * tp / max(pred.sum() + true.sum(), 1), tp / max(true.sum(), 1), tp / max(pred.sum(), 1)


def train_once(cfg, train, test, lr: float, steps: int, batch: int = 8) -> dict:
    from crab_core.model.builder import build_model
    from crab_core.training.towers import TowerHeads
    from crab_core.training.trainer import _lr_lambda

    torch.manual_seed(0)
    enc = build_model(cfg, seed=0).audio_encoder
    enc.requires_grad_(True).train()
    heads = TowerHeads(cfg.vision.hidden_size, cfg.audio.encoder_embed_dim, cfg.vision.patch_size)
    params = [*enc.parameters(), *heads.audio.parameters(), *heads.audio_attn.parameters()]
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, _lr_lambda(steps, 0.03))
    rng = np.random.default_rng(0)
    t0 = time.perf_counter()
    for _ in range(steps):
        x, y, g = _windows(train, rng.choice(len(train), batch, replace=False))
        loss = heads.audio_loss(enc(x), y, g)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        sched.step()
    seconds = time.perf_counter() - t0
    f1, rec, prec = f1_scores(enc, heads, test)
    return {"f1": f1, "recall": rec, "precision": prec, "train_s": seconds}


def main(argv: list[str] | None = None) -> int:
    from crab_core.presets import crab_tiny
    from crab_core.training.data import render_synth, synth_seeds

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--clips", type=int, default=2400, help="training clips (rendered once)")
    p.add_argument("--test", type=int, default=40, help="AVVP test clips")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    cfg = crab_tiny()
    size = cfg.vision.image_size
    train = render_synth(synth_seeds("train", ["ave", "avvp", "caption"], args.clips // 3, 0), size)
    test = render_synth(synth_seeds("test", ["avvp"], args.test, 0), size)
    rows = [(label, train_once(cfg, train, test, lr, steps)) for label, lr, steps in SCHEDULES]
    md = (
        "# BEATs-tiny audio tower: schedule vs per-second audible F1\n\n"
        + header("python benchmarks/audio_tower_schedule.py", args.threads)
        + f" · {len(train)} training clips, 8 per step · {len(test)} fresh AVVP test clips\n\n"
        "| schedule | F1 | recall | precision | train s |\n|---|---|---|---|---|\n"
        + "".join(
            f"| {k} | {v['f1']:.3f} | {v['recall']:.3f} | {v['precision']:.3f} | {v['train_s']:.0f} |\n"
            for k, v in rows
        )
    )
    return write_report(args.out, "audio_tower_schedule.md", md)


if __name__ == "__main__":
    raise SystemExit(main())
