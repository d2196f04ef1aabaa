"""Importers: the official benchmark releases -> our evaluation manifest (docs/manifest.md).

``python -m crab_core data import BENCH --root DIR --split test --out manifest.jsonl``; one module per
benchmark, each citing in its docstring where the layout it reads is published. :func:`import_benchmark`
streams the rows into the manifest and returns an :class:`~crab_core.data.common.ImportReport` with the
rows written per task and every skipped row counted by reason (docs/official-benchmarks.md).
"""

from __future__ import annotations

import importlib
import os
import shutil
from pathlib import Path

from .common import SPLITS, DataError, ImportReport, Layout, write_manifest

#: BENCH -> (module, task); AVSBench's three tasks share one module.
BENCHMARKS: dict[str, tuple[str, str]] = {
    "ave": ("ave", "ave"),
    "avvp": ("avvp", "avvp"),
    "music-avqa": ("music_avqa", "avqa"),
    "s4": ("avsbench", "s4"),
    "ms3": ("avsbench", "ms3"),
    "avss": ("avsbench", "avss"),
    "ref-avs": ("ref_avs", "ref-avs"),
}
#: Benchmarks whose release has frames but no videos (``make_videos`` builds them).
VIDEO_BENCHES = ("s4", "ms3", "ref-avs")
#: Benchmarks the agreed command names but that cannot be imported yet, with the reason.
NOT_SUPPORTED = {
    "av-uie": "the AV-UIE release (huggingface.co/datasets/ahsgdxhs/AVUIE) publishes per-task JSON files "
    "whose record layout we could not verify (only the reference loader's field names are public); "
    "import the benchmarks it is built from instead (docs/official-benchmarks.md)",
}

__all__ = ["BENCHMARKS", "NOT_SUPPORTED", "DataError", "ImportReport", "import_benchmark"]


def import_benchmark(
    bench: str,
    root: str | os.PathLike,
    split: str,
    out: str | os.PathLike | None = None,
    make_videos: bool = False,
) -> ImportReport:
    """Import one split of one benchmark into a manifest.

    Args:
        bench: a key of :data:`BENCHMARKS`.
        root: the benchmark's release folder.
        split: ``train``, ``val`` or ``test`` (Ref-AVS also ``test_s``, ``test_u``, ``test_n``).
        out: the manifest to write (default ``ROOT/crab-<bench>-<split>.jsonl``, where the media paths,
            relative to ROOT, resolve without ``eval --media-root``).
        make_videos: for releases of frames (S4 / MS3 of AVSBench-semantic, Ref-AVS), also make each
            clip's 1-fps video under ``ROOT/crab_videos/`` (once) and put it in the rows, so that
            ``eval`` runs the reference's video + audio test prompt (:func:`common.frames_video`).

    Raises:
        DataError: unknown benchmark or split, missing / unreadable annotation files.
    """
    if bench in NOT_SUPPORTED:
        raise DataError(f"{bench}: not supported: {NOT_SUPPORTED[bench]}")
    if bench not in BENCHMARKS:
        raise DataError(f"unknown benchmark {bench!r}; choose from {', '.join(BENCHMARKS)}")
    name, task = BENCHMARKS[bench]
    module = importlib.import_module(f"{__name__}.{name}")
    splits = getattr(module, "SPLITS", SPLITS)
    if split not in splits:
        raise DataError(f"{bench}: unknown split {split!r}; choose from {', '.join(splits)}")
    if make_videos and bench not in VIDEO_BENCHES:
        raise DataError(f"--make-videos: only for {', '.join(VIDEO_BENCHES)} (releases of frames, no videos)")
    if make_videos and shutil.which("ffmpeg") is None:
        raise DataError("--make-videos needs ffmpeg on the PATH")
    layout = Layout(root, make_videos=make_videos)
    out = Path(out) if out is not None else layout.root / f"crab-{bench}-{split}.jsonl"
    report = ImportReport(bench=bench, split=split, out=str(out))
    if task and len(module.TASKS) > 1:
        items = module.rows(layout, split, report.sources, task)
    else:
        items = module.rows(layout, split, report.sources)
    return write_manifest(items, out, report)
