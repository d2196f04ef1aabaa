"""Ref-AVS (Wang et al., ECCV 2024): referring audio-visual segmentation from a text expression.

Published layout (GeWu-Lab/Ref-AVS ``data/metadata.csv`` and ``datasets/dataset_refavs.py``)::

    ROOT/metadata.csv                       vid,uid,split,fid,exp
    ROOT/media/<vid>/frames/<i>.jpg         10 frames, one per second (i = 0..9)
    ROOT/media/<vid>/audio.wav
    ROOT/gt_mask/<vid>/fid_<fid>/0000<i>.png  the expression's binary mask on frame i

``split`` is ``train``, ``val``, ``test_s`` (seen classes), ``test_u`` (unseen classes) or ``test_n``
(null: the expression refers to nothing, the mask is empty); the release also has a few ``TODO``
rows, which no split selects. As the reference loader does, the clip folder is ``uid.rsplit('_', 2)[0]``
(``uid`` is ``<vid>_<object>_<n>``), and Crab's target names the object ``uid.rsplit('_', 2)[1]``.

``--split test_s|test_u|test_n`` imports one test subset (also as ``seen``, ``unseen``, ``null``);
``--split test`` imports the three together (each row's ``meta.subset`` tells them apart; the
paper reports them separately, so :mod:`benchmarks.paper_table` imports them one by one). One row per
(expression, frame): ``question`` the expression, ``image`` the frame, ``frame_index`` i, ``gt.null``
true on ``test_n``.
"""

from __future__ import annotations

from collections.abc import Iterator

from ..tasks.prompts import render_target
from .avsbench import _csv_rows
from .common import DataError, Item, Layout, Problem, Row, frames_video

TASKS = ("ref-avs",)
SUBSETS = {"test_s": "test_s", "test_u": "test_u", "test_n": "test_n", "seen": "test_s", "unseen": "test_u"}
SUBSETS["null"] = "test_n"
SPLITS = ("train", "val", "test", *SUBSETS)
NUM_FRAMES = 10


def wanted(split: str) -> tuple[str, ...]:
    """The metadata ``split`` values one ``--split`` selects."""
    if split == "test":
        return ("test_s", "test_u", "test_n")
    if split in SUBSETS:
        return (SUBSETS[split],)
    if split in ("train", "val"):
        return (split,)
    raise DataError(f"ref-avs: unknown split {split!r}; choose from {', '.join(SPLITS)}")


def rows(layout: Layout, split: str, sources: list[str]) -> Iterator[Item]:
    """Rows of the selected split(s), in metadata order, one per frame."""
    keep = wanted(split)
    layout.need(("metadata.csv",), "metadata.csv (the Ref-AVS release)")
    sources.append("metadata.csv")
    for no, rec, reason in _csv_rows(layout, "metadata.csv"):
        where = f"metadata.csv:{no}"
        if rec is None or not all(k in rec for k in ("uid", "split", "fid", "exp")):
            yield Problem("malformed", where, reason or "needs the columns vid, uid, split, fid, exp")
            continue
        subset = rec["split"].strip()
        if subset not in keep:
            continue
        uid, fid, exp = rec["uid"].strip(), rec["fid"].strip(), " ".join(rec["exp"].split())
        parts = uid.rsplit("_", 2)
        if len(parts) != 3 or not exp or not fid.isdigit():
            yield Problem("malformed", where, "uid must be <vid>_<object>_<n>, fid a number, exp non-empty")
            continue
        vid, obj = parts[0], parts[1]
        null = subset == "test_n"
        audio = f"media/{vid}/audio.wav"
        video = None
        if layout.make_videos:
            try:
                video = frames_video(layout, f"media/{vid}/frames", NUM_FRAMES, f"crab_videos/{vid}.mp4")
            except DataError as exc:
                yield Problem("no-video", where, str(exc))
                continue
        for i in range(NUM_FRAMES):
            image = f"media/{vid}/frames/{i}.jpg"
            mask = f"gt_mask/{vid}/fid_{fid}/0000{i}.png"
            gone = layout.missing(f"{where} frame {i}", image, audio, mask)
            if gone:
                yield gone
                continue
            gt = {"mask": mask, "object": None if null else obj, "null": null}
            yield Row(
                {
                    "id": f"ref-avs-{uid}-{i}",
                    "task": "ref-avs",
                    **({"video": video} if video else {}),
                    "audio": audio,
                    "image": image,
                    "frame_index": i,
                    "question": exp,
                    "output": render_target("ref-avs", gt, frame_index=i, question=exp),
                    "gt": gt,
                    "split": split,
                    "meta": {
                        "source": "metadata.csv",
                        "line": no,
                        "subset": subset,
                        "uid": uid,
                        "fid": int(fid),
                    },
                }
            )
