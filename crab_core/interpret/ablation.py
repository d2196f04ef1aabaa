"""Head ablation and forcing: run a task with heads disabled, routing forced to one head, or a mix.

Every variant decodes the same prompt from the same encoded media (encoded once), under a
:class:`~crab_core.model.ilora.RoutingControl` attached with
:func:`crab_core.model.ilora_inject.routing` (restored on exit). With ground truth, each variant's
answer is scored through the one scoring path of ``eval`` (:mod:`crab_core.metrics.scoring`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..metrics.scoring import TaskScorer, avss_classes
from ..metrics.segmentation import AVSS_CLASSES
from ..model.crab import EncodedMedia
from ..model.ilora import RoutingControl
from ..model.ilora_inject import iter_ilora_layers, routing
from ..pipeline import PreparedInput, TaskResult
from ..tasks import get_task
from .capture import RoutingTrace, capture_routing
from .inputs import RawInput, Request, encode, load_input, make_sample

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Variant:
    """A routing variant.

    Attributes:
        name: label (``normal``, ``only_h0``, ``without_h1``, ``mix_...``).
        head_mask: per head 1 (keep) / 0 (drop), or None.
        forced: fixed per-head weights replacing the router output, or None.
        renormalize: rescale the masked router weights to sum to 1.
    """

    name: str
    head_mask: tuple[float, ...] | None = None
    forced: tuple[float, ...] | None = None
    renormalize: bool = False

    @classmethod
    def normal(cls) -> Variant:
        return cls("normal")

    @classmethod
    def only(cls, head: int, num_heads: int) -> Variant:
        """Routing forced one-hot to ``head`` (the head alone, at full weight)."""
        return cls(f"only_h{head}", forced=tuple(float(h == head) for h in range(num_heads)))

    @classmethod
    def without(cls, head: int, num_heads: int, renormalize: bool = False) -> Variant:
        """``head`` removed; the others keep their router weights (renormalised on request)."""
        return cls(
            f"without_h{head}",
            head_mask=tuple(float(h != head) for h in range(num_heads)),
            renormalize=renormalize,
        )

    @classmethod
    def mix(cls, weights: Sequence[float], name: str | None = None) -> Variant:
        """A fixed mix of heads for every token."""
        w = tuple(float(x) for x in weights)
        return cls(name or "mix_" + "_".join(f"{x:g}" for x in w), forced=w)

    def control(self) -> RoutingControl | None:
        """The :class:`RoutingControl` of this variant (None for ``normal``)."""
        if self.head_mask is None and self.forced is None:
            return None
        return RoutingControl(
            head_mask=None if self.head_mask is None else torch.tensor(self.head_mask),
            renormalize=self.renormalize,
            forced_weights=None if self.forced is None else torch.tensor(self.forced),
        )


def single_head_variants(num_heads: int) -> list[Variant]:
    """``normal``, then ``only_h{h}`` and ``without_h{h}`` for every head."""
    out = [Variant.normal()]
    out += [Variant.only(h, num_heads) for h in range(num_heads)]
    out += [Variant.without(h, num_heads) for h in range(num_heads)]
    return out


@dataclass
class RunOutput:
    """One variant's run: the answer beside its routing and metrics.

    Attributes:
        variant: what was applied. result: the :class:`~crab_core.pipeline.TaskResult` (text,
        parsed, mask). trace: the routing trace when captured. metrics: per-sample metric values
        when ground truth was given (``{"ave_accuracy.accuracy": ...}``). seconds: decode time.
    """

    variant: Variant
    result: TaskResult
    trace: RoutingTrace | None = None
    metrics: dict[str, float] | None = None
    seconds: float = 0.0


def seg_token_ids(config) -> list[int]:
    """Ids labelled ``seg`` in traces: ``<mask_start>``, ``<mask_end>`` and every ``<mask_i>``."""
    ids = config.token_ids
    return [ids["<mask_start>"], ids["<mask_end>"], *config.mask_token_ids]


def generate(
    pipeline,
    raw: RawInput,
    media: EncodedMedia | None = None,
    variant: Variant | None = None,
    capture: bool = False,
    max_new_tokens: int | None = None,
    reference: str | None = None,
) -> RunOutput:
    """Decode ``raw`` once under ``variant`` (optionally capturing the routing).

    Args:
        pipeline: a :class:`~crab_core.pipeline.CrabPipeline`.
        raw: the request's tensors. media: its encoding (computed when None).
        variant: routing variant (None: normal). capture: record a :class:`RoutingTrace`.
        max_new_tokens: decode budget (default: the task's).
        reference: a reference answer text; its mean per-token NLL under the variant is stored in
            ``metrics["reference_nll"]`` (a continuous score that needs no parsing).
    """
    model = pipeline.model
    variant = variant or Variant.normal()
    media = media if media is not None else encode(model, raw)
    sample = make_sample(raw, media)
    budget = max_new_tokens or get_task(raw.task).max_new_tokens
    ctl = variant.control()
    with ExitStack() as stack:
        if ctl is not None:
            stack.enter_context(routing(model.llm, ctl))
        rec = stack.enter_context(capture_routing(model)) if capture else None
        t0 = time.perf_counter()
        gen = model.generate([sample], max_new_tokens=budget)
        seconds = time.perf_counter() - t0
        nll = (
            None if reference is None else answer_nll(model, raw, media, pipeline.tokenizer.encode(reference))
        )
    prep = PreparedInput(sample, raw.prompt, media, False, 0.0, 0.0)
    result = pipeline.result_from_generation(raw.task, prep, gen, {"generate": seconds})
    trace = None
    if rec is not None:
        n = int(gen.decode.lengths[0])
        trace = rec.trace(
            gen.batch,
            gen.decode.sequences[0, :n].tolist(),
            tokenizer=pipeline.tokenizer,
            seg_token_ids=seg_token_ids(model.config),
        )
    return RunOutput(variant, result, trace, None if nll is None else {"reference_nll": nll}, seconds)


@torch.no_grad()
def answer_nll(model, raw: RawInput, media: EncodedMedia, target_ids: Sequence[int]) -> float:
    """Mean per-token NLL of ``target_ids`` (+ EOS) after the prompt, teacher-forced, under the
    routing currently attached to the model."""
    ids = [*target_ids, model.config.llm.eos_token_id]
    batch = model.prepare([make_sample(raw, media, ids)])
    out = model.llm(
        inputs_embeds=batch.inputs_embeds,
        attention_mask=batch.attention_mask,
        position_ids=batch.position_ids,
        use_cache=False,
    )
    logits = out.logits[0, -len(ids) - 1 : -1].float()
    return float(torch.nn.functional.cross_entropy(logits, torch.tensor(ids, device=logits.device)))


def run_variants(
    pipeline,
    request: Request | RawInput,
    variants: Sequence[Variant] | None = None,
    gt: Mapping[str, Any] | None = None,
    gt_root: str | Path | None = None,
    capture: bool = False,
    max_new_tokens: int | None = None,
    reference: str | None = None,
) -> list[RunOutput]:
    """Run one request under several routing variants (media encoded once).

    Args:
        pipeline: a :class:`~crab_core.pipeline.CrabPipeline`.
        request: files (:class:`Request`) or tensors (:class:`RawInput`).
        variants: default :func:`single_head_variants` of the model's head count.
        gt: the manifest ``gt`` object; when given, every run gets ``metrics``.
        gt_root: folder that relative mask paths in ``gt`` are relative to.
        capture: also record each run's routing trace.
        max_new_tokens: decode budget (default: the task's).
        reference: reference answer text (manifest ``output``): adds ``reference_nll``.

    Returns:
        One :class:`RunOutput` per variant, in order.
    """
    raw = request if isinstance(request, RawInput) else load_input(pipeline, request)
    variants = list(variants) if variants is not None else single_head_variants(num_heads(pipeline.model))
    media = encode(pipeline.model, raw)
    outs = []
    for v in variants:
        out = generate(pipeline, raw, media, v, capture, max_new_tokens, reference)
        if gt is not None:
            scorer = Scorer(raw.task, gt_root, avss_classes(pipeline))
            scorer.update(out.result, gt)
            out.metrics = {**scorer.compute(), **(out.metrics or {})}
        outs.append(out)
    return outs


def num_heads(model) -> int:
    """H of the model's I-LoRA layers."""
    for _, layer in iter_ilora_layers(model.llm):
        return next(iter(layer.num_heads.values()))
    raise ValueError("the model has no I-LoRA layer")


def randomize_heads(model, std: float = 0.05, seed: int = 0) -> None:
    """Give every LoRA B head random weights (demos and tests on an untrained model, whose B heads
    are zero, so that heads change the output)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for _, layer in iter_ilora_layers(model.llm):
            for w in (m.weight for m in layer.lora_B.values()):
                w.copy_(torch.randn(w.shape, generator=g) * std)


class Scorer:
    """One task's metrics over :class:`TaskResult` s and manifest ``gt`` objects, through the one
    scoring path (:class:`crab_core.metrics.scoring.TaskScorer`, as ``eval``).

    GT masks named by path in ``gt`` are loaded as ``eval`` loads them (AVSS: ``index`` PNGs unless
    ``mask_format`` is ``palette``), relative to ``root``; a missing predicted mask counts as empty.

    Args:
        task: the task. root: folder of relative GT mask paths.
        num_classes: AVSS classes (the model's ``seg.num_avss_classes``); None: the channel count of
            the first predicted AVSS mask (71 without one).
    """

    def __init__(self, task: str, root: str | Path | None = None, num_classes: int | None = None) -> None:
        self.task = get_task(task).name
        self.root = Path(root) if root is not None else None
        self.num_classes = num_classes
        self._scorer: TaskScorer | None = None

    def update(self, result: TaskResult, gt: Mapping[str, Any]) -> None:
        """Add one sample."""
        if self._scorer is None:
            classes = self.num_classes
            if classes is None:
                lg = result.mask_logits if get_task(self.task).mask_kind == "classes" else None
                classes = int(lg.shape[0]) if lg is not None else AVSS_CLASSES
            self._scorer = TaskScorer(self.task, classes)
        self._scorer.root = self.root
        self._scorer.update(result, gt)

    def compute(self) -> dict[str, float]:
        """``{"<metric>.<key>": value}`` of every accumulator that received data."""
        return {} if self._scorer is None else self._scorer.flat()
