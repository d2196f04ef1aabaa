"""AVE (Tian et al., ECCV 2018): audio-visual event localization, 28 events + background, 10-s clips.

Published layout (the AVE_Dataset release; YapengTian/AVE-ECCV18 README and ``data/Annotations.txt``)::

    ROOT/Annotations.txt                      every clip
    ROOT/trainSet.txt, valSet.txt, testSet.txt  the splits, same format
    ROOT/AVE/<VideoID>.mp4                    the 10-s videos

One line per clip, ``&``-separated: ``Category&VideoID&Quality&StartTime&EndTime``, e.g.
``Church bell&RUhOCu3LNXM&good&0&10`` (the release's files start with that header line; the copy in the
AVE-ECCV18 repository has none; both are read). Start / end are whole seconds, ``[start, end)``.
A VideoID can appear on several lines (45 do in Annotations.txt), so row ids carry the line number.

Each line becomes one ``ave`` row: ``gt = {event, range, segments}`` (the event on ``[start, end)``,
``background`` elsewhere), ``output`` the Crab answer (``tasks.prompts.render_target``).
"""

from __future__ import annotations

from collections.abc import Iterator

from ..tasks.parsers import BACKGROUND
from ..tasks.prompts import render_target
from .common import DataError, Item, Layout, Problem, Row, read_lines, whole_seconds

TASKS = ("ave",)
SPLIT_FILES = {"train": "trainSet.txt", "val": "valSet.txt", "test": "testSet.txt"}
HEADER = "Category&VideoID&Quality&StartTime&EndTime"
NUM_SEGMENTS = 10


def _prefix(layout: Layout, split: str) -> str:
    """``""`` when ROOT is the AVE_Dataset folder itself, ``"AVE_Dataset/"`` when it is its parent."""
    for prefix in ("", "AVE_Dataset/"):
        if layout.exists(prefix + SPLIT_FILES[split]):
            return prefix
    raise DataError(
        f"{layout.root}: no {SPLIT_FILES[split]} (the AVE release: Annotations.txt, trainSet.txt, "
        "valSet.txt, testSet.txt and AVE/<id>.mp4, in ROOT or ROOT/AVE_Dataset)"
    )


def rows(layout: Layout, split: str, sources: list[str]) -> Iterator[Item]:
    """The split's rows and problems, in file order."""
    prefix = _prefix(layout, split)
    rel = prefix + SPLIT_FILES[split]
    sources.append(rel)
    for no, line in read_lines(layout, rel):
        if not line.strip() or (no == 1 and line.strip() == HEADER):
            continue
        where = f"{rel}:{no}"
        parts = line.split("&")
        if len(parts) != 5:
            yield Problem("malformed", where, f"expected 5 '&'-separated fields, got {len(parts)}")
            continue
        event, vid, quality = parts[0].strip(), parts[1].strip(), parts[2].strip()
        try:
            start, end = whole_seconds(parts[3]), whole_seconds(parts[4])
        except ValueError as exc:
            yield Problem("malformed", where, f"start/end: {exc}")
            continue
        if not event or not vid or start >= end:
            reason = "empty category or VideoID" if not event or not vid else f"start {start} >= end {end}"
            yield Problem("malformed", where, reason)
            continue
        video = f"{prefix}AVE/{vid}.mp4"
        gone = layout.missing(where, video)
        if gone:
            yield gone
            continue
        segments = [event if start <= t < end else BACKGROUND for t in range(NUM_SEGMENTS)]
        gt = {"event": event, "range": [start, end], "segments": segments}
        yield Row(
            {
                "id": f"ave-{vid}-{no}",
                "task": "ave",
                "video": video,
                "output": render_target("ave", gt),
                "gt": gt,
                "split": split,
                "meta": {"source": rel, "line": no, "video_id": vid, "quality": quality},
            }
        )
