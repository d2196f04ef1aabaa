"""AVSBench (Zhou et al., ECCV 2022 / arXiv 2301.13190): S4, MS3 (binary masks) and AVSS (71 classes).

Two published layouts are read; the first found under ROOT is used.

**AVSBench-semantic release** (the one Crab reads: ``dataset/unified_dataset.py`` ``v1s`` / ``v1m`` /
``v2``; OpenNLPLab/AVSBench ``avs_scripts/avss/color_dataloader.py`` and ``config.py``)::

    ROOT/metadata.csv            one row per clip; columns used: uid, split, label (v1s | v1m | v2), a_obj
    ROOT/label2idx.json          the 71 class names (incl. background) -> palette index
    ROOT/<label>/<uid>/frames/<i>.jpg, audio.wav
    ROOT/<label>/<uid>/labels_rgb/<i>.png (palette colours), labels_semantic/<i>.png

``v1s`` (S4) and ``v1m`` (MS3) clips last 5 s (frames 0-4), ``v2`` clips 10 s (frames 0-9). A ``v1s``
train clip has its first frame annotated only, every other clip all of its frames (the
``gt_temporal_mask_flag`` of ``color_dataloader.py``). S4 rows come from ``v1s`` clips, MS3 rows from
``v1m``; both use ``labels_semantic/<i>.png`` as the binary mask (as Crab does; ``labels_rgb`` when the
clip has no ``labels_semantic``). AVSS rows come from every clip of the split (v1s, v1m and v2, as
AVSBench's ``V2Dataset`` reads them) with ``labels_rgb/<i>.png`` as a ``palette`` mask: the colours of
``get_v2_pallete`` (``crab_core.media.mask.avsbench_palette``).

**AVSBench-object release** (S4 and MS3 only; ``avs_scripts/avs_s4|avs_ms3/config.py``,
``dataloader.py`` and ``preprocess_scripts/preprocess_s4|ms3.py``)::

    ROOT/Single-source/s4_meta_data.csv     name, start time, category, split
    ROOT/Single-source/s4_data/visual_frames/<split>/<category>/<name>/<name>_<1..5>.png
    ROOT/Single-source/s4_data/gt_masks/<split>/<category>/<name>/<name>_<k>.png   (k = 1 in train, 1..5 else)
    ROOT/Single-source/s4_data/audio_wav/<split>/<category>/<name>.wav
    ROOT/Multi-sources/ms3_meta_data.csv    name, split
    ROOT/Multi-sources/ms3_data/visual_frames/<name>/<name>.mp4_<1..5>.png
    ROOT/Multi-sources/ms3_data/gt_masks/<split>/<name>/<name>_<1..5>.png
    ROOT/Multi-sources/ms3_data/audio_wav/<split>/<name>.wav

(the trimmed ``raw_videos/`` the preprocessing scripts start from become the row's ``video`` when present).

One row per annotated frame: ``image`` the frame, ``audio`` the clip's wav, ``frame_index`` the second.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator

from ..tasks.prompts import render_target
from .common import DataError, Item, Layout, Problem, Row, frames_video, read_json

TASKS = ("s4", "ms3", "avss")
SUBSET = {"s4": ("v1s",), "ms3": ("v1m",), "avss": ("v1s", "v1m", "v2")}
FRAMES = {"v1s": 5, "v1m": 5, "v2": 10}
AVSS_CLASSES = 71
OBJECT_META = {"s4": "Single-source/s4_meta_data.csv", "ms3": "Multi-sources/ms3_meta_data.csv"}


def _csv_rows(layout: Layout, rel: str) -> Iterator[tuple[int, dict | None, str]]:
    """``(line, row or None, reason)`` of a comma-separated file with a header, streamed."""
    try:
        with open(layout.path(rel), encoding="utf-8-sig", newline="") as f:
            reader = csv.reader(f)
            header = [h.strip() for h in next(reader, [])]
            for fields in reader:
                if not any(x.strip() for x in fields):
                    continue
                if len(fields) != len(header):
                    yield reader.line_num, None, f"expected {len(header)} fields, got {len(fields)}"
                    continue
                yield reader.line_num, {"_fields": fields, **dict(zip(header, fields, strict=True))}, ""
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise DataError(f"{rel}: cannot be read ({exc})") from exc


def rows(layout: Layout, split: str, sources: list[str], task: str) -> Iterator[Item]:
    """Rows of ``task`` (s4, ms3 or avss) for ``split``, from whichever release layout ROOT holds."""
    if layout.exists("metadata.csv"):
        yield from _semantic(layout, split, sources, task)
    elif task in OBJECT_META and layout.exists(OBJECT_META[task]):
        yield from _object(layout, split, sources, task)
    else:
        extra = f" or {OBJECT_META[task]} (AVSBench-object)" if task in OBJECT_META else ""
        raise DataError(f"{layout.root}: no metadata.csv (AVSBench-semantic){extra}")


def _semantic(layout: Layout, split: str, sources: list[str], task: str) -> Iterator[Item]:
    sources.append("metadata.csv")
    if task == "avss":
        names = read_json(layout, layout.need(("label2idx.json",), "label2idx.json (the AVSS class list)"))
        sources.append("label2idx.json")
        if not isinstance(names, dict) or len(names) != AVSS_CLASSES:
            raise DataError(f"label2idx.json: expected {AVSS_CLASSES} classes, got {len(names)}")
    for no, rec, reason in _csv_rows(layout, "metadata.csv"):
        where = f"metadata.csv:{no}"
        if rec is None or not all(k in rec for k in ("uid", "split", "label")):
            yield Problem("malformed", where, reason or "needs the columns uid, split, label")
            continue
        if rec["split"].strip() != split or rec["label"].strip() not in SUBSET[task]:
            continue
        uid, sub, obj = rec["uid"].strip(), rec["label"].strip(), (rec.get("a_obj") or "").strip() or None
        base = f"{sub}/{uid}"
        audio = f"{base}/audio.wav"
        frames = range(1) if (sub == "v1s" and split == "train") else range(FRAMES[sub])
        video = None
        if layout.make_videos and task != "avss":  # AVSS's test prompt is image + 1-s audio: no video
            try:
                video = frames_video(layout, f"{base}/frames", FRAMES[sub], f"crab_videos/{sub}/{uid}.mp4")
            except DataError as exc:
                yield Problem("no-video", where, str(exc))
                continue
        for i in frames:
            image = f"{base}/frames/{i}.jpg"
            if task == "avss":
                mask = f"{base}/labels_rgb/{i}.png"
            else:
                mask = f"{base}/labels_semantic/{i}.png"
                mask = mask if layout.exists(mask) else f"{base}/labels_rgb/{i}.png"
            gone = layout.missing(f"{where} frame {i}", image, audio, mask)
            if gone:
                yield gone
                continue
            yield _row(
                task, f"{task}-{uid}-{i}", image, audio, mask, i, obj, split, ("metadata.csv", no), video
            )


def _object(layout: Layout, split: str, sources: list[str], task: str) -> Iterator[Item]:
    meta = OBJECT_META[task]
    top = meta.split("/")[0]
    data = f"{top}/{task}_data"
    sources.append(meta)
    for no, rec, reason in _csv_rows(layout, meta):
        where = f"{meta}:{no}"
        if rec is None or "split" not in rec or (task == "s4" and "category" not in rec):
            yield Problem("malformed", where, reason or "needs a split column (and category for S4)")
            continue
        if rec["split"].strip() != split:
            continue
        name = rec["_fields"][0].strip()
        if task == "s4":
            sub = f"{split}/{rec['category'].strip()}"
            frame_dir, frame_name = f"{data}/visual_frames/{sub}/{name}", f"{name}_{{k}}.png"
            video = f"{data}/raw_videos/{sub}/{name}.mp4"
            obj = rec["category"].strip().replace("_", " ")
        else:
            sub = split
            frame_dir, frame_name = f"{data}/visual_frames/{name}", f"{name}.mp4_{{k}}.png"
            video, obj = f"{data}/raw_videos/{name}.mp4", None
        audio = f"{data}/audio_wav/{sub}/{name}.wav"
        video = video if layout.exists(video) else None
        for i in range(1 if (task == "s4" and split == "train") else 5):
            image = f"{frame_dir}/{frame_name.format(k=i + 1)}"
            mask = f"{data}/gt_masks/{sub}/{name}/{name}_{i + 1}.png"
            gone = layout.missing(f"{where} frame {i}", image, audio, mask)
            if gone:
                yield gone
                continue
            yield _row(task, f"{task}-{name}-{i}", image, audio, mask, i, obj, split, (meta, no), video)


def _row(task, ident, image, audio, mask, i, obj, split, source, video) -> Row:
    """One frame's row; ``source`` is ``(annotation file, line)``."""
    if task == "avss":
        gt = {"mask": mask, "mask_format": "palette"}
    else:
        gt = {"mask": mask, "object": obj, "null": False}
    row = {"id": ident, "task": task}
    if video:
        row["video"] = video
    row.update({"audio": audio, "image": image, "frame_index": i})
    row["output"] = render_target(task, gt, frame_index=i)
    row.update({"gt": gt, "split": split, "meta": {"source": source[0], "line": source[1]}})
    return Row(row)
