"""Training data: Crab-format manifests (docs/manifest.md) and SynthAV rendered in memory.

Both sources produce the same :class:`RawItem` (compact media + texts), which
:func:`tokenize_item` turns into a :class:`TrainItem` (prompt ids, answer ids + EOS, labels).
Media follow the inference path (:mod:`crab_core.pipeline`): the task's default prompt variant,
``spec.num_frames`` frames sampled uniformly, Crab fbank features per audio window, the target
image = the frame at ``frame_index``.

Media are stored compactly (uint8 frames, float16 fbank) and normalised at collate time, so a
few thousand rendered samples fit in memory and in a cache file.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..errors import ConfigError
from ..media.audio import SAMPLE_RATE, audio_features
from ..media.video import sample_frame_indices
from ..parallel import progress_map
from ..tasks import get_task
from ..tasks.prompts import build_prompt
from ..tokenizer import CrabTokenizer

log = logging.getLogger(__name__)

IGNORE_INDEX = -100
NUM_CLASSES = 10  # SynthAV classes (tower pretraining labels)
LABELS_VERSION = 4  # bumped when the training labels change (part of the render-cache key)


@dataclass
class RawItem:
    """One sample before tokenisation.

    Attributes:
        id: sample id.
        task: task name.
        prompt: full prompt text (chat-wrapped).
        output: target answer text (Crab format).
        video: ``(T, S, S, 3)`` uint8 frames or None.
        audio: ``(T_a, F, 128)`` float16 fbank or None.
        image: ``(S, S, 3)`` uint8 target frame or None.
        mask: ``(S, S)`` uint8 target mask (binary 0/1, or AVSS class index) or None.
        gt: structured ground truth (docs/manifest.md; seg masks as arrays in ``gt_mask``).
        labels: tower-pretraining labels (SynthAV only): ``patch`` ``(T, S', S')`` int8 class maps
            (0 = background) of the video frames, ``audible`` ``(T_a, 10)`` uint8, ``gain``
            ``(T_a, 10)`` float16 dB; ``image_map`` ``(S', S')`` the class map of the target frame
            (items with an image and a frame index).
        media_of: id of the item whose media this one shares (another question on the same clip,
            :mod:`crab_core.training.variants`); None = its own media.
    """

    id: str
    task: str
    prompt: str
    output: str
    video: np.ndarray | None = None
    audio: np.ndarray | None = None
    image: np.ndarray | None = None
    mask: np.ndarray | None = None
    gt: dict = field(default_factory=dict)
    labels: dict = field(default_factory=dict)
    media_of: str | None = None


@dataclass
class TrainItem:
    """A tokenised sample: ``input_ids = prompt_ids + answer_ids``, labels -100 on the prompt."""

    raw: RawItem
    prompt_ids: torch.Tensor
    answer_ids: torch.Tensor

    @property
    def task(self) -> str:
        return self.raw.task

    @property
    def input_ids(self) -> torch.Tensor:
        return torch.cat([self.prompt_ids, self.answer_ids])

    @property
    def labels(self) -> torch.Tensor:
        return torch.cat([torch.full_like(self.prompt_ids, IGNORE_INDEX), self.answer_ids])


def tokenize_item(raw: RawItem, tokenizer: CrabTokenizer) -> TrainItem:
    """Tokenise prompt and answer separately (as the reference); the answer ends with EOS."""
    eos = tokenizer.config.llm.eos_token_id
    prompt = torch.tensor(tokenizer.encode(raw.prompt), dtype=torch.long)
    answer = torch.tensor(tokenizer.encode(raw.output) + [eos], dtype=torch.long)
    return TrainItem(raw, prompt, answer)


# ---------------------------------------------------------------------------------- media
def task_media(
    task: str, frames: np.ndarray, wave: np.ndarray, frame_index: int | None, question: str | None
) -> tuple[str, np.ndarray | None, np.ndarray | None, np.ndarray | None]:
    """Prompt and media of one clip for ``task``'s default variant.

    Args:
        frames: ``(n, S, S, 3)`` uint8 frames, one per second.
        wave: ``(N,)`` float32 16 kHz waveform.

    Returns:
        ``(prompt, video (T,S,S,3) | None, fbank (T_a,F,128) float16 | None, image (S,S,3) | None)``.
    """
    spec = get_task(task)
    pv = spec.variant()
    fi = frame_index if pv.needs_ordinal else None
    prompt = build_prompt(spec, question=question, frame_index=fi)
    video = frames[sample_frame_indices(len(frames), spec.num_frames)] if "video" in pv.blocks else None
    audio = None
    if "audio" in pv.blocks:
        w = torch.from_numpy(np.ascontiguousarray(wave, dtype=np.float32))
        if pv.audio_mode == "single":  # the 1-s window at the target second of a num_frames-s clip
            feats = audio_features(w, SAMPLE_RATE, spec.num_frames, mode="single", index=frame_index or 0)
        else:
            feats = audio_features(w, SAMPLE_RATE, pv.num_seconds, mode=pv.audio_mode)
        audio = feats.numpy().astype(np.float16)
    image = None
    if "image" in pv.blocks or spec.needs_mask:
        image = frames[min(frame_index or 0, len(frames) - 1)]
    return prompt, video, audio, image


# ---------------------------------------------------------------------------------- SynthAV
def _class_maps(seed: int, task: str, size: int, frames: np.ndarray) -> np.ndarray:
    """Per-second class maps ``(n, S, S)`` int8 (class index + 1) of a SynthAV sample's scene."""
    from ..synthav.annotate import TASKS as SYNTH_TASKS
    from ..synthav.annotate import build_target
    from ..synthav.generate import stratum
    from ..synthav.render_video import render_video
    from ..synthav.world import CLASSES, split_of_seed

    rng = np.random.default_rng([seed, SYNTH_TASKS.index(task)])
    target = build_target(rng, task, split_of_seed(seed), stratum(seed))
    video = render_video(target.scene, size)
    if video.frames.shape != frames.shape or not np.array_equal(video.frames, frames):
        raise ConfigError("SynthAV render_sample no longer matches its scene renderer (tower labels)")
    maps = np.zeros(frames.shape[:3], np.int8)
    for i, obj in enumerate(target.scene.objects):
        for t in range(frames.shape[0]):
            maps[t][video.mask_at(i, t)] = CLASSES.index(obj.cls) + 1
    return maps


def _audio_labels(meta: dict, seconds: int) -> tuple[np.ndarray, np.ndarray]:
    from ..synthav.world import CLASSES

    audible = np.zeros((seconds, NUM_CLASSES), np.uint8)
    gain = np.zeros((seconds, NUM_CLASSES), np.float16)
    for obj in meta["objects"]:
        c = CLASSES.index(obj["class"])
        for s, e in obj["sounding"]:
            audible[s:e, c] = 1
            gain[s:e, c] = obj["gain_db"]
    return audible, gain


def synth_raw(seed: int, task: str, image_size: int, with_labels: bool = True) -> RawItem:
    """Render SynthAV sample ``(seed, task)`` to a :class:`RawItem` (tower labels optional)."""
    from ..synthav import render_sample

    s = render_sample(seed, task, image_size)
    prompt, video, audio, image = task_media(task, s.frames, s.audio, s.frame_index, s.question)
    labels = {}
    if with_labels:
        maps = _class_maps(seed, task, image_size, s.frames)
        audible, gain = _audio_labels(s.meta, s.frames.shape[0])
        idx = sample_frame_indices(len(s.frames), get_task(task).num_frames)
        labels = {"patch": maps[idx], "audible": audible, "gain": gain}
        if image is not None and s.frame_index is not None:  # the image probe (image grid)
            labels["image_map"] = maps[s.frame_index]
        if s.mask is not None and s.frame_index is not None:
            labels["seg_classes"] = seg_classes(maps[s.frame_index], s.mask)
            labels["seg_map"] = maps[
                s.frame_index
            ]  # (S, S) class map of the seg frame (crab_core.training.swap)
    gt = dict(s.gt)
    gt.pop("mask", None)
    return RawItem(
        id=f"synthav-{seed}-{task}",
        task=task,
        prompt=prompt,
        output=s.output,
        video=video,
        audio=audio,
        image=image,
        mask=s.mask,
        gt=gt,
        labels=labels,
    )


def seg_classes(class_map: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """``(K,)`` uint8: the classes painted inside a seg target (``class_map`` ``(S, S)``, 0 = background,
    ``c + 1`` = class ``c``; ``mask`` ``(S, S)`` or ``(1, S, S)``, non-zero = target, binary or class ids)."""
    inside = class_map[np.asarray(mask).reshape(class_map.shape) > 0]
    out = np.zeros(NUM_CLASSES, np.uint8)
    present = np.unique(inside[inside > 0]).astype(np.int64) - 1
    out[present] = 1
    return out


def _synth_job(job: tuple) -> RawItem:
    return synth_raw(*job)


def synth_seeds(
    split: str, tasks: list[str], per_task: int, user_seed: int, start: int = 0
) -> list[tuple[int, str]]:
    """``(seed, task)`` of the samples ``start .. start + per_task - 1`` of each task of a split."""
    from ..synthav import task_seed

    return [(task_seed(split, t, k, user_seed), t) for k in range(start, start + per_task) for t in tasks]


def data_seeds(data, tasks: list[str], split: str, per_task: int) -> list[tuple[int, str]]:
    """``(seed, task)`` of a recipe's SynthAV samples of ``split``: ``per_task`` of each task, then (on
    ``train``) the ``DataSpec.extra_per_task`` samples of some tasks, the next seeds of their sequences.

    Args:
        data: the recipe's :class:`~crab_core.training.recipe.DataSpec`.
    """
    pairs = synth_seeds(split, tasks, per_task, data.user_seed)
    if split == "train":
        for task, extra in data.extra_per_task.items():
            if task in tasks and extra > 0:
                pairs += synth_seeds(split, [task], extra, data.user_seed, start=per_task)
    return pairs


def render_synth(
    pairs: list[tuple[int, str]],
    image_size: int,
    workers: int = 1,
    with_labels: bool = True,
    progress: bool = False,
) -> list[RawItem]:
    """Render many SynthAV samples (in ``workers`` processes), in the order of ``pairs``."""
    jobs = [(seed, task, image_size, with_labels) for seed, task in pairs]
    return progress_map(_synth_job, jobs, workers, "render SynthAV", progress, chunksize=8, min_parallel=9)


# ---------------------------------------------------------------------------------- cache
_ARRAYS = ("video", "audio", "image", "mask")


def save_items(items: list[RawItem], path: str | Path) -> None:
    """Write items to one file (tensors + JSON text; loads with ``weights_only=True``)."""
    blob: dict = {
        "meta": json.dumps(
            [{"id": r.id, "task": r.task, "prompt": r.prompt, "output": r.output, "gt": r.gt} for r in items]
        )
    }
    for i, r in enumerate(items):
        for name in _ARRAYS:
            a = getattr(r, name)
            if a is not None:
                blob[f"{i}.{name}"] = torch.from_numpy(np.ascontiguousarray(a))
        for name, a in r.labels.items():
            blob[f"{i}.labels.{name}"] = torch.from_numpy(np.ascontiguousarray(a))
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    torch.save(blob, str(path))


def load_items(path: str | Path) -> list[RawItem]:
    """Read items written by :func:`save_items`."""
    blob = torch.load(str(path), weights_only=True)
    items = []
    for i, m in enumerate(json.loads(blob["meta"])):
        arrays = {n: blob[f"{i}.{n}"].numpy() if f"{i}.{n}" in blob else None for n in _ARRAYS}
        pre = f"{i}.labels."
        labels = {k[len(pre) :]: v.numpy() for k, v in blob.items() if k.startswith(pre)}
        items.append(
            RawItem(m["id"], m["task"], m["prompt"], m["output"], gt=m["gt"], labels=labels, **arrays)
        )
    return items


def cached_synth(
    cache: str | Path | None,
    pairs: list[tuple[int, str]],
    image_size: int,
    workers: int = 1,
    with_labels: bool = True,
    progress: bool = False,
) -> list[RawItem]:
    """Render ``pairs`` once and keep them in ``cache`` (reused when present and complete)."""
    if cache is not None and Path(cache).is_file():
        items = load_items(cache)
        if [r.id for r in items] == [f"synthav-{s}-{t}" for s, t in pairs]:
            log.info("loaded %d rendered samples from %s", len(items), cache)
            return items
        log.info("cache %s does not match the requested samples: re-rendering", cache)
    items = render_synth(pairs, image_size, workers, with_labels, progress)
    if cache is not None:
        save_items(items, cache)
    return items


# ---------------------------------------------------------------------------------- manifest
def manifest_raw(row: dict, root: Path, image_size: int) -> RawItem:
    """Load one manifest row (docs/manifest.md) with the inference loaders."""
    from ..media import load_clip
    from ..media.image import load_image_uint8
    from ..media.mask import mask_from_any
    from ..metrics.scoring import mask_loader_kind

    spec = get_task(row["task"])
    pv = spec.variant()

    def path(key):
        v = row.get(key)
        return None if v is None else str(v if Path(v).is_absolute() else root / v)

    fi = row.get("frame_index")
    video, audio, image = path("video"), path("audio"), path("image")
    mode = pv.audio_mode if "audio" in pv.blocks else None
    segs = spec.num_frames if mode == "single" else pv.num_seconds
    clip = load_clip(
        video=video if "video" in pv.blocks or image is None else None,
        audio=audio,
        task_frames=spec.num_frames,
        audio_mode=mode,
        image_size=image_size,
        frame_index=fi,
        audio_segments=segs,
    )
    frames = None
    if clip.frames is not None:  # back to uint8 for compact storage (undo CLIP normalisation)
        frames = _denormalise(clip.frames)
    img = (
        load_image_uint8(image, image_size)
        if image
        else (frames[min(fi or 0, len(frames) - 1)] if frames is not None and spec.needs_mask else None)
    )
    gt = dict(row.get("gt", {}))
    mask = None
    if spec.needs_mask and gt.get("mask"):
        kind = mask_loader_kind(spec, gt)  # the one rule of eval (AVSS: index unless "palette")
        m = mask_from_any(path_in(gt["mask"], root), image_size, kind)
        mask = m.reshape(image_size, image_size).numpy().astype(np.uint8)
        gt.pop("mask")
    prompt = build_prompt(spec, question=row.get("question"), frame_index=fi if pv.needs_ordinal else None)
    return RawItem(
        id=str(row.get("id")),
        task=row["task"],
        prompt=prompt,
        output=row["output"],
        video=frames if "video" in pv.blocks else None,
        audio=None if clip.audio is None else clip.audio.numpy().astype(np.float16),
        image=img if ("image" in pv.blocks or spec.needs_mask) else None,
        mask=mask,
        gt=gt,
    )


def path_in(p: str, root: Path) -> str:
    return str(p if Path(p).is_absolute() else root / p)


def _denormalise(frames: torch.Tensor) -> np.ndarray:
    from ..media.image import CLIP_MEAN, CLIP_STD

    mean = torch.tensor(CLIP_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(CLIP_STD).view(1, 3, 1, 1)
    x = (frames * std + mean).clamp(0, 1) * 255 + 0.5
    return x.to(torch.uint8).permute(0, 2, 3, 1).contiguous().numpy()


def read_manifest(
    path: str | Path, image_size: int, tasks: list[str] | None = None, limit: int | None = None
) -> list[RawItem]:
    """Load the rows of a JSONL manifest (optionally only ``tasks``; at most ``limit`` rows)."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"{p}: manifest not found")
    items = []
    with p.open(encoding="utf-8") as fh:
        for line in fh:
            if not line.strip():
                continue
            row = json.loads(line)
            if tasks and row["task"] not in tasks:
                continue
            items.append(manifest_raw(row, p.parent, image_size))
            if limit is not None and len(items) >= limit:
                break
    return items
