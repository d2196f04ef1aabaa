"""Parsers from generated answer text to structured predictions.

Every parser is pure and never raises: whatever the text (empty, garbage, huge, malformed tags), it
returns its frozen dataclass with ``parse_error`` set to a short reason when the answer could not be
read, and ``raw`` holding the original text. Text is first cleaned of BOS/EOS remnants (``<s>``,
``</s>``, SentencePiece ``▁``) and of an echoed prompt (everything up to the last ``[/INST]``).
"""

from __future__ import annotations

import functools
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass

from crab_core.tasks.prompts import NUM_SEG_TOKENS, ORDINALS
from crab_core.tasks.registry import get_task

logger = logging.getLogger(__name__)

BACKGROUND = "background"
_NUM = r"\d{1,9}(?:\.\d{1,9})?"
_SNUM = r"-?\d{1,9}(?:\.\d{1,9})?"
_EVENT_OPEN_RE = re.compile(r"<event>([^<\n]{0,200})")
_META_RE = re.compile(rf"event:\s*([^\n]{{0,200}}?)\s+start_time:\s*({_NUM})\s+end_time:\s*({_NUM})")
_NUMBER_RE = re.compile(_NUM)
_AVVP_TAG_RE = re.compile(r"<(/?)(audio_event|visual_event|audio|visual)>")
_SPAN_RE = re.compile(rf"\(\s*({_NUM})(?:\s*[,\-]\s*|\s*to\s*|\s+)({_NUM})\s*\)")
_NO_EVENT_RE = re.compile(r"\bno (audio|visual)(?: |_)?events?\b", re.I)
_ANSWER_FALLBACK_RE = re.compile(r"answer is\s+([^.<\n]+)", re.I)
_PAIR_RE = re.compile(rf"\(\s*({_SNUM})\s*,\s*({_SNUM})\s*\)")
_QUAD_RE = re.compile(rf"\(\s*({_SNUM})\s*,\s*({_SNUM})\s*,\s*({_SNUM})\s*,\s*({_SNUM})\s*\)")
_SOUNDING_RE = re.compile(r"sounding object is\s+([^.<\n]*)", re.I)
_MASK_TOKEN_RE = re.compile(r"<mask_(\d{1,3})>")
_ORDINAL_RE = re.compile(r"\b(?:at|in) the (" + "|".join(ORDINALS) + r") second\b", re.I)


def clean_text(text: object) -> str:
    """Strip BOS/EOS/pad remnants, SentencePiece markers and an echoed prompt. Never raises."""
    if text is None:
        return ""
    if not isinstance(text, str):
        try:
            text = str(text)
        except Exception:  # noqa: BLE001 - a parser must never raise
            return ""
    if "[/INST]" in text:
        text = text.rsplit("[/INST]", 1)[1]
    for tok in ("<s>", "</s>", "<unk>", "<pad>"):
        text = text.replace(tok, "")
    return text.replace("\u2581", " ").strip()


def tag_content(text: str, tag: str) -> str | None:
    """Text between the first ``<tag>`` and the next ``</tag>`` (``None`` if absent). Linear time,
    unlike a lazy regex, which rescans the rest of the text for every unmatched opening tag."""
    start = text.find(f"<{tag}>")
    if start < 0:
        return None
    start += len(tag) + 2
    end = text.find(f"</{tag}>", start)
    return text[start:end] if end >= 0 else None


def _norm_space(text: str) -> str:
    return " ".join(text.split())


def _safe(default_factory: Callable[[str, str], object]):
    """Decorator: any unexpected exception becomes a result with ``parse_error='internal: ...'``."""

    def deco(fn):
        @functools.wraps(fn)
        def wrapper(text, *args, **kwargs):
            try:
                return fn(text, *args, **kwargs)
            except Exception as exc:  # noqa: BLE001 - a parser must never raise
                logger.debug("parser %s failed", fn.__name__, exc_info=True)
                raw = text if isinstance(text, str) else repr(text)
                return default_factory(raw, f"internal: {type(exc).__name__}")

        return wrapper

    return deco


# ------------------------------------------------------------------------------------- AVE
@dataclass(frozen=True)
class AVEPrediction:
    """Parsed AVE answer: ``event`` class and ``range`` = (start, end) seconds, end exclusive."""

    event: str | None = None
    range: tuple[int, int] | None = None
    parse_error: str | None = None
    raw: str = ""

    def segments(self, num: int = 10) -> list[str]:
        """Per-second labels: the event on [start, end), ``'background'`` elsewhere.

        No event -> all background; an event without a range -> the event on every second.
        """
        if not self.event:
            return [BACKGROUND] * num
        if self.range is None:
            return [self.event] * num
        s, e = self.range
        return [self.event if s <= i < e else BACKGROUND for i in range(num)]


def _two_ints(text: str) -> tuple[int, int] | None:
    nums = _NUMBER_RE.findall(text)
    if len(nums) < 2:
        return None
    s, e = (int(round(float(n))) for n in nums[:2])
    return (s, e) if s <= e else (e, s)


@_safe(lambda raw, err: AVEPrediction(parse_error=err, raw=raw))
def parse_ave(text: str) -> AVEPrediction:
    """Read ``<event> X </event>`` and ``<range> s,e </range>`` (or the test-metadata form
    ``event:X start_time:s end_time:e``)."""
    t = clean_text(text)
    raw = text if isinstance(text, str) else t
    content = tag_content(t, "event")
    if content is None:
        m = _EVENT_OPEN_RE.search(t)
        content = m.group(1) if m else ""
    event = _norm_space(content).strip(" ,.")
    r = tag_content(t, "range")
    rng = _two_ints(r) if r is not None else None
    if not event and "start_time:" in t:
        meta = _META_RE.search(t)
        if meta:
            event = _norm_space(meta.group(1))
            rng = _two_ints(f"{meta.group(2)} {meta.group(3)}")
    if not event:
        return AVEPrediction(None, rng, "no <event> tag", raw)
    return AVEPrediction(event, rng, None, raw)


# ------------------------------------------------------------------------------------ AVVP
Event = tuple[str, tuple[tuple[int, int], ...]]


@dataclass(frozen=True)
class AVVPPrediction:
    """Parsed AVVP answer: ``audio``/``visual`` = ((class, ((s, e), ...)), ...), end exclusive."""

    audio: tuple[Event, ...] = ()
    visual: tuple[Event, ...] = ()
    parse_error: str | None = None
    raw: str = ""


def _clean_name(name: str) -> str:
    name = _norm_space(name).strip(" ,;:.")
    if name.lower().startswith("and "):
        name = name[4:].strip(" ,;:.")
    return name


def _is_separator(text: str) -> bool:
    """Only spaces, commas, semicolons and at most an ``and`` between two ranges."""
    return text.strip(" \t\r\n,;") in ("", "and")


def _block_events(content: str) -> list[tuple[str, list[tuple[int, int]]]]:
    """``"Speech,(0 3),(5 10) Dog,(2 4)"`` -> [("Speech", [(0,3),(5,10)]), ("Dog", [(2,4)])]."""
    events: list[tuple[str, list[tuple[int, int]]]] = []
    spans = list(_SPAN_RE.finditer(content))
    pos = 0
    i = 0
    while i < len(spans):
        name = _clean_name(content[pos : spans[i].start()])
        group = [spans[i]]
        while i + len(group) < len(spans) and _is_separator(
            content[group[-1].end() : spans[i + len(group)].start()]
        ):
            group.append(spans[i + len(group)])
        ranges = [_two_ints(f"{m.group(1)} {m.group(2)}") for m in group]
        if name:
            events.append((name, ranges))
        elif events:
            events[-1][1].extend(ranges)
        pos = group[-1].end()
        i += len(group)
    tail = _clean_name(content[pos:])
    if tail and not spans:
        events.append((tail, []))
    return events


def _avvp_blocks(text: str) -> tuple[list[str], list[str]]:
    """Contents of audio and visual blocks, accepting new and legacy tags, and orphan closing
    tags whose opening tag was dropped by ``skip_special_tokens`` (``<audio>`` is a special token)."""
    out: dict[str, list[str]] = {"audio": [], "visual": []}
    open_kind: str | None = None
    open_at = 0
    last_end = 0
    for m in _AVVP_TAG_RE.finditer(text):
        kind = m.group(2).split("_")[0]
        if not m.group(1):  # opening tag
            open_kind, open_at = kind, m.end()
        elif open_kind == kind:
            out[kind].append(text[open_at : m.start()])
            open_kind = None
        elif open_kind is None:  # orphan closing tag: take the text since the last tag / sentence
            chunk = text[last_end : m.start()]
            chunk = re.split(r"[.:]\s|\n", chunk)[-1]
            out[kind].append(chunk)
        last_end = m.end()
    return out["audio"], out["visual"]


def _merge(contents: list[str]) -> tuple[Event, ...]:
    merged: dict[str, tuple[str, list[tuple[int, int]]]] = {}
    for content in contents:
        for name, ranges in _block_events(content):
            key = normalize_label(name)
            if key not in merged:
                merged[key] = (name, [])
            merged[key][1].extend(r for r in ranges if r not in merged[key][1])
    return tuple((name, tuple(ranges)) for name, ranges in merged.values())


@_safe(lambda raw, err: AVVPPrediction(parse_error=err, raw=raw))
def parse_avvp(text: str) -> AVVPPrediction:
    """Read ``<audio_event>Class,(s e),(s e)</audio_event>`` / ``<visual_event>...`` blocks (legacy
    ``<audio>``/``<visual>`` too; ranges written ``(s e)``, ``(s,e)`` or ``(s-e)``)."""
    t = clean_text(text)
    raw = text if isinstance(text, str) else t
    a_blocks, v_blocks = _avvp_blocks(t)
    audio, visual = _merge(a_blocks), _merge(v_blocks)
    err = None
    if not a_blocks and not v_blocks and not _NO_EVENT_RE.search(t):
        err = "no <audio_event>/<visual_event> block"
    return AVVPPrediction(audio, visual, err, raw)


# ------------------------------------------------------------------------------------ AVQA
@dataclass(frozen=True)
class AVQAPrediction:
    """Parsed AVQA answer (stripped, lower-cased)."""

    answer: str | None = None
    parse_error: str | None = None
    raw: str = ""


def normalize_answer(text: str) -> str:
    """Lower-case, collapse whitespace, strip surrounding spaces and trailing punctuation."""
    return _norm_space(text).lower().strip(" .,;:!?\"'")


def normalize_label(text: str) -> str:
    """Class-name key for comparisons: lower-case, ``_`` -> space, collapsed whitespace."""
    return _norm_space(text.replace("_", " ")).lower().strip(" .,;:")


@_safe(lambda raw, err: AVQAPrediction(parse_error=err, raw=raw))
def parse_avqa(text: str) -> AVQAPrediction:
    """Read ``<answer> X </answer>``; fall back to ``answer is X`` or a bare answer of <= 3 words."""
    t = clean_text(text)
    raw = text if isinstance(text, str) else t
    content = tag_content(t, "answer")
    if content is None:
        m = _ANSWER_FALLBACK_RE.search(t)
        content = m.group(1) if m else None
    if content is not None:
        ans = normalize_answer(content)
        return AVQAPrediction(ans or None, None if ans else "empty <answer>", raw)
    if t and "<" not in t and len(t.split()) <= 3:
        return AVQAPrediction(normalize_answer(t) or None, None, raw)
    return AVQAPrediction(None, "no <answer> tag", raw)


# ------------------------------------------------------------------------------------ ARIG
@dataclass(frozen=True)
class ARIGPrediction:
    """Parsed ARIG answer: ``object`` class and ``box`` = (x1, y1, x2, y2) with x1<=x2, y1<=y2."""

    object: str | None = None
    box: tuple[float, float, float, float] | None = None
    parse_error: str | None = None
    raw: str = ""


def _find_box(text: str) -> tuple[float, ...] | None:
    pairs = _PAIR_RE.findall(text)
    if len(pairs) >= 2:
        return tuple(float(v) for v in (*pairs[0], *pairs[1]))
    quad = _QUAD_RE.search(text)
    return tuple(float(v) for v in quad.groups()) if quad else None


@_safe(lambda raw, err: ARIGPrediction(parse_error=err, raw=raw))
def parse_arig(text: str, image_size: float | None = 224.0) -> ARIGPrediction:
    """Read the sounding object and the box from the first two ``(x,y)`` pairs (inside ``<obj>``
    when present). Coordinates are clamped to [0, image_size] and ordered."""
    t = clean_text(text)
    raw = text if isinstance(text, str) else t
    m = _SOUNDING_RE.search(t)
    obj = _norm_space(m.group(1)) or None if m else None
    o = tag_content(t, "obj")
    box = (_find_box(o) if o is not None else None) or _find_box(t)
    if box is None:
        return ARIGPrediction(obj, None, "no box", raw)
    x1, y1, x2, y2 = box
    if image_size is not None:
        x1, y1, x2, y2 = (min(max(v, 0.0), float(image_size)) for v in (x1, y1, x2, y2))
    box = (min(x1, x2), min(y1, y2), max(x1, x2), max(y1, y2))
    return ARIGPrediction(obj, box, None, raw)


# ------------------------------------------------------------------------------------- seg
@dataclass(frozen=True)
class SegPrediction:
    """Parsed seg answer. ``has_seg_tokens``: all ``<mask_0..5>`` between ``<mask_start>`` and
    ``<mask_end>``; ``num_seg_tokens``: ``<mask_i>`` tokens anywhere; ``frame_index``: second named
    by "at/in the {nth} second" (0-based)."""

    object: str | None = None
    text: str = ""
    has_seg_tokens: bool = False
    num_seg_tokens: int = 0
    frame_index: int | None = None
    parse_error: str | None = None
    raw: str = ""


def _seg_object(text: str) -> str | None:
    for sentence in re.split(r"\.\s+|\.$", text):
        if "<mask" in sentence or " is " not in f" {sentence} ":
            continue
        obj = _norm_space(sentence.rsplit(" is ", 1)[-1]) if " is " in sentence else ""
        return obj if obj and obj.lower() != "nothing" else None
    return None


@_safe(lambda raw, err: SegPrediction(parse_error=err, raw=raw))
def parse_seg(text: str) -> SegPrediction:
    """Read the object phrase and check the seg tokens of S4/MS3/AVSS/Ref-AVS answers."""
    t = clean_text(text)
    raw = text if isinstance(text, str) else t
    tokens = _MASK_TOKEN_RE.findall(t)
    start, end = t.find("<mask_start>"), t.rfind("<mask_end>")
    inside = t[start:end] if 0 <= start < end else ""
    has = bool(inside) and all(f"<mask_{i}>" in inside for i in range(NUM_SEG_TOKENS))
    m = _ORDINAL_RE.search(t)
    frame = ORDINALS.index(m.group(1).lower()) if m else None
    head = t[:start] if start >= 0 else t
    err = None if has else "seg tokens missing"
    return SegPrediction(_seg_object(head), t, has, len(tokens), frame, err, raw)


# --------------------------------------------------------------------------------- caption
@dataclass(frozen=True)
class CaptionPrediction:
    """Parsed caption (cleaned text)."""

    text: str = ""
    parse_error: str | None = None
    raw: str = ""


@_safe(lambda raw, err: CaptionPrediction(parse_error=err, raw=raw))
def parse_caption(text: str) -> CaptionPrediction:
    """Return the cleaned caption text."""
    t = clean_text(text)
    return CaptionPrediction(t, None if t else "empty", text if isinstance(text, str) else t)


PARSERS: dict[str, Callable[..., object]] = {
    "parse_ave": parse_ave,
    "parse_avvp": parse_avvp,
    "parse_avqa": parse_avqa,
    "parse_arig": parse_arig,
    "parse_seg": parse_seg,
    "parse_caption": parse_caption,
}


def parse(task: str, text: str):
    """Parse ``text`` with the parser of ``task`` (see ``TaskSpec.parser``).

    Raises:
        TaskError: unknown task (the only error; parsing itself never raises).
    """
    return PARSERS[get_task(task).parser](text)
