"""Quick metric evaluation of a model on tokenised samples: generate, parse, score.

Uses the inference path of the app: :meth:`CrabModel.encode_media_batch` on the media,
:meth:`CrabModel.generate` (greedy, batched), the task parsers and the
:mod:`crab_core.metrics` accumulators, with the majority baseline of each task next to it.
Headline numbers (``summary``): AVE accuracy, AVQA accuracy, AVVP segment-level F1 (audio,
visual), ARIG cIoU, S4 / MS3 / Ref-AVS mIoU, Ref-AVS null S, AVSS mIoU over the classes present
(``miou_present``; ``miou`` divides by all 71 AVSBench classes).
"""

from __future__ import annotations

import logging
from collections import defaultdict

import numpy as np
import torch

from ..metrics import majority_baseline, metrics_for_task
from ..model.crab import CrabModel, CrabSample
from ..tasks import get_task
from ..tokenizer import CrabTokenizer
from .collate import collate
from .data import TrainItem

log = logging.getLogger(__name__)

HEADLINE = {
    "ave": [("ave_accuracy", "accuracy")],
    "avqa": [("avqa_accuracy", "accuracy")],
    "avvp": [("avvp", "segment_audio"), ("avvp", "segment_visual")],
    "arig": [("arig", "ciou")],
    "s4": [("binary_seg", "miou")],
    "ms3": [("binary_seg", "miou")],
    "avss": [("avss_seg", "miou_present")],
    "ref-avs": [("binary_seg", "miou"), ("null_s", "s")],
}


@torch.no_grad()
def generate_items(
    model: CrabModel,
    tokenizer: CrabTokenizer,
    items: list[TrainItem],
    batch_size: int = 16,
    max_new_tokens: int = 160,
) -> list[tuple[str, np.ndarray | None]]:
    """Greedy answers (text without EOS) and mask outputs for ``items``, in order.

    Masks are ``(S, S)`` probabilities (binary tasks) or ``(C, S, S)`` logits (AVSS), or None.
    """
    was = model.training
    model.eval()
    out: list[tuple[str, np.ndarray | None]] = []
    eos = model.config.llm.eos_token_id
    for s in range(0, len(items), batch_size):
        chunk = items[s : s + batch_size]
        batch = collate(chunk)
        media = [None] * len(chunk)
        for g in batch.groups:
            need_seg = any(get_task(chunk[i].task).needs_mask for i in g.index)
            for i, e in zip(
                g.index, model.encode_media_batch(g.video, g.audio, g.image, need_seg), strict=True
            ):
                media[i] = e
        samples = [
            CrabSample(input_ids=it.prompt_ids, media=m, task=it.task)
            for it, m in zip(chunk, media, strict=True)
        ]
        limit = min(max_new_tokens, max(get_task(it.task).max_new_tokens for it in chunk))
        gen = model.generate(samples, max_new_tokens=limit)
        for i in range(len(chunk)):
            ids = gen.decode.sequences[i, : int(gen.decode.lengths[i])].tolist()
            ids = ids[:-1] if ids and ids[-1] == eos else ids
            m = gen.masks[i]
            if m is not None:
                m = m.float().cpu()
                m = (m[0].sigmoid() if m.shape[0] == 1 else m).numpy()
            out.append((tokenizer.decode(ids), m))
    model.train(was)
    return out


def _score(task: str, accs: dict, text: str, mask, item: TrainItem) -> None:
    gt = item.raw.gt
    if task in ("ave", "avqa", "avvp", "arig"):
        next(iter(accs.values())).update(text, gt)
        return
    s = item.raw.image.shape[0]
    if task == "avss":
        pred = mask if mask is not None else np.zeros((1, s, s), np.float32)
        accs["avss_seg"].update(pred.astype(np.float32), item.raw.mask.astype(np.int64))
        return
    pred = mask if mask is not None else np.zeros((s, s), np.float32)
    if task == "ref-avs" and gt.get("null"):
        accs["null_s"].update(pred)
    else:
        accs["binary_seg"].update(pred, item.raw.mask.astype(np.float32))


def _baseline(task: str, items: list[TrainItem]) -> dict:
    gts = [it.raw.gt for it in items]
    if get_task(task).needs_mask:
        gts = [{"mask": it.raw.mask} for it in items if not it.raw.gt.get("null")]
    try:
        return majority_baseline(task, gts) if gts else {}
    except Exception as exc:  # a task without a metric (caption) or an empty set
        log.debug("no baseline for %s: %s", task, exc)
        return {}


def evaluate_items(
    model: CrabModel,
    tokenizer: CrabTokenizer,
    items: list[TrainItem],
    batch_size: int = 16,
    max_new_tokens: int = 160,
    examples: int = 2,
) -> dict:
    """Metrics per task, majority baselines, headline summary and a few example answers.

    Returns:
        ``{"summary": {"ave/accuracy": ..., ...}, "tasks": {task: {"n", "metrics", "baseline",
        "examples"}}}``.
    """
    by_task: dict[str, list[TrainItem]] = defaultdict(list)
    for it in items:
        if get_task(it.task).metrics:
            by_task[it.task].append(it)
    res: dict = {"summary": {}, "tasks": {}}
    for task, its in by_task.items():
        accs = metrics_for_task(task)
        if task == "avss":
            from ..metrics import AVSSMetric

            accs["avss_seg"] = AVSSMetric(num_classes=model.config.seg.num_avss_classes)
        outs = generate_items(model, tokenizer, its, batch_size, max_new_tokens)
        for it, (text, mask) in zip(its, outs, strict=True):
            _score(task, accs, text, mask, it)
        metrics = {name: acc.compute() for name, acc in accs.items()}
        base = _baseline(task, its)
        res["tasks"][task] = {
            "n": len(its),
            "metrics": metrics,
            "baseline": base,
            "examples": [
                {"target": it.raw.output, "output": o[0]}
                for it, o in zip(its[:examples], outs[:examples], strict=True)
            ],
        }
        for name, key in HEADLINE.get(task, []):
            res["summary"][f"{task}/{key}"] = round(float(metrics[name].get(key, 0.0)), 4)
            if key in base:
                res["summary"][f"{task}/{key}@majority"] = round(float(base[key]), 4)
    return res
