"""Prompt texts of the reference, the instruction builder and the LLaMA-2 chat wrapper.

All strings are copied from the reference datasets (crab-reference.md section 4):
``UnifiedTestDataset`` (variant ``'test'``), ``UnifiedDataset`` (``'train'``) and
``quick_start_dataset`` (``'quick_start'``). Each task has one default variant, recorded with its
reason in :data:`PROMPT_CHOICES`; the other variants stay selectable with ``variant=``.
"""

from __future__ import annotations

import unicodedata

from crab_core.errors import TaskError
from crab_core.tasks.spec import TaskSpec

#: Modality blocks, exactly as the reference writes them.
VIDEO_BLOCK = "This is a video:\n<video_start><video><video_end>\n"
AUDIO_BLOCK = "This is an audio:\n<audio_start><audio><audio_end>\n"
IMAGE_BLOCK = "This is an image:\n<image_start><image><image_end>\n"
BLOCK_TEXT: dict[str, str] = {"video": VIDEO_BLOCK, "audio": AUDIO_BLOCK, "image": IMAGE_BLOCK}

DEFAULT_SYSTEM = "You are a helpful assistant."
#: ``<mask_0>`` ... ``<mask_5>`` (2 image scales x 3 tokens per scale).
NUM_SEG_TOKENS = 6
SEG_TOKENS = "".join(f"<mask_{i}>" for i in range(NUM_SEG_TOKENS))
MASK_SPAN = f"<mask_start>{SEG_TOKENS}<mask_end>"
#: Ordinal words the reference uses for the target second (index 0 -> ``first``).
ORDINALS: tuple[str, ...] = (
    "first",
    "second",
    "third",
    "fourth",
    "fifth",
    "sixth",
    "seventh",
    "eighth",
    "ninth",
    "tenth",
)
MAX_QUESTION_CHARS = 1000

_SEG_TRAIN = (
    "Please recognize the category of object making sound in the video, and then segment out the "
    "object that makes the sound at the {nth} second of the video."
)
_SEG_QS = "Please segment out the object that makes the sound in the image."
_AVVP = (
    "Please determine the events that occur based on the visual and audio information in the video, "
    "as well as the start and end times of these events."
)

#: Instruction templates, task -> variant -> text (fields: question, question_lower, nth).
INSTRUCTIONS: dict[str, dict[str, str]] = {
    "ave": {
        "test": "Please describe the events and time range that occurred in the video.",
        "train": "Please describe the events and time range that occurred in the video.",
        "quick_start": "Please describe the events and time range that occurred in the video.",
    },
    "avvp": {
        "test": _AVVP,
        "train": _AVVP,
        "quick_start": (
            "Please determine the events that occur based on the visual and audio information, "
            "as well as the start and end time of these events."
        ),
    },
    "avqa": {
        "test": "Please answer this question: {question}",
        "train": "Please answer this question: {question}",
        "quick_start": "Please answer this question: {question}",
    },
    "arig": {
        "test": (
            "Please recognize the category of object that makes the sound and then output the "
            "location coordinates."
        ),
        "train": (
            "Please recognize the category of object that makes the sound and then output its "
            "location coordinates."
        ),
        "quick_start": "Please output the location coordinates of sounding object.",
    },
    "s4": {"test": _SEG_TRAIN, "train": _SEG_TRAIN, "quick_start": _SEG_QS},
    "ms3": {
        # Reference bug (crab-reference 4.5 / 8.16): the MS3 test prompt always says "third".
        "test": _SEG_TRAIN.replace("{nth}", "third"),
        "train": _SEG_TRAIN,
        "quick_start": _SEG_QS,
    },
    "avss": {
        "test": (
            "Please recognize the category of the object making the sound in the image and segment it out."
        ),
        "train": _SEG_TRAIN,
        "quick_start": _SEG_QS,
    },
    "ref-avs": {
        "test": (
            "Please segment out the corresponding object in the image based on the referential "
            "expression: {question}"
        ),
        "train": "Please segment out {question_lower} at the {nth} second in the video.",
        "quick_start": "Please segment out {question_lower} in the image.",
    },
    "caption": {
        "test": "Please describe this video.",
        "train": "Please describe this video and audio.",
    },
}

#: Default prompt variant per task, with the reason (copied into docs/deviations.md by the lead).
PROMPT_CHOICES: dict[str, tuple[str, str]] = {
    "ave": ("test", "train, test and quick-start prompts are identical"),
    "avvp": (
        "test",
        "test = train prompt; quick-start rewording ('start and end time') kept as 'quick_start'",
    ),
    "avqa": ("test", "train, test and quick-start prompts are identical"),
    "arig": ("test", "reference test-time prompt ('output the location coordinates'); train says 'its'"),
    "s4": ("test", "test = train (video + 5 s audio, correct ordinal); quick-start image prompt kept"),
    "ms3": (
        "train",
        "reference test prompt always says 'third second' (bug 8.16); train names the right second",
    ),
    "avss": (
        "test",
        "reference test-time formulation (image + 1-s audio) that produced the reported numbers",
    ),
    "ref-avs": ("test", "reference test-time prompt (video + audio + target image + expression)"),
    "caption": (
        "train",
        "model is only trained with 'describe this video and audio'; test prompt drops audio",
    ),
}


def ordinal(index: int) -> str:
    """Ordinal word of a 0-based second index (0 -> ``'first'``, 9 -> ``'tenth'``).

    Raises:
        TaskError: index outside 0..9.
    """
    if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < len(ORDINALS):
        raise TaskError(f"frame_index must be an int in 0..{len(ORDINALS) - 1}, got {index!r}")
    return ORDINALS[index]


def validate_question(question: str | None, max_chars: int = MAX_QUESTION_CHARS) -> str:
    """Clean and check a question / referring expression.

    Control characters are removed (tabs and line breaks become spaces), runs of whitespace collapse
    to one space, and the result is stripped.

    Raises:
        TaskError: not a string, empty after cleaning, or longer than ``max_chars``.
    """
    if not isinstance(question, str):
        raise TaskError(f"the question must be a string, got {type(question).__name__}")
    chars = []
    for ch in question:
        cat = unicodedata.category(ch)
        if ch in "\t\n\r\v\f" or cat == "Zl" or cat == "Zp":
            chars.append(" ")
        elif cat not in ("Cc", "Cf", "Cs", "Co", "Cn"):
            chars.append(ch)
    text = " ".join("".join(chars).split())
    if not text:
        raise TaskError("the question is empty")
    if len(text) > max_chars:
        raise TaskError(f"the question is too long ({len(text)} characters; at most {max_chars})")
    return text


def build_instruction(
    spec: TaskSpec,
    question: str | None = None,
    variant: str | None = None,
    frame_index: int | None = None,
) -> str:
    """Build the raw instruction (modality blocks + instruction text) of a task.

    Args:
        spec: the task.
        question: AVQA question or Ref-AVS expression (required when ``spec.needs_question``).
        variant: prompt variant; ``None`` -> ``spec.default_variant``.
        frame_index: 0-based target second, required when the template names it (``{nth}``).

    Returns:
        The instruction, e.g. ``"This is a video:\\n<video_start><video><video_end>\\n...Please ..."``.

    Raises:
        TaskError: unknown variant, missing/invalid question, missing/out-of-range frame index.
    """
    pv = spec.variant(variant)
    fields: dict[str, str] = {}
    if spec.needs_question:
        if question is None:
            raise TaskError(f"task {spec.name!r} needs a question")
        q = validate_question(question)
        fields.update(question=q, question_lower=q.lower())
    elif question is not None and question.strip():
        raise TaskError(f"task {spec.name!r} takes no question")
    if pv.needs_ordinal:
        if frame_index is None:
            raise TaskError(
                f"task {spec.name!r} (variant {variant or spec.default_variant!r}) needs frame_index"
            )
        if not isinstance(frame_index, int) or not 0 <= frame_index < spec.num_frames:
            raise TaskError(
                f"frame_index must be in 0..{spec.num_frames - 1} for task {spec.name!r}, got {frame_index!r}"
            )
        fields["nth"] = ordinal(frame_index)
    blocks = "".join(BLOCK_TEXT[b] for b in pv.blocks)
    return blocks + pv.template.format(**fields)


def wrap_chat(instruction: str, system: str = DEFAULT_SYSTEM) -> str:
    """LLaMA-2 chat template as the reference applies it (transformers 4.37.2 default).

    Returns:
        ``<s>[INST] <<SYS>>\\n{system}\\n<</SYS>>\\n\\n{instruction} [/INST]``, with the instruction
        (and system text) stripped.
    """
    return f"<s>[INST] <<SYS>>\n{system.strip()}\n<</SYS>>\n\n{instruction.strip()} [/INST]"


def build_prompt(
    spec: TaskSpec,
    question: str | None = None,
    variant: str | None = None,
    frame_index: int | None = None,
    system: str = DEFAULT_SYSTEM,
) -> str:
    """``wrap_chat(build_instruction(...))``: the full text fed to the tokenizer."""
    return wrap_chat(build_instruction(spec, question, variant, frame_index), system=system)


# ----------------------------------------------------------------------------------------------
# Targets: Crab-format answers rendered from structured ground truth (docs/manifest.md ``gt``).
# ----------------------------------------------------------------------------------------------


def _num(x: float) -> str:
    """Format a coordinate: integers without a decimal point."""
    xf = float(x)
    return str(int(xf)) if xf.is_integer() else f"{xf:g}"


def _ranges_text(ranges) -> str:
    return ",".join(f"({int(s)} {int(e)})" for s, e in ranges)


def _prefix(reasoning: str) -> str:
    reasoning = reasoning.strip()
    return reasoning + " " if reasoning else ""


def render_ave(gt: dict, reasoning: str = "") -> str:
    """``... the audible and visible event in the video is <event> drum </event>, and the time range
    is <range> 2,6 </range>.``"""
    s, e = gt["range"]
    lead = "Therefore, the" if reasoning.strip() else "The"
    return (
        f"{_prefix(reasoning)}{lead} audible and visible event in the video is "
        f"<event> {gt['event']} </event>, "
        f"and the time range is <range> {int(s)},{int(e)} </range>."
    )


def render_avvp(gt: dict, reasoning: str = "", legacy_tags: bool = False) -> str:
    """Every audio / visual event in its own ``<audio_event>Class,(s e),(s e)</audio_event>`` block."""
    a_tag, v_tag = ("audio", "visual") if legacy_tags else ("audio_event", "visual_event")
    parts = []
    for tag, key, noun in ((a_tag, "audio", "audio"), (v_tag, "visual", "visual")):
        items = [ev for ev in gt.get(key, []) if ev.get("ranges")]
        if items:
            blocks = " and ".join(
                f"<{tag}>{ev['event']},{_ranges_text(ev['ranges'])}</{tag}>" for ev in items
            )
            parts.append(f"The {noun} events are {blocks}.")
        else:
            parts.append(f"There is no {noun} event.")
    return _prefix(reasoning) + " ".join(parts)


def render_avqa(gt: dict, reasoning: str = "") -> str:
    """``... So the answer is <answer> yes </answer>.``"""
    return f"{_prefix(reasoning)}So the answer is <answer> {gt['answer']} </answer>."


def render_arig(gt: dict, variant: str = "test") -> str:
    """ARIG answer in the reference's train or test layout (``quick_start`` uses the test layout)."""
    x1, y1, x2, y2 = (_num(v) for v in gt["box"])
    head = f"The sounding object is {gt['object']}."
    if variant == "train":
        return (
            f"{head} Its coordinate of top left corner is ({x1},{y1}) and coordinate of bottom right "
            f"corner is ({x2},{y2})"
        )
    return f"{head} Its coordinates are <obj>({x1},{y1})({x2},{y2})</obj>."


def render_seg(task: str, gt: dict, variant: str, frame_index: int | None, question: str | None) -> str:
    """Seg-task answers ending with ``<mask_start><mask_0>...<mask_5><mask_end>``.

    A ``None`` object (Ref-AVS null expression) is written as ``nothing``.
    """
    obj = gt.get("object") or "nothing"
    if task == "avss" and variant == "test":
        return f"The category of the sound-making object and its mask image are {MASK_SPAN}"
    if task == "ref-avs":
        q = validate_question(question)
        if variant == "train":
            return (
                f"At the {ordinal(_need(frame_index))} second in the video, {q} is {obj}. "
                f"Its mask is {MASK_SPAN}"
            )
        return f"{q} is {MASK_SPAN}"
    if task == "ms3" and variant == "test":  # reference bug, kept faithful for this variant
        return (
            f"The object making the sound in the video is {obj}. "
            f"The mask of the object that makes the sound in the third second is {MASK_SPAN}"
        )
    nth = ordinal(_need(frame_index))
    return (
        f"The object making the sound in the video is {obj}. The mask of the object that makes the "
        f"sound at the {nth} second is {MASK_SPAN}"
    )


def _need(frame_index: int | None) -> int:
    if frame_index is None:
        raise TaskError("this target names the target second: pass frame_index")
    return frame_index


def render_target(
    task: str,
    gt: dict,
    variant: str | None = None,
    frame_index: int | None = None,
    question: str | None = None,
    reasoning: str = "",
    legacy_tags: bool = False,
) -> str:
    """Render the Crab-format answer for ``task`` from its structured ground truth.

    Args:
        task: task name.
        gt: ground truth as in docs/manifest.md (the ``mask`` of seg tasks is not needed).
        variant: prompt variant whose answer layout to use (default: the task's default variant;
            ``quick_start`` has no reference target and uses the default variant's layout).
        frame_index: target second for seg layouts naming it.
        question: Ref-AVS referring expression.
        reasoning: optional reasoning sentence(s) put before the tagged result (AVE/AVVP/AVQA).
        legacy_tags: AVVP only: use the raw AV-UIE ``<audio>``/``<visual>`` tags.

    Raises:
        TaskError: unknown task, or missing ``frame_index``/``question``.
        KeyError: ``gt`` lacks a field the task needs.
    """
    if task not in PROMPT_CHOICES:
        raise TaskError(f"unknown task {task!r}; known: {sorted(PROMPT_CHOICES)}")
    if variant is None or variant == "quick_start":
        variant = PROMPT_CHOICES[task][0]
    if task == "ave":
        return render_ave(gt, reasoning)
    if task == "avvp":
        return render_avvp(gt, reasoning, legacy_tags)
    if task == "avqa":
        return render_avqa(gt, reasoning)
    if task == "arig":
        return render_arig(gt, variant)
    if task == "caption":
        return str(gt["caption"]).strip()
    return render_seg(task, gt, variant, frame_index, question)
