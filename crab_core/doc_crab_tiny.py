"""Doc blocks about crab-tiny: its size and recipe (from the shipped files) and the seg-selection
comparison (from ``benchmarks/seg_selection.py``'s JSON results), for ``scripts/render_docs.py``."""

from __future__ import annotations

import json
import math
import struct
from collections.abc import Sequence
from pathlib import Path

from .doc_tables import DocContext, source_line
from .errors import ReportError

SEG_ROWS = (
    ("S4 per-frame IoU, all frames", lambda a: a.get("s4_miou"), lambda a: a.get("samples")),
    *(
        (
            f"S4 per-frame IoU, {scene}",
            (lambda s: lambda a: a.get("by_scene", {}).get(s, {}).get("miou"))(scene),
            (lambda s: lambda a: a.get("by_scene", {}).get(s, {}).get("n"))(scene),
        )
        for scene in ("one visible object", "several visible objects", "empty target")
    ),
    ("seg-token states: class share of variance", lambda a: a.get("class_variance_share"), None),
    ("prompt swap IoU with own mask (1 = prompt ignored)", lambda a: a.get("prompt_swap_iou"), None),
    (
        "prompt swap IoU, several-object frames",
        lambda a: a.get("prompt_swap_iou_several"),
        lambda a: a.get("prompt_swap_n_several") and f"{a['prompt_swap_n_several']} pairs",
    ),
    ("MS3 mIoU (eval)", lambda a: a.get("ms3"), None),
    ("Ref-AVS mIoU (eval)", lambda a: a.get("ref-avs"), None),
    ("AVSS mIoU, classes present (eval)", lambda a: a.get("avss"), None),
)


def seg_selection_table(files: Sequence[tuple[str, str, str]]):
    """A builder comparing ``benchmarks/seg_selection.py`` results: ``files`` = (results JSON name,
    arm key, column label); one column each, the n of every cell beside it."""

    def build(ctx: DocContext) -> str:
        cols = []
        for name, arm, label in files:
            data = ctx.json(ctx.result(name))
            if arm not in data:
                raise ReportError(f"{name}: no arm {arm!r} (has {sorted(data)})")
            cols.append((label, data[arm]))
        lines = ["| | " + " | ".join(label for label, _ in cols) + " |", "|---" * (len(cols) + 1) + "|"]
        for label, get, n in SEG_ROWS:
            cells = []
            for _, arm in cols:
                v = get(arm)
                count = n(arm) if n else None
                cells.append("-" if v is None else f"{v:.2f}" + (f" (n={count})" if count else ""))
            if any(c != "-" for c in cells):
                lines.append(f"| {label} | " + " | ".join(cells) + " |")
        srcs = []
        for name, _, _ in dict.fromkeys((f[0], "", "") for f in files):
            md = ctx.result(name).with_suffix(".md")
            srcs.append(
                f"- {source_line(ctx, md)[5:-1]}" if md.is_file() else f"- `{ctx.rel(ctx.result(name))}`"
            )
        return "\n".join(lines) + "\n\nFrom:\n" + "\n".join(srcs) + "\n"

    return build


# ---------------------------------------------------------------- crab-tiny facts


def _safetensors_params(path: Path) -> int:
    """Parameter count from a safetensors header (the tensors are not read)."""
    with open(path, "rb") as f:
        (size,) = struct.unpack("<Q", f.read(8))
        if size > 16 * 2**20:
            raise ValueError("safetensors header too large")
        header = json.loads(f.read(size))
    return sum(math.prod(v["shape"]) for k, v in header.items() if k != "__metadata__")


def crab_tiny_facts(ctx: DocContext) -> str:
    """Size and training time of the shipped crab-tiny, from its files and ``training.json``."""
    folder = ctx.root / "assets" / "crab-tiny"
    weights = folder / "model.safetensors"
    card = ctx.json(folder / "training.json")
    try:
        params = _safetensors_params(weights)
        mb = weights.stat().st_size / 1e6
    except (OSError, ValueError, KeyError, struct.error):
        raise ReportError(f"{ctx.rel(weights)}: not a readable safetensors file") from None
    return (
        f"{params / 1e6:.2f} M parameters ({mb:.1f} MB of float32 weights); trained from scratch in "
        f"{card.get('wall_minutes_with_setup')} min wall clock, {card.get('train_minutes')} min of them "
        f"training steps (`{ctx.rel(folder / 'training.json')}`).\n"
    )


def crab_tiny_recipe(ctx: DocContext) -> str:
    """The recipe's phases (steps, batch, learning rate, what trains) from ``training.json``."""
    path = ctx.root / "assets" / "crab-tiny" / "training.json"
    recipe = ctx.json(path).get("recipe", {})
    lines = [
        "| phase | steps x batch | lr | trains | loss | tasks (sampling weight) | final loss |",
        "|---|---|---|---|---|---|---|",
    ]
    final = ctx.json(path).get("final_losses", {})
    for ph in recipe.get("phases", []):
        extra = [
            f"{k.replace('_weight', '').replace('_', ' ')} x{ph[k]:g}"
            for k in ("probe_weight", "seg_probe_weight", "seg_swap_weight")
            if ph.get(k)
        ]
        loss = ph.get("objective", "?") + (" + mask" if ph.get("mask_loss") else "")
        scale = "".join(f", {k} x{v:g}" for k, v in ph.get("lr_scale", {}).items())
        lines.append(
            f"| {ph['name']} | {ph['steps']} x {ph['batch_size']} | {ph['lr']:g}{scale} | "
            f"{', '.join(ph.get('trainable', []))} | {', '.join([loss, *extra])} | "
            f"{', '.join(f'{t} {w:g}' for t, w in ph.get('tasks', {}).items())} | "
            f"{final.get(ph['name'], '-')} |"
        )
    data = recipe.get("data", {})
    opt = sorted(
        {
            f"weight decay {ph.get('weight_decay', 0):g}, warm-up {ph.get('warmup_ratio', 0):.0%} of the "
            f"steps, gradient clipping at {ph.get('max_grad_norm', 0):g}"
            for ph in recipe.get("phases", [])
        }
    )
    return (
        "\n".join(lines)
        + f"\n\nAdamW, {'; '.join(opt)}; linear decay. Data: SynthAV `train`, {data.get('synth_per_task')} "
        f"samples per task, user seed {data.get('user_seed')}. From `{ctx.rel(path)}`.\n"
    )


def crab_tiny_architecture(ctx: DocContext) -> str:
    """The tiny model's geometry, read from the shipped ``config.json`` (one markdown bullet list)."""
    path = ctx.root / "assets" / "crab-tiny" / "config.json"
    c = ctx.json(path)
    try:
        v, au, q, a = c["vision"], c["audio"], c["vl_qformer"], c["al_qformer"]
        llm, lora, seg = c["llm"], c["lora"], c["seg"]
        grid = v["image_size"] // v["patch_size"]
        pixel = f", pixel embedding of {seg['pixel_dim']} channels" if seg.get("pixel_dim") else ""
        lines = [
            f"- Frames of {v['image_size']} px ({grid} x {grid} patches of {v['patch_size']} px) into a "
            f"{v['num_hidden_layers']}-layer, {v['hidden_size']}-wide ViT; a {au['encoder_layers']}-layer, "
            f"{au['encoder_embed_dim']}-wide BEATs.",
            f"- Q-Formers of {q['num_hidden_layers']} layer(s), {q['num_query_tokens']} queries per frame "
            f"and {a['num_query_tokens']} per audio second; per-unit index embeddings: "
            f"{q.get('unit_embeddings', 0)}.",
            f"- LLM: {llm['num_hidden_layers']} layers, {llm['hidden_size']} wide, vocabulary of "
            f"{llm['vocab_size']} tokens.",
            f"- I-LoRA: {lora['num_heads']} heads, r = {lora['r']}, alpha = {lora['alpha']:g}, dropout "
            f"{lora['dropout']:g}, on {', '.join(lora['target_modules'])}.",
            f"- Mask decoder: `{seg.get('decoder', 'reference')}`{pixel}, frames of {seg['image_size']} px, "
            f"{seg['num_avss_classes']} AVSS classes.",
        ]
    except (KeyError, TypeError, ZeroDivisionError):
        raise ReportError(f"{ctx.rel(path)}: not a crab model config") from None
    return "\n".join(lines) + f"\n\nFrom `{ctx.rel(path)}`.\n"


__all__ = ["crab_tiny_architecture", "crab_tiny_facts", "crab_tiny_recipe", "seg_selection_table"]


# ---------------------------------------------------------------- every candidate side by side


def candidates_table(entries: Sequence[tuple[str, str]]):
    """A builder putting the quality of several crab-tiny versions side by side: ``entries`` =
    (column label, folder under the results dir, ``""`` for the results dir itself). Each folder's
    ``crab_tiny_quality.json`` is read; all must score the same split seeds (else ``ReportError``).
    One row per issue #13 target, one column per version, each cell ``test / compositional``."""
    from .reports import PRIMARY, SPLITS, TARGETS, load_results

    def build(ctx: DocContext) -> str:
        cols, seeds = [], None
        for label, sub in entries:
            path = (ctx.results_dir / sub if sub else ctx.results_dir) / f"{PRIMARY}.json"
            by_split = {r.split: r for r in load_results([path])}
            got = {s: (by_split[s].seed, by_split[s].counts.get("avqa")) for s in SPLITS if s in by_split}
            if seeds is None:
                seeds = got
            elif got != seeds:
                raise ReportError(f"{ctx.rel(path)}: splits {got} differ from the first column's {seeds}")
            cols.append((label, by_split, path))
        head = ["metric", "target", "baseline (test / comp.)"] + [label for label, _, _ in cols]
        lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for t in TARGETS:
            first = cols[0][1]
            base = " / ".join(_num(first[s].baseline(t.task, t.key)) if s in first else "-" for s in SPLITS)
            cells = [t.label, t.text, base]
            for _, by_split, _ in cols:
                vals = [by_split[s].value(t.task, t.key) if s in by_split else None for s in SPLITS]
                cells.append(" / ".join(_num(v, bold=v is not None and t.met(v)) for v in vals))
            lines.append("| " + " | ".join(cells) + " |")
        where = ", ".join(f"{s}: seed {seed}, n={n} per task" for s, (seed, n) in (seeds or {}).items())
        srcs = "\n".join(f"- {label}: `{ctx.rel(path)}`" for label, _, path in cols)
        return (
            "\n".join(lines)
            + f"\n\nEach cell: test / test-compositional ({where}; the same items for every version). "
            + "Bold: target met. Baseline: the majority / trivial answer on the same items.\n\n"
            + _reach_summary([(label, by_split) for label, by_split, _ in cols])
            + "From:\n"
            + srcs
            + "\n"
        )

    return build


def _reach_summary(cols: Sequence[tuple[str, dict]]) -> str:
    """Which targets some version meets on both splits, on one split only, or on none, and which
    cells are not above their majority baseline (``cols``: (label, results by split))."""
    from .reports import SPLITS, TARGETS

    both, one, none = [], [], []
    under: dict[tuple[str, str], list[str]] = {}
    for t in TARGETS:
        met: dict[str, list[str]] = {}  # version -> splits on which it meets the target
        for label, by_split in cols:
            for s in (s for s in SPLITS if s in by_split):
                v, base = by_split[s].value(t.task, t.key), by_split[s].baseline(t.task, t.key)
                if v is None:
                    continue
                if t.met(v):
                    met.setdefault(label, []).append(s)
                if base is not None and not (v > base if t.higher_is_better else v < base):
                    under.setdefault((t.label, s), []).append(label)
        if any(len(splits) == len(SPLITS) for splits in met.values()):
            both.append(t.label)
        elif met:
            one.append(f"{t.label} (" + ", ".join(f"{lab} {s[0]}" for lab, s in met.items()) + ")")
        else:
            none.append(t.label)
    parts = [
        f"Met by some version on both splits: {', '.join(both) or 'none'}.",
        f"On one split only: {'; '.join(one) or 'none'}.",
        f"By no version: {', '.join(none) or 'none'}.",
        "Not above the majority baseline: "
        + ("; ".join(f"{m} on {s} ({', '.join(labs)})" for (m, s), labs in under.items()) or "none")
        + ".",
    ]
    return " ".join(parts) + "\n\n"


def _num(v: float | None, bold: bool = False) -> str:
    if v is None:
        return "-"
    return f"**{v:.3f}**" if bold else f"{v:.3f}"
