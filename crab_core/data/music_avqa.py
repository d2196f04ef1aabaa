"""MUSIC-AVQA (Li et al., CVPR 2022): audio-visual question answering on 60-s music videos.

Published layout (GeWu-Lab/MUSIC-AVQA README "Data", ``data/json/avqa-{train,val,test}.json`` and the
corrected ``data/json_update/``)::

    ROOT/json_update/avqa-<split>.json (or json/, data/json_update/, data/json/, or ROOT itself)
    ROOT/video/<video_id>.mp4 (or data/video/, MUSIC-AVQA-Videos/, video_data/)

Each question is an object ``{"video_id": "00000086", "question_id": 28, "type": "[\\"Audio-Visual\\",
\\"Existential\\"]", "question_content": "Is the <Object> in the video always playing?", "templ_values":
"[\\"violin\\"]", "question_deleted": 0, "anser": "no"}`` (``anser`` is the release's spelling). The
question is the template with each ``<...>`` placeholder replaced, in order, by the next templ value,
as the reference loader does (``net_grd_avst/dataloader_avst.py``). The question type is the pair
``[modality, type]``: 3 modalities (Audio, Visual, Audio-Visual) and 9 types (Audio Counting /
Comparative, Visual Counting / Location, Audio-Visual Existential / Counting / Location / Comparative /
Temporal, as ``main_avst.py`` reports them); it is written as ``"Audio-Visual/Existential"``.
The updated JSON (``json_update``) is preferred when both are present. Questions marked
``question_deleted`` are skipped and counted as ``deleted``.
"""

from __future__ import annotations

import ast
import json
import re
from collections.abc import Iterator

from ..tasks.prompts import render_target
from .common import DataError, Item, Layout, Problem, Row, read_json

TASKS = ("avqa",)
JSON_DIRS = ("json_update/", "json/", "data/json_update/", "data/json/", "")
VIDEO_DIRS = ("video", "data/video", "MUSIC-AVQA-Videos", "video_data")
MODALITIES = ("Audio", "Visual", "Audio-Visual")
_PLACEHOLDER = re.compile(r"<[^<>\s]+>")


def _list(value) -> list:
    """A release field holding a list as a string (``'["Audio", "Counting"]'``) or as a list."""
    if isinstance(value, list):
        return value
    if not isinstance(value, str):
        raise ValueError(f"expected a list, got {type(value).__name__}")
    try:
        out = json.loads(value)
    except json.JSONDecodeError:
        out = ast.literal_eval(value)
    if not isinstance(out, list):
        raise ValueError(f"expected a list, got {value!r:.40}")
    return out


def fill_template(question: str, values: list) -> str:
    """Replace each ``<...>`` placeholder, in order, by the next value; ValueError on a count mismatch."""
    slots = _PLACEHOLDER.findall(question)
    if len(slots) != len(values):
        raise ValueError(f"{len(slots)} placeholder(s) but {len(values)} templ_values")
    it = iter(values)
    return _PLACEHOLDER.sub(lambda _m: str(next(it)), question).strip()


def rows(layout: Layout, split: str, sources: list[str]) -> Iterator[Item]:
    """The split's questions as ``avqa`` rows, in file order."""
    rel = layout.need((f"{d}avqa-{split}.json" for d in JSON_DIRS), f"avqa-{split}.json")
    sources.append(rel)
    data = read_json(layout, rel)
    if not isinstance(data, list):
        raise DataError(f"{rel}: expected a JSON list of questions, got {type(data).__name__}")
    video_dir = next((d for d in VIDEO_DIRS if layout.path(d).is_dir()), VIDEO_DIRS[0])
    for i, q in enumerate(data):
        where = f"{rel}[{i}]"
        if not isinstance(q, dict):
            yield Problem("malformed", where, f"a question must be an object, got {type(q).__name__}")
            continue
        try:
            vid, qid, answer = str(q["video_id"]), q["question_id"], q["anser"]
            kind = [str(x) for x in _list(q["type"])]
            question = fill_template(str(q["question_content"]), _list(q.get("templ_values", "[]")))
        except (KeyError, ValueError, SyntaxError) as exc:
            reason = f"missing field {exc}" if isinstance(exc, KeyError) else str(exc)
            yield Problem("malformed", where, reason)
            continue
        if len(kind) != 2 or kind[0] not in MODALITIES:
            yield Problem("malformed", where, f"type must be [modality, type], got {kind}")
            continue
        if not isinstance(answer, (str, int)) or not str(answer).strip() or not question:
            yield Problem("malformed", where, "empty question or answer")
            continue
        if q.get("question_deleted"):
            yield Problem("deleted", where, f"question {qid} is marked question_deleted")
            continue
        video = f"{video_dir}/{vid}.mp4"
        gone = layout.missing(where, video)
        if gone:
            yield gone
            continue
        gt = {"answer": str(answer).strip(), "question_type": "/".join(kind)}
        yield Row(
            {
                "id": f"avqa-{qid}",
                "task": "avqa",
                "video": video,
                "question": question,
                "output": render_target("avqa", gt),
                "gt": gt,
                "split": split,
                "meta": {"source": rel, "index": i, "video_id": vid, "question_id": qid},
            }
        )
