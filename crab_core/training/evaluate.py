"""Quick metric evaluation of a model on tokenised samples: generate, parse, score.

Uses the inference path of the app: :meth:`CrabModel.encode_media_batch` on the media,
:meth:`CrabModel.generate` (greedy, batched), and the one scoring path of
:mod:`crab_core.metrics.scoring` (as ``eval``), with the majority baseline of each task next to it.
Headline numbers (``summary``): AVE accuracy, AVQA accuracy, AVVP segment-level F1 (audio,
visual), ARIG cIoU, S4 / MS3 / Ref-AVS mIoU, Ref-AVS null S, AVSS mIoU over the classes present
(``miou_present``; ``miou`` divides by all 71 AVSBench classes).
"""

from __future__ import annotations

import logging
from collections import defaultdict

import numpy as np
import torch

from ..errors import TaskError
from ..metrics import majority_baseline
from ..metrics.scoring import Generated, TaskScorer, score
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
    max_new_tokens: int = 256,
) -> list[tuple[str, np.ndarray | None]]:
    """Greedy answers (text without EOS) and mask outputs for ``items``, in order.

    Masks are ``(C, S, S)`` float32 logits (``C`` = 1 for binary tasks, the AVSS classes for AVSS), or None.
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
            out.append((tokenizer.decode(ids), None if m is None else m.float().cpu().numpy()))
    model.train(was)
    return out


def score_items(
    task: str, items: list[TrainItem], outs: list[tuple[str, np.ndarray | None]], num_classes: int
) -> tuple[dict, dict]:
    """Metrics and majority baseline of ``task`` over ``items`` and their generated ``outs``.

    Goes through the one scoring path (:func:`crab_core.metrics.scoring.load_gt` +
    :func:`~crab_core.metrics.scoring.score`); an item's GT mask is ``item.raw.mask``.

    Returns:
        ``({metric: {key: value}}, {key: baseline value})``; a metric without data (Ref-AVS null S
        when no item is a null one) is left out.
    """
    scorer = TaskScorer(task, num_classes)
    gts = []
    for it, (text, mask) in zip(items, outs, strict=True):
        gt = dict(it.raw.gt)
        if it.raw.mask is not None:
            gt["mask"] = it.raw.mask
        gt = scorer.load(gt)
        score(task, Generated(text, mask), gt, scorer.accs)
        gts.append(gt)
    return scorer.compute(), _baseline(task, gts, num_classes)


def _baseline(task: str, gts: list[dict], num_classes: int) -> dict:
    try:
        return majority_baseline(task, gts, num_classes) if gts else {}
    except (TaskError, KeyError, ValueError) as exc:  # a task without a metric (caption), a partial gt
        log.debug("no baseline for %s: %s", task, exc)
        return {}


def evaluate_items(
    model: CrabModel,
    tokenizer: CrabTokenizer,
    items: list[TrainItem],
    batch_size: int = 16,
    max_new_tokens: int = 256,
    examples: int = 2,
) -> dict:
    """Metrics per task, majority baselines, headline summary and a few example answers.

    ``max_new_tokens`` (256) covers the longest SynthAV answer: AVVP with one audio tag per second
    (``DataSpec.avvp_layout="seconds"``) reaches ~190 tokens.

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
        outs = generate_items(model, tokenizer, its, batch_size, max_new_tokens)
        metrics, base = score_items(task, its, outs, model.config.seg.num_avss_classes)
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
            if name not in metrics:
                continue
            res["summary"][f"{task}/{key}"] = round(float(metrics[name].get(key, 0.0)), 4)
            if key in base:
                res["summary"][f"{task}/{key}@majority"] = round(float(base[key]), 4)
    return res
