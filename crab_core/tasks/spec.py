"""Task specifications as plain data.

A :class:`TaskSpec` describes one Crab task: which inputs it needs, how its prompt is built (one
:class:`PromptVariant` per prompt flavour: ``'test'``, ``'train'``, ``'quick_start'``), which tags its
answer uses, which parser reads the answer and which metrics score it. Nothing here loads media or
models; the specs are consumed by the prompt builder, the media loaders and the evaluator.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from crab_core.errors import TaskError

#: Names of the prompt variants (reference: ``UnifiedTestDataset``, ``UnifiedDataset``, quick start).
VARIANTS: tuple[str, ...] = ("test", "train", "quick_start")
#: Modality blocks that can appear in a prompt, in the reference's naming.
BLOCKS: tuple[str, ...] = ("video", "audio", "image")
#: Audio sampling modes: ``uniform`` = ``num_seconds`` one-second windows over the clip,
#: ``avqa`` = 10 windows of 2 s at t = 0, 6, ..., 54 s (MUSIC-AVQA), ``single`` = the one-second
#: window at the target frame's second.
AUDIO_MODES: tuple[str, ...] = ("uniform", "avqa", "single")
#: What a task's ground-truth mask holds: ``binary`` (object / background: S4, MS3, Ref-AVS) or
#: ``classes`` (a class index per pixel, 0 = background: AVSS). Tasks without a mask have ``None``.
MASK_KINDS: tuple[str, ...] = ("binary", "classes")


@dataclass(frozen=True)
class PromptVariant:
    """One prompt flavour of a task.

    Attributes:
        template: instruction text after the modality blocks. May contain ``{question}``,
            ``{question_lower}`` (the question lower-cased, as the reference does for Ref-AVS) and
            ``{nth}`` (ordinal word of the target second: ``first`` ... ``tenth``).
        blocks: modality blocks written before the instruction, in order (``video``/``audio``/``image``).
        audio_mode: one of :data:`AUDIO_MODES`.
        num_seconds: number of audio windows for ``uniform`` (10 or 5); 1 for ``single``; 10 for ``avqa``.
    """

    template: str
    blocks: tuple[str, ...]
    audio_mode: str = "uniform"
    num_seconds: int = 10

    def __post_init__(self) -> None:
        bad = [b for b in self.blocks if b not in BLOCKS]
        if bad:
            raise TaskError(f"unknown modality block(s) {bad}; known: {list(BLOCKS)}")
        if self.audio_mode not in AUDIO_MODES:
            raise TaskError(f"unknown audio_mode {self.audio_mode!r}; known: {list(AUDIO_MODES)}")

    @property
    def needs_ordinal(self) -> bool:
        """Whether the template names the target second (``{nth}``)."""
        return "{nth}" in self.template


@dataclass(frozen=True)
class TaskSpec:
    """A Crab task described as data.

    Attributes:
        name: registry key (``ave``, ``avvp``, ``avqa``, ``arig``, ``s4``, ``ms3``, ``avss``, ``ref-avs``,
            ``caption``).
        description: one line for UIs and docs.
        variants: prompt variants keyed by variant name (subset of :data:`VARIANTS`).
        default_variant: the variant used when none is asked for (see ``prompts.PROMPT_CHOICES``).
        num_frames: video frames sampled uniformly over the clip (10, or 5 for the AVSBench-object
            tasks); also the number of valid target seconds for seg tasks.
        needs_question: the task takes a question / referring expression.
        mask_kind: ``None`` (no mask), or one of :data:`MASK_KINDS` for a segmentation task (the target
            frame ``image`` feeds the mask decoder and the answer carries
            ``<mask_start><mask_0>...<mask_5><mask_end>``); selects the mask decoder head, the mask
            loss, the ground-truth loader and the metric. :attr:`needs_mask` is ``mask_kind is not None``.
        answer_tags: tags that delimit the machine-readable answer in the output text.
        parser: name of the parsing function in :mod:`crab_core.tasks.parsers`.
        metrics: names of metric accumulators in :mod:`crab_core.metrics` (``METRICS``).
        max_new_tokens: generation budget (reference: 500 text, 100 AVS).
    """

    name: str
    description: str
    variants: Mapping[str, PromptVariant]
    default_variant: str = "test"
    num_frames: int = 10
    needs_question: bool = False
    mask_kind: str | None = None
    answer_tags: tuple[str, ...] = ()
    parser: str = "parse_caption"
    metrics: tuple[str, ...] = ()
    max_new_tokens: int = 500

    def __post_init__(self) -> None:
        if not self.variants:
            raise TaskError(f"task {self.name!r} has no prompt variant")
        unknown = [v for v in self.variants if v not in VARIANTS]
        if unknown:
            raise TaskError(f"task {self.name!r}: unknown variant(s) {unknown}; known: {list(VARIANTS)}")
        if self.default_variant not in self.variants:
            raise TaskError(f"task {self.name!r}: default variant {self.default_variant!r} is not defined")
        if self.num_frames not in (5, 10):
            raise TaskError(f"task {self.name!r}: num_frames must be 5 or 10, got {self.num_frames}")
        if self.mask_kind is not None and self.mask_kind not in MASK_KINDS:
            raise TaskError(
                f"task {self.name!r}: mask_kind must be None or one of {list(MASK_KINDS)}, "
                f"got {self.mask_kind!r}"
            )
        object.__setattr__(self, "variants", dict(self.variants))  # own copy; picklable

    @property
    def needs_mask(self) -> bool:
        """A segmentation task (``mask_kind`` is set)."""
        return self.mask_kind is not None

    def __hash__(self) -> int:  # ``variants`` is a dict; task names are unique
        return hash(self.name)

    def variant(self, name: str | None = None) -> PromptVariant:
        """Return the prompt variant ``name`` (default variant when ``None``).

        Raises:
            TaskError: unknown variant for this task.
        """
        key = self.default_variant if name is None else name
        if key not in self.variants:
            raise TaskError(
                f"task {self.name!r} has no prompt variant {key!r}; available: {sorted(self.variants)}"
            )
        return self.variants[key]

    @property
    def instructions(self) -> dict[str, str]:
        """Instruction templates keyed by variant."""
        return {k: v.template for k, v in self.variants.items()}

    @property
    def audio_mode(self) -> str:
        """Audio sampling mode of the default variant."""
        return self.variant().audio_mode

    @property
    def num_seconds(self) -> int:
        """Number of audio windows of the default variant."""
        return self.variant().num_seconds

    def required_inputs(self, variant: str | None = None) -> tuple[str, ...]:
        """Inputs a sample must provide for ``variant``.

        The prompt's modality blocks, plus ``image`` for seg tasks (the target frame feeds the mask
        decoder even when the prompt has no image block) and ``question`` when the task needs one.
        """
        items = list(self.variant(variant).blocks)
        if self.needs_mask and "image" not in items:
            items.append("image")
        if self.needs_question:
            items.append("question")
        return tuple(items)

    @property
    def inputs(self) -> tuple[str, ...]:
        """Required inputs of the default variant."""
        return self.required_inputs()
