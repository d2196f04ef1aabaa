"""Crab tasks as data: specs, prompts, answer renderers and parsers."""

from crab_core.tasks.parsers import (
    PARSERS,
    ARIGPrediction,
    AVEPrediction,
    AVQAPrediction,
    AVVPPrediction,
    CaptionPrediction,
    SegPrediction,
    clean_text,
    normalize_answer,
    normalize_label,
    parse,
    parse_arig,
    parse_ave,
    parse_avqa,
    parse_avvp,
    parse_caption,
    parse_seg,
)
from crab_core.tasks.prompts import (
    AUDIO_BLOCK,
    DEFAULT_SYSTEM,
    IMAGE_BLOCK,
    INSTRUCTIONS,
    MASK_SPAN,
    ORDINALS,
    PROMPT_CHOICES,
    VIDEO_BLOCK,
    build_instruction,
    build_prompt,
    ordinal,
    render_target,
    validate_question,
    wrap_chat,
)
from crab_core.tasks.registry import TASKS, get_task
from crab_core.tasks.spec import PromptVariant, TaskSpec

__all__ = [
    "ARIGPrediction", "AUDIO_BLOCK", "AVEPrediction", "AVQAPrediction", "AVVPPrediction", "CaptionPrediction",
    "DEFAULT_SYSTEM", "IMAGE_BLOCK", "INSTRUCTIONS", "MASK_SPAN", "ORDINALS", "PARSERS", "PROMPT_CHOICES",
    "PromptVariant", "SegPrediction", "TASKS", "TaskSpec", "VIDEO_BLOCK", "build_instruction", "build_prompt",
    "clean_text", "get_task", "normalize_answer", "normalize_label", "ordinal", "parse", "parse_arig",
    "parse_ave", "parse_avqa", "parse_avvp", "parse_caption", "parse_seg", "render_target",
    "validate_question", "wrap_chat",
]
