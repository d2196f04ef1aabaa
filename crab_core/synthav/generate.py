"""SynthAV generator: render samples in memory or write a split (media files + JSONL manifest).

Sample ``i`` of a split does task ``tasks[i % len(tasks)]``, as that task's ``k = i // len(tasks)``-th
sample, with seed :func:`task_seed` (split, task, k, user seed) inside the split's seed range.
:func:`render_sample` returns arrays (the training fast path); :func:`generate_split` writes exactly
those arrays to files, so both paths give the same samples (the mp4 is the lossy H.264/AAC copy of
the same frames and wav).

Clip durations (one data table, :data:`world.CLIP_SECONDS`; :func:`world.clip_seconds`), following
AVSBench for its object tasks so that the task registry (``spec.num_frames`` = 5, ordinals
``first`` .. ``fifth``) and the media loader (5 uniformly sampled frames, 5 one-second audio
segments) line up with the ground truth:

========================  ========  =================  ==============  =============
task                      seconds   ``frames``         audio samples   frame_index
========================  ========  =================  ==============  =============
``s4``, ``ms3``, ``arig``  5        ``(5, S, S, 3)``   80000           0..4
every other task          10        ``(10, S, S, 3)``  160000          0..9 (seg)
========================  ========  =================  ==============  =============

File layout of ``generate_split(out_dir, split, ...)``::

    out_dir/<split>/manifest.jsonl        one AV-UIE row per sample (docs/manifest.md)
    out_dir/<split>/balance.json          class / answer histograms and majority-answer shares
    out_dir/<split>/media/<i // 1000>/<id>.mp4        5 or 10 s (above), 8 fps H.264 + AAC 16 kHz mono
    out_dir/<split>/media/<i // 1000>/<id>.wav        the exact audio (16-bit PCM), same length
    out_dir/<split>/media/<i // 1000>/<id>.png        frame at ``frame_index`` (ARIG, seg tasks)
    out_dir/<split>/media/<i // 1000>/<id>_mask.png   target mask (seg tasks)
"""

from __future__ import annotations

import argparse
import json
import logging
import tempfile
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from crab_core.errors import ConfigError, SynthError
from crab_core.parallel import progress_map

from .annotate import TASKS, build_target
from .render_audio import render_audio
from .render_video import render_video
from .world import CLASSES, SPLITS, sample_seed, split_of_seed
from .writer import write_manifest, write_mask_png, write_mp4, write_png, write_wav

logger = logging.getLogger(__name__)

#: Bounds of one ``generate_split`` call: samples, frame side (pixels, even), worker processes.
MAX_SAMPLES = 100_000
MIN_IMAGE_SIZE, MAX_IMAGE_SIZE = 32, 1024
MAX_WORKERS = 64


@dataclass
class SynthSample:
    """One rendered sample.

    Attributes:
        seed: per-sample seed; ``split`` is read from it.
        task: task name.
        frames: ``(n, S, S, 3)`` uint8, one frame per second (t = 0..n-1 s), n = ``clip_seconds(task)``
            (5 for S4 / MS3 / ARIG, else 10).
        audio: ``(n * 16000,)`` float32, 16 kHz mono on the 16-bit grid.
        frame_index: target second in 0..n-1 (ARIG / seg tasks) or ``None``.
        mask: ``(S, S)`` uint8 target mask (binary 0/1, or class index + 1 for AVSS) or ``None``.
        question: AVQA question / Ref-AVS expression or ``None``.
        output: answer text in Crab's format.
        gt: structured ground truth; seg tasks carry ``mask: None`` (the file path is set on writing).
        meta: scene description (objects, slots, runs, gains).
    """

    seed: int
    split: str
    task: str
    frames: np.ndarray
    audio: np.ndarray
    frame_index: int | None
    mask: np.ndarray | None
    question: str | None
    output: str
    gt: dict
    meta: dict


_PHI = 0.6180339887498949  # golden-ratio Weyl sequence
_SQRT2 = 0.4142135623730951


_TASK_SHIFT = 20


def task_seed(split: str, task: str, k: int, user_seed: int) -> int:
    """Seed of the ``k``-th sample of ``task`` in ``split`` (k < 2**20): the split-local index packs
    the task and ``k`` (see :func:`world.sample_seed`), so a task's k-th sample is the same whatever
    the other tasks of the split are."""
    if not 0 <= k < (1 << _TASK_SHIFT):
        raise ConfigError(f"at most 2**20 samples per task and split, got index {k}")
    return sample_seed(split, (TASKS.index(task) << _TASK_SHIFT) | k, user_seed)


def stratum(seed: int) -> float:
    """Low-discrepancy number in [0, 1) for a seed: ``frac(k * phi + user * (sqrt2 - 1))`` with ``k``
    the sample's index within its task (:func:`task_seed`). Over consecutive ``k`` (a golden-ratio
    Weyl sequence) the balanced choices (target class, AVQA kind and answer) are near-uniform."""
    k, user = seed & ((1 << _TASK_SHIFT) - 1), (seed >> 24) & 0xFFFFFF
    return (k * _PHI + user * _SQRT2) % 1.0


def render_sample(seed: int, task: str, image_size: int = 224) -> SynthSample:
    """Render one sample to arrays (no files). The same ``(seed, task)`` always gives the same sample."""
    if task not in TASKS:
        raise ConfigError(f"unknown SynthAV task {task!r}; known: {list(TASKS)}")
    if image_size < 32 or image_size % 2:
        raise ConfigError(f"image_size must be an even number >= 32, got {image_size}")
    split = split_of_seed(seed)
    rng = np.random.default_rng([seed, TASKS.index(task)])
    target = build_target(rng, task, split, stratum(seed))
    video = render_video(target.scene, image_size)
    mask = None
    if target.mask_format is not None:
        t = target.frame_index
        mask = np.zeros((image_size, image_size), np.uint8)
        for i in target.mask_objects:
            value = 1 if target.mask_format == "binary" else CLASSES.index(target.scene.objects[i].cls) + 1
            mask[video.mask_at(i, t)] = value
    return SynthSample(
        seed=seed,
        split=split,
        task=task,
        frames=video.frames,
        audio=render_audio(target.scene),
        frame_index=target.frame_index,
        mask=mask,
        question=target.question,
        output=target.output,
        gt=target.gt,
        meta=target.scene.to_meta(),
    )


def sample_id(split: str, index: int, user_seed: int) -> str:
    return f"synthav-{split}-s{user_seed}-{index:06d}"


def write_sample(
    out: Path,
    split: str,
    index: int,
    user_seed: int,
    task: str,
    k: int,
    image_size: int = 224,
    write_audio: bool = True,
) -> dict:
    """Render sample ``index`` of a split (the ``k``-th of its task) and write its files under ``out``;
    return its manifest row."""
    seed = task_seed(split, task, k, user_seed)
    s = render_sample(seed, task, image_size)
    sid = sample_id(split, index, user_seed)
    rel = Path("media") / f"{index // 1000:03d}"
    (out / rel).mkdir(parents=True, exist_ok=True)
    wav = write_wav(out / rel / f"{sid}.wav", s.audio)
    write_mp4(out / rel / f"{sid}.mp4", s.frames, wav)
    row: dict = {"id": sid, "task": task, "video": f"{rel.as_posix()}/{sid}.mp4"}
    if write_audio:
        row["audio"] = f"{rel.as_posix()}/{sid}.wav"
    else:
        wav.unlink()
    if s.frame_index is not None:
        write_png(out / rel / f"{sid}.png", s.frames[s.frame_index])
        row["image"] = f"{rel.as_posix()}/{sid}.png"
        row["frame_index"] = s.frame_index
    if s.question is not None:
        row["question"] = s.question
    gt = dict(s.gt)
    if s.mask is not None:
        write_mask_png(out / rel / f"{sid}_mask.png", s.mask, binary=gt.get("mask_format") != "index")
        gt["mask"] = f"{rel.as_posix()}/{sid}_mask.png"
    row.update({"output": s.output, "gt": gt, "seed": seed, "split": split, "meta": s.meta})
    return row


def _write_job(job: tuple) -> dict:
    return write_sample(*job)


def answer_key(row: dict) -> str:
    """The label a majority baseline would predict for a row (one string per sample)."""
    gt, task = row["gt"], row["task"]
    if task == "ave":
        return gt["event"]
    if task == "avqa":
        return gt["answer"]
    if task == "avvp":
        return "+".join(sorted(e["event"] for e in gt["audio"])) or "none"
    if task == "ref-avs":
        return "null" if gt["null"] else gt["object"]
    if task in ("arig", "s4", "ms3"):
        return gt["object"] or "none"
    if task == "avss":
        return " and ".join(gt["objects"]) or "none"
    return "+".join(o["class"] for o in row["meta"]["objects"] if o["slot"] is not None)


def _hist(counter: Counter, n: int) -> dict:
    top = counter.most_common(1)
    return {
        "n": n,
        "answers": dict(sorted(counter.items())),
        "majority_answer": top[0][0] if top else None,
        "majority_share": round(top[0][1] / n, 4) if top else None,
    }


def balance_report(rows: list[dict]) -> dict:
    """Per task: class histogram (every source of every scene), answer histogram and the
    majority-answer share; per AVQA question type as well."""
    report: dict = {"num": len(rows), "tasks": {}}
    for task in TASKS:
        sel = [r for r in rows if r["task"] == task]
        if not sel:
            continue
        classes = Counter(o["class"] for r in sel for o in r["meta"]["objects"])
        entry = _hist(Counter(answer_key(r) for r in sel), len(sel))
        entry["classes"] = {c: classes.get(c, 0) for c in CLASSES}
        if task == "avqa":
            types = sorted({r["gt"]["question_type"] for r in sel})
            entry["question_types"] = {
                qt: _hist(
                    Counter(r["gt"]["answer"] for r in sel if r["gt"]["question_type"] == qt),
                    sum(r["gt"]["question_type"] == qt for r in sel),
                )
                for qt in types
            }
        report["tasks"][task] = entry
    return report


def generate_split(
    out_dir: str | Path,
    split: str,
    num: int,
    seed: int,
    tasks: list[str] | None = None,
    image_size: int = 224,
    workers: int = 1,
    *,
    write_audio: bool = True,
    progress: bool = False,
) -> tuple[Path, dict]:
    """Write ``num`` samples of ``split`` under ``out_dir/<split>/`` (layout in the module docstring).

    Args:
        out_dir: root folder; the split gets its own sub-folder.
        split: one of ``train``, ``val``, ``test``, ``test-compositional``.
        num: number of samples; sample ``i`` does ``tasks[i % len(tasks)]``.
        seed: user seed in [0, 2**24); different seeds give disjoint samples.
        tasks: task names (default: all nine).
        image_size: frame side in pixels (even).
        workers: worker processes for rendering + encoding.
        write_audio: also list the wav in each row's ``audio`` (else it is deleted after muxing).
        progress: show a tqdm bar.

    Returns:
        ``(manifest_path, balance_report)``; the report is also written as ``balance.json``.
    """
    if split not in SPLITS:
        raise ConfigError(f"unknown split {split!r}; known: {list(SPLITS)}")
    tasks = list(tasks or TASKS)
    bad = [t for t in tasks if t not in TASKS]
    if bad:
        raise ConfigError(f"unknown SynthAV task(s) {bad}; known: {list(TASKS)}")
    check_arguments(num, image_size, workers)
    out = prepare_out_dir(Path(out_dir) / split)
    jobs = [
        (out, split, i, seed, tasks[i % len(tasks)], i // len(tasks), image_size, write_audio)
        for i in range(num)
    ]
    rows: list[dict] = progress_map(_write_job, jobs, workers, f"synthav {split}", progress)
    manifest = write_manifest(out / "manifest.jsonl", rows)
    report = {"split": split, "seed": seed, "image_size": image_size, **balance_report(rows)}
    (out / "balance.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    logger.info("wrote %d %s samples to %s", num, split, manifest)
    return manifest, report


def check_arguments(num: int, image_size: int, workers: int) -> None:
    """Bounds of one call (before anything is allocated or written).

    Raises:
        SynthError: ``num`` outside 1..:data:`MAX_SAMPLES`, ``image_size`` odd or outside
            :data:`MIN_IMAGE_SIZE`..:data:`MAX_IMAGE_SIZE`, ``workers`` outside 1..:data:`MAX_WORKERS`.
    """
    for name, value, lo, hi in (
        ("num", num, 1, MAX_SAMPLES),
        ("image_size", image_size, MIN_IMAGE_SIZE, MAX_IMAGE_SIZE),
        ("workers", workers, 1, MAX_WORKERS),
    ):
        if not isinstance(value, int) or isinstance(value, bool) or not lo <= value <= hi:
            raise SynthError(f"{name} must be an integer in [{lo}, {hi}], got {value!r}")
    if image_size % 2:
        raise SynthError(f"image_size must be even, got {image_size}")


def prepare_out_dir(path: str | Path) -> Path:
    """Create ``path`` (and parents) if missing and check that files can be written in it.

    Raises:
        SynthError: the path is a file (or under one), or the folder cannot be created or written.
    """
    p = Path(path)
    existing = next((a for a in (p, *p.parents) if a.exists()), None)
    if existing is not None and not existing.is_dir():
        where = "is a file" if existing == p else f"is inside {existing}, which is a file"
        raise SynthError(f"output folder {p} {where}, not a folder")
    try:
        p.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=p, prefix=".write-test-"):
            pass
    except OSError as exc:
        raise SynthError(f"output folder {p} cannot be created or written ({exc.strerror or exc})") from exc
    return p


def _int_in(lo: int, hi: int, even: bool = False):
    """argparse type: an integer in [lo, hi] (argparse names the flag in its error)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if not lo <= value <= hi or (even and value % 2):
            raise argparse.ArgumentTypeError(
                f"must be {'an even integer' if even else 'an integer'} in [{lo}, {hi}], got {value}"
            )
        return value

    return parse


def main_synth(argv: list[str]) -> int:
    """CLI: ``--out DIR --split S --num N --seed S [--tasks a,b] [--image-size 224] [--workers W]``."""
    parser = argparse.ArgumentParser(
        prog="python -m crab_core synth", description="Generate a SynthAV split."
    )
    parser.add_argument("--out", required=True, help="output root (the split gets a sub-folder)")
    parser.add_argument("--split", required=True, choices=SPLITS, help="which SynthAV split to write")
    parser.add_argument(
        "--num",
        type=_int_in(1, MAX_SAMPLES),
        required=True,
        help=f"samples to write, 1..{MAX_SAMPLES} per call",
    )
    parser.add_argument("--seed", type=_int_in(0, 2**24 - 1), default=0, help="user seed in [0, 2**24)")
    parser.add_argument("--tasks", default=",".join(TASKS), help="comma-separated task names")
    parser.add_argument(
        "--image-size",
        type=_int_in(MIN_IMAGE_SIZE, MAX_IMAGE_SIZE, even=True),
        default=224,
        help=f"frame side in pixels, even, {MIN_IMAGE_SIZE}..{MAX_IMAGE_SIZE}",
    )
    parser.add_argument("--workers", type=_int_in(1, MAX_WORKERS), default=1, help="rendering processes")
    parser.add_argument("--no-wav", action="store_true", help="do not keep the separate wav files")
    args = parser.parse_args(argv)
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(message)s")
    tasks = [t.strip() for t in args.tasks.split(",") if t.strip()]
    if not tasks:
        parser.error("--tasks: no task names given")
    try:
        prepare_out_dir(args.out)
    except SynthError as exc:
        parser.error(f"argument --out: {exc}")
    manifest, report = generate_split(
        args.out,
        args.split,
        args.num,
        args.seed,
        tasks,
        args.image_size,
        args.workers,
        write_audio=not args.no_wav,
        progress=True,
    )
    for task, entry in report["tasks"].items():
        logger.info(
            "%-8s n=%-6d majority=%s (%.1f%%)",
            task,
            entry["n"],
            entry["majority_answer"],
            100 * entry["majority_share"],
        )
    logger.info("manifest: %s", manifest)
    return 0
