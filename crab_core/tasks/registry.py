"""The task registry: ``TASKS[name] -> TaskSpec`` and :func:`get_task`."""

from __future__ import annotations

from crab_core.errors import TaskError
from crab_core.tasks.prompts import INSTRUCTIONS, PROMPT_CHOICES
from crab_core.tasks.spec import PromptVariant, TaskSpec

TEXT_TOKENS = 500
AVS_TOKENS = 100
_VA = ("video", "audio")
_IA = ("image", "audio")
_SEG_TAGS = ("mask_start", "mask_end")


def _variants(task: str, layout: dict[str, tuple[tuple[str, ...], str, int]]) -> dict[str, PromptVariant]:
    """Pair each variant's instruction text with its (blocks, audio_mode, num_seconds)."""
    return {
        v: PromptVariant(INSTRUCTIONS[task][v], blocks, mode, secs)
        for v, (blocks, mode, secs) in layout.items()
    }


def _same(blocks, mode, secs, variants=("test", "train", "quick_start")):
    return {v: (blocks, mode, secs) for v in variants}


def _spec(name: str, description: str, layout, **kw) -> TaskSpec:
    return TaskSpec(
        name=name,
        description=description,
        variants=_variants(name, layout),
        default_variant=PROMPT_CHOICES[name][0],
        **kw,
    )


def _build() -> dict[str, TaskSpec]:
    seg = dict(answer_tags=_SEG_TAGS, parser="parse_seg", max_new_tokens=AVS_TOKENS)
    tasks = [
        _spec(
            "ave",
            "Audio-visual event localization: the AV event and its time range",
            _same(_VA, "uniform", 10),
            answer_tags=("event", "range"),
            parser="parse_ave",
            metrics=("ave_accuracy",),
        ),
        _spec(
            "avvp",
            "Audio-visual video parsing: every audio and visual event with its time ranges",
            _same(_VA, "uniform", 10),
            answer_tags=("audio_event", "visual_event"),
            parser="parse_avvp",
            metrics=("avvp",),
        ),
        _spec(
            "avqa",
            "Audio-visual question answering (MUSIC-AVQA style)",
            _same(_VA, "avqa", 10),
            needs_question=True,
            answer_tags=("answer",),
            parser="parse_avqa",
            metrics=("avqa_accuracy",),
        ),
        _spec(
            "arig",
            "Audio-referred image grounding: class and box of the sounding object",
            {"test": (_IA, "uniform", 5), "train": (_IA, "uniform", 5), "quick_start": (_IA, "single", 1)},
            num_frames=5,
            answer_tags=("obj",),
            parser="parse_arig",
            metrics=("arig",),
        ),
        _spec(
            "s4",
            "Single-source sound segmentation (AVSBench-object S4)",
            {"test": (_VA, "uniform", 5), "train": (_VA, "uniform", 5), "quick_start": (_IA, "single", 1)},
            num_frames=5,
            metrics=("binary_seg",),
            mask_kind="binary",
            **seg,
        ),
        _spec(
            "ms3",
            "Multi-source sound segmentation (AVSBench-object MS3)",
            {"test": (_VA, "uniform", 5), "train": (_VA, "uniform", 5), "quick_start": (_IA, "single", 1)},
            num_frames=5,
            metrics=("binary_seg",),
            mask_kind="binary",
            **seg,
        ),
        _spec(
            "avss",
            "Audio-visual semantic segmentation (AVSBench-semantic, 71 classes)",
            {"test": (_IA, "single", 1), "train": (_VA, "uniform", 10), "quick_start": (_IA, "single", 1)},
            metrics=("avss_seg",),
            mask_kind="classes",
            **seg,
        ),
        _spec(
            "ref-avs",
            "Referring audio-visual segmentation from an expression",
            {
                "test": (("video", "audio", "image"), "uniform", 10),
                "train": (_VA, "uniform", 10),
                "quick_start": (_IA, "uniform", 10),
            },
            needs_question=True,
            metrics=("binary_seg", "null_s"),
            mask_kind="binary",
            **seg,
        ),
        _spec(
            "caption",
            "Audio-visual captioning (VALOR style)",
            _same(_VA, "uniform", 10, ("test", "train")),
            parser="parse_caption",
        ),
    ]
    return {t.name: t for t in tasks}


#: All tasks, keyed by name.
TASKS: dict[str, TaskSpec] = _build()


def seg_tasks(kind: str | None = None) -> tuple[str, ...]:
    """Names of the segmentation tasks (``mask_kind`` set), or of those whose ``mask_kind`` is ``kind``."""
    return tuple(n for n, t in TASKS.items() if t.mask_kind is not None and kind in (None, t.mask_kind))


def get_task(name: str | TaskSpec) -> TaskSpec:
    """Return the spec of task ``name`` (a spec is returned unchanged).

    Raises:
        TaskError: unknown task name (the message lists the known ones).
    """
    if isinstance(name, TaskSpec):
        return name
    key = str(name).strip().lower()
    if key in TASKS:
        return TASKS[key]
    raise TaskError(f"unknown task {name!r}; known tasks: {', '.join(sorted(TASKS))}")
