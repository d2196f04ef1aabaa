"""Can a frame's LLM tokens hold its object boxes? Projector designs trained for boxes alone.

ARIG answers a box; the LLM only sees a frame through the visual projector's tokens. This trains
each projector design on the frozen visual tower of a crab-tiny model (its patch features of
SynthAV frames), together with the recipe's linear box probe
(:class:`crab_core.training.probes.MediaProbes`: per class visible + box), and scores the share of
visible objects' boxes with IoU > 0.5 on fresh frames::

    python benchmarks/frame_token_boxes.py --model assets/crab-tiny [--steps 600]

Designs (``D`` = LLM width): ``qformer-Q``: the model's Q-Former projector, fresh, with ``Q``
queries per frame (crab-tiny ships ``Q`` = 4); ``qformerpos-Q``: the same with a learned position
embedding added to the patch features it attends to; ``grid-G``: the patch map average-pooled to a
``G x G`` grid, one token per cell (LayerNorm + Linear to ``D``), so a token's index is its place
(``grid-8`` keeps every patch: the upper bound); ``shipped-Q``: the model's trained projector, frozen.
A design that fails here cannot give the LLM the boxes whatever the LLM does. Writes
``benchmarks/results/frame_token_boxes.{md,json}``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
log = logging.getLogger("frame_token_boxes")

from signal_paths import box_iou  # noqa: E402


class GridProjector(nn.Module):
    """Patch tokens ``(N, P, W)`` of a ``g0 x g0`` map -> ``(N, G*G, D)`` pooled cell tokens."""

    def __init__(self, width: int, d_model: int, grid: int) -> None:
        super().__init__()
        self.grid = grid
        self.norm = nn.LayerNorm(width)
        self.proj = nn.Linear(width, d_model)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, p, w = x.shape
        side = int(round(p**0.5))
        maps = x.transpose(1, 2).reshape(n, w, side, side)
        cells = F.adaptive_avg_pool2d(maps, self.grid).flatten(2).transpose(1, 2)
        return self.proj(self.norm(cells))


def frames(split: str, seed: int, per_task: int, tasks: list[str], size: int):
    """``(N, 3, S, S)`` normalised frames and ``(N, S, S)`` class maps of SynthAV items."""
    from crab_core.training.collate import normalise
    from crab_core.training.data import render_synth, synth_seeds

    pix, maps = [], []
    for r in render_synth(synth_seeds(split, tasks, per_task, seed), size, 2, with_labels=True):
        if r.video is None:
            continue
        pix.append(normalise(r.video))
        maps.append(torch.from_numpy(r.labels["patch"]))
    return torch.cat(pix), torch.cat(maps).long()


def patch_features(model, pixels: torch.Tensor) -> torch.Tensor:
    """Frozen visual tower: ``(N, 3, S, S)`` -> ``(N, P, W)`` last-layer patch tokens."""
    p = model.visual_encoder.patches_per_frame
    out = []
    with torch.no_grad():
        for s in range(0, len(pixels), 64):
            f = model.visual_encoder(pixels[s : s + 64].unsqueeze(1))[-1]
            out.append(f.reshape(-1, f.shape[-2], f.shape[-1])[:, :p])
    return torch.cat(out)


def run_arm(name: str, proj: nn.Module, q: int, data: dict, args) -> dict:
    from crab_core.training.probes import MediaProbes, frame_targets

    torch.manual_seed(0)
    d = data["d_model"]
    probes = MediaProbes(d, q, 1)
    if args.readout == "mlp":  # a box is a min / max over positions: not a linear function of tokens
        lin = probes.video
        probes.video = nn.Sequential(
            nn.Linear(lin.in_features, 512), nn.GELU(), nn.Linear(512, lin.out_features)
        )
    params = list(proj.parameters()) + list(probes.video.parameters())
    opt = torch.optim.AdamW(params, lr=args.lr, weight_decay=0.0)
    xtr, mtr = data["train"]
    g = torch.Generator().manual_seed(0)
    t0 = time.perf_counter()
    proj.train()
    for _ in range(args.steps):
        idx = torch.randint(len(xtr), (args.batch,), generator=g)
        loss = probes.video_loss(proj(xtr[idx]), mtr[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    proj.eval()
    xte, mte = data["test"]
    with torch.no_grad():
        out = probes.video(proj(xte).flatten(1)).view(len(xte), -1, 5)
    vis, boxes = frame_targets(mte)
    sel = vis > 0
    iou = box_iou(out[..., 1:].sigmoid()[sel], boxes[sel])
    acc = float(((out[..., 0] > 0) == (vis > 0)).float().mean())
    res = {
        "design": name,
        "tokens_per_frame": q,
        "boxes_iou_gt_0_5": float((iou > 0.5).float().mean()),
        "mean_iou": float(iou.mean()),
        "visible_accuracy": acc,
        "boxes": int(sel.sum()),
        "final_loss": float(loss.detach()),
        "seconds": round(time.perf_counter() - t0, 1),
    }
    log.info("%s", res)
    return res


def main(argv: list[str] | None = None) -> int:
    from crab_core.checkpoint.pretrained import load_pretrained
    from crab_core.model.projector import QFormerProjector

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="assets/crab-tiny")
    p.add_argument("--train-per-task", type=int, default=150)
    p.add_argument("--test-per-task", type=int, default=40)
    p.add_argument("--steps", type=int, default=600)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument(
        "--readout", choices=("linear", "mlp"), default="linear", help="box read-out of the tokens"
    )
    p.add_argument("--name", default="frame_token_boxes", help="result file stem")
    p.add_argument("--designs", default="shipped-4,qformer-4,qformer-16,grid-2,grid-4,grid-8")
    p.add_argument("--out", default="benchmarks/results")
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    torch.set_num_threads(args.threads)
    model = load_pretrained(args.model)[0].eval()
    cfg = model.config
    size, tasks = cfg.vision.image_size, ["ave", "s4", "ms3"]
    data = {"d_model": cfg.llm.hidden_size}
    for split, seed, n in (("train", 0, args.train_per_task), ("test", 901, args.test_per_task)):
        pix, maps = frames(split, seed, n, tasks, size)
        data[split] = (patch_features(model, pix), maps)
    rows = []
    for design in args.designs.split(","):
        kind, k = design.split("-")
        k = int(k)
        if kind == "shipped":  # the model's own trained projector, frozen: only the probe learns
            proj = _FrameQFormer(model.vl_projector.requires_grad_(False))
            rows.append(run_arm(design, proj, cfg.vl_qformer.num_query_tokens, data, args))
        elif kind in ("qformer", "qformerpos"):
            qcfg = dataclasses.replace(cfg.vl_qformer, num_query_tokens=k)
            proj = QFormerProjector.from_config(qcfg, cfg.llm.hidden_size, "visual")
            pos = model.visual_encoder.patches_per_frame if kind == "qformerpos" else 0
            fwd = _FrameQFormer(proj, pos)
            rows.append(run_arm(design, fwd, k, data, args))
        else:
            rows.append(
                run_arm(
                    design, GridProjector(cfg.vision.hidden_size, cfg.llm.hidden_size, k), k * k, data, args
                )
            )
    out = Path(args.out)
    res = {"args": vars(args), "frames": {s: len(data[s][0]) for s in ("train", "test")}, "rows": rows}
    (out / f"{args.name}.json").write_text(json.dumps(res, indent=1))
    md = markdown(res)
    (out / f"{args.name}.md").write_text(md)
    sys.stdout.write(md)
    return 0


class _FrameQFormer(nn.Module):
    """A Q-Former projector applied to single frames: ``(N, P, W)`` -> ``(N, Q, D)``; with
    ``patches`` a learned position embedding ``(P, W)`` is added to its keys first."""

    def __init__(self, proj: nn.Module, patches: int = 0) -> None:
        super().__init__()
        self.proj = proj
        self.pos = nn.Parameter(torch.randn(patches, proj.encoder_width) * 0.5) if patches else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.pos if self.pos is not None else x
        return self.proj(x, tokens_per_frame=x.shape[1]).reshape(len(x), -1, self.proj.d_model)


def markdown(res: dict) -> str:
    a = res["args"]
    cmd = (
        f"python benchmarks/frame_token_boxes.py --model {a['model']} --steps {a['steps']} "
        f"--train-per-task {a['train_per_task']} --test-per-task {a['test_per_task']} "
        f"--readout {a['readout']}"
    )
    lines = [
        "# Can a frame's LLM tokens hold its object boxes?",
        "",
        f"`{cmd}`: each projector design trained with a {a['readout']} box read-out on the frozen "
        f"visual tower ({res['frames']['train']} train frames of AVE / S4 / MS3 items, user seed 0; "
        f"{a['steps']} steps x {a['batch']}), scored on {res['frames']['test']} fresh test frames "
        "(seed 901).",
        "",
        "| design | tokens per frame | boxes IoU > 0.5 | mean IoU | visible accuracy | boxes | seconds |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in res["rows"]:
        cells = [r["design"], r["tokens_per_frame"], f"{r['boxes_iou_gt_0_5']:.3f}", f"{r['mean_iou']:.3f}"]
        cells += [f"{r['visible_accuracy']:.3f}", r["boxes"], f"{r['seconds']:.0f}"]
        lines.append("| " + " | ".join(str(c) for c in cells) + " |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    raise SystemExit(main())
