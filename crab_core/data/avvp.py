"""AVVP on LLP (Tian et al., ECCV 2020): audio-visual video parsing, 25 classes, 10 one-second segments.

Published layout (YapengTian/AVVP-ECCV20 README, ``data/*.csv``, ``scripts/download_dataset.py``)::

    ROOT/AVVP_train.csv, AVVP_val_pd.csv, AVVP_test_pd.csv   weak labels: filename<TAB>event_labels
    ROOT/AVVP_eval_audio.csv, AVVP_eval_visual.csv          dense labels:
                                         filename<TAB>onset<TAB>offset<TAB>event_labels
    ROOT/LLP_dataset/video/<YouTubeID>.mp4                   the 10-s clips (``filename[:11]``)

(the CSVs may also sit in ``ROOT/data/`` as in the repository; tab-separated with a header line).
``filename`` is ``<11-char YouTube id>_<start>_<end>`` (e.g. ``4YdbENYcIyE_23_33``); the download
script saves the trimmed clip as ``<id>.mp4``. Crab's own copy (``llp_videos/<id>.mp4``) is read too.

Dense audio / visual labels exist for the val and test videos only (the train set is weakly labelled),
so only ``val`` and ``test`` can be imported. Each video of the split becomes one ``avvp`` row with
``gt = {audio: [{event, ranges}], visual: [...]}``, ranges ``[onset, offset)`` in seconds, as the
reference metric fills ``GT[class, onset:offset] = 1`` (``main_avvp.py``). A dense label whose range
is empty (``onset >= offset``; the released AVVP_eval_audio.csv has a few) marks nothing in that
metric either: it is left out and counted as ``empty-range`` in the report.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator

from ..tasks.prompts import render_target
from .common import DataError, Item, Layout, Problem, Row, read_lines, whole_seconds

TASKS = ("avvp",)
WEAK = {"val": "AVVP_val_pd.csv", "test": "AVVP_test_pd.csv", "train": "AVVP_train.csv"}
DENSE = {"audio": "AVVP_eval_audio.csv", "visual": "AVVP_eval_visual.csv"}
VIDEO_DIRS = ("LLP_dataset/video", "llp_videos")


def _csv(layout: Layout, name: str) -> str:
    return layout.need((name, f"data/{name}"), name)


def _dense(layout: Layout, modality: str, sources: list[str], problems: list[Problem]) -> dict[str, dict]:
    """filename -> {event: [[onset, offset], ...]} of one dense CSV."""
    rel = _csv(layout, DENSE[modality])
    sources.append(rel)
    out: dict[str, dict] = defaultdict(lambda: defaultdict(list))
    for no, line in read_lines(layout, rel):
        if no == 1 or not line.strip():
            continue  # header: filename onset offset event_labels
        where = f"{rel}:{no}"
        parts = line.split("\t")
        if len(parts) != 4:
            problems.append(Problem("malformed", where, f"expected 4 tab-separated fields, got {len(parts)}"))
            continue
        name, on, off, event = (p.strip() for p in parts)
        try:
            start, end = whole_seconds(on), whole_seconds(off)
        except ValueError as exc:
            problems.append(Problem("malformed", where, f"onset/offset: {exc}"))
            continue
        if start >= end:
            problems.append(Problem("empty-range", where, f"{event} [{start}, {end}) marks no segment"))
            continue
        out[name][event].append([start, end])
    return out


def _events(by_event: dict) -> list[dict]:
    return [{"event": ev, "ranges": sorted(r)} for ev, r in sorted(by_event.items())]


def rows(layout: Layout, split: str, sources: list[str]) -> Iterator[Item]:
    """The split's rows and problems, in the order of the weak-label CSV."""
    if split == "train":
        raise DataError(
            "AVVP has dense audio / visual labels for val and test only (AVVP_train.csv is weakly "
            "labelled); import --split val or --split test"
        )
    weak = _csv(layout, WEAK[split])
    problems: list[Problem] = []
    dense = {m: _dense(layout, m, sources, problems) for m in DENSE}
    sources.insert(0, weak)
    yield from problems
    video_dir = next((d for d in VIDEO_DIRS if layout.path(d).is_dir()), VIDEO_DIRS[0])
    for no, line in read_lines(layout, weak):
        if no == 1 or not line.strip():
            continue  # header: filename event_labels
        where = f"{weak}:{no}"
        parts = line.split("\t")
        name = parts[0].strip()
        if len(parts) != 2 or len(name) < 11:
            yield Problem(
                "malformed", where, "expected 'filename<TAB>event_labels' with an 11-char YouTube id"
            )
            continue
        video = f"{video_dir}/{name[:11]}.mp4"
        gone = layout.missing(where, video)
        if gone:
            yield gone
            continue
        gt = {
            "audio": _events(dense["audio"].get(name, {})),
            "visual": _events(dense["visual"].get(name, {})),
        }
        yield Row(
            {
                "id": f"avvp-{name}",
                "task": "avvp",
                "video": video,
                "output": render_target("avvp", gt),
                "gt": gt,
                "split": split,
                "meta": {"source": weak, "line": no, "filename": name, "weak_labels": parts[1].split(",")},
            }
        )
