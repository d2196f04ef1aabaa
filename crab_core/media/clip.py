"""From a user's files to model-ready tensors: :class:`MediaClip` and :func:`load_clip`.

Task-specific numbers (frames per video, audio mode, which second a frame belongs to) come from the task
registry; this module only takes them as arguments.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np
from torch import Tensor

from crab_core.errors import MediaError, TaskError

from .audio import AUDIO_MODES, audio_label, load_audio_segments
from .image import clip_preprocess, load_image, load_image_uint8
from .limits import DEFAULT_MAX_DURATION_S, Durations, check_limit, probe_durations, validate_limit
from .mask import mask_from_any
from .probe import DEFAULT_MAX_BYTES, check_file
from .video import read_video, sample_frame_indices

logger = logging.getLogger(__name__)

PathLike = str | os.PathLike


@dataclass
class MediaClip:
    """Model-ready tensors for one sample.

    Attributes:
        frames: ``(T, 3, S, S)`` float32 CLIP-normalised video frames, or ``None``.
        audio: ``(T_a, frames, 128)`` float32 normalised fbank per audio segment, or ``None``.
        image: ``(1, 3, S, S)`` float32 CLIP-normalised image, or ``None``.
        mask: ``(1, S, S)`` ground-truth mask (float32 binary, or int64 class ids), or ``None``.
        duration_s: Duration of the video (or of the audio when there is no video), or ``None``.
        sources: The file each tensor came from (keys ``video``, ``audio``, ``image``, ``mask``).
        num_frames: ``T`` of ``frames`` (0 without video).
        notes: Plain-language remarks about how the input was read (e.g. a separate audio file whose
            length differs from the video's), for the result's ``notes``.
    """

    frames: Tensor | None = None
    audio: Tensor | None = None
    image: Tensor | None = None
    mask: Tensor | None = None
    duration_s: float | None = None
    sources: dict[str, str] = field(default_factory=dict)
    num_frames: int = 0
    notes: list[str] = field(default_factory=list)


#: A separate audio file may differ from the video's length by this much before the result says so.
LENGTH_MISMATCH_S = 0.5


@lru_cache(maxsize=32)
def _probe_cached(path: str, mtime_ns: int, size: int) -> Durations:
    return probe_durations(path)


def probe(path: Path) -> Durations:
    """:func:`probe_durations`, cached per path, modification time and size (``check_media`` then
    :func:`load_clip` probe each file once, not twice)."""
    st = path.stat()
    return _probe_cached(str(path.resolve()), st.st_mtime_ns, st.st_size)


def length_mismatch_note(
    video: PathLike, video_s: float | None, audio: PathLike, audio_s: float | None
) -> str | None:
    """The note for a separate audio file whose length differs from the video's, or None."""
    if video_s is None or audio_s is None or abs(video_s - audio_s) <= LENGTH_MISMATCH_S:
        return None
    longer = "longer" if audio_s > video_s else "shorter"
    return (
        f"the audio file {Path(audio).name} ({audio_s:.1f} s) is {longer} than the video {Path(video).name} "
        f"({video_s:.1f} s): the task's audio windows are spread over the audio file's own length, so they "
        "do not line up with the video's seconds"
    )


def _frames_from_images(paths: Sequence[PathLike], task_frames: int, size: int, max_bytes: int) -> Tensor:
    """AVS-style videos: a stack of frame images, subsampled uniformly to ``task_frames`` if longer."""
    if not paths:
        raise MediaError("an empty list of frame images was given as the video")
    chosen = [paths[i] for i in sample_frame_indices(len(paths), task_frames)]
    frames = np.stack([load_image_uint8(p, size, max_bytes=max_bytes) for p in chosen])
    return clip_preprocess(frames, size)


def _audio(
    source: PathLike,
    mode: str,
    num_segments: int,
    frame_index: int | None,
    max_bytes: int,
    max_duration_s: float,
    separate: bool,
    durations: Durations | None,
) -> tuple[Tensor, float]:
    """The task's fbank segments of ``source``: only the task's windows are decoded from long tracks."""
    from .fbank import crab_fbank

    if mode == "single" and frame_index is None:
        raise TaskError("audio_mode 'single' needs frame_index (the second the image belongs to)")
    try:
        segments, seconds = load_audio_segments(
            source,
            num_segments,
            mode=mode,
            index=frame_index,
            max_bytes=max_bytes,
            max_duration_s=max_duration_s,
            label=audio_label(source, separate),
            durations=durations,
        )
    except MediaError as exc:
        name = Path(source).name
        raise (exc if name in str(exc) else MediaError(f"{name}: {exc}")) from exc
    return crab_fbank(segments), seconds


def load_target_frame(
    video: PathLike | None = None,
    image: PathLike | None = None,
    *,
    task_frames: int,
    frame_index: int | None = None,
    max_bytes: int = DEFAULT_MAX_BYTES,
    max_duration_s: float = DEFAULT_MAX_DURATION_S,
) -> np.ndarray:
    """The target frame of a seg task at its original resolution, as ``(H, W, 3)`` uint8 RGB.

    The image when one is given, else frame ``frame_index`` (default 0) of the task's ``task_frames``
    uniformly sampled video frames (the frame :func:`load_clip`'s caller segments). Only that one frame is
    decoded. Masks predicted at ``S x S`` map back onto it with a plain resize (frames are squashed, not
    cropped, to ``S x S``).

    Raises:
        MediaError: No image or video, or a file that cannot be read.
    """
    if image is not None:
        return load_image_uint8(image, None, max_bytes=max_bytes)
    if video is None or not isinstance(video, (str, os.PathLike)):
        raise MediaError("no image or video file to take the target frame from")
    p = check_file(video, "video", max_bytes=max_bytes)
    check_limit(f"the video {p.name}", probe(p).video, validate_limit(max_duration_s))
    try:
        import decord  # heavy native library: imported on use

        reader = decord.VideoReader(str(p), ctx=decord.cpu(0))
        indices = sample_frame_indices(len(reader), task_frames)
        frame = reader[indices[min(frame_index or 0, len(indices) - 1)]].asnumpy()
        del reader
    except Exception as exc:  # noqa: BLE001 - decoder errors become one plain message
        raise MediaError(
            f"could not decode the target frame of {p.name} (corrupt or unsupported video?)"
        ) from exc
    if frame.ndim != 3 or frame.shape[-1] != 3:
        raise MediaError(f"{p.name}: the decoded frame has shape {frame.shape}, not (H, W, 3)")
    return np.ascontiguousarray(frame, dtype=np.uint8)


def check_media(
    video: PathLike | None = None,
    audio: PathLike | None = None,
    image: PathLike | None = None,
    *,
    max_bytes: int = DEFAULT_MAX_BYTES,
    max_duration_s: float = DEFAULT_MAX_DURATION_S,
) -> None:
    """Cheap pre-flight of a request's files (no decoding): checks, kinds and the duration limit.

    Lets a command reject a bad or too long input before it loads a model (``infer`` does).
    :func:`load_clip` applies the same checks itself.

    Raises:
        MediaError: A missing / empty / oversized / wrong-kind file, or a stream longer than the limit.
    """
    limit = validate_limit(max_duration_s)
    if video is not None and isinstance(video, (str, os.PathLike)):
        p = check_file(video, "video", max_bytes=max_bytes)
        info = probe(p)
        if info.has_video is False:
            raise MediaError(f"{p.name} has no video stream; give it as the audio, with an image or a video")
        check_limit(f"the video {p.name}", info.video, limit)
        if audio is None:
            check_limit(audio_label(p, separate=False), info.audio, limit)
    if audio is not None:
        p = check_file(audio, "audio", max_bytes=max_bytes)
        check_limit(audio_label(p, separate=True), probe(p).audio, limit)
    if image is not None:
        check_file(image, "image", max_bytes=max_bytes)


def load_clip(
    video: PathLike | Sequence[PathLike] | None = None,
    audio: PathLike | None = None,
    image: PathLike | None = None,
    mask: PathLike | None = None,
    *,
    task_frames: int,
    audio_mode: str | None = "uniform",
    image_size: int = 224,
    frame_index: int | None = None,
    audio_segments: int | None = None,
    mask_kind: str = "binary",
    max_bytes: int = DEFAULT_MAX_BYTES,
    max_duration_s: float = DEFAULT_MAX_DURATION_S,
) -> MediaClip:
    """Load a sample's media as the reference preprocesses it, with memory bounded for any input length.

    Audio comes from ``audio`` when given, otherwise from the video file's own audio track (a video without
    one raises :class:`MediaError`; silence is never substituted). The video stream, the video's audio
    track and a separate audio file must each last at most ``max_duration_s``: their declared lengths are
    checked before anything is decoded, and the decoders never read more than that. Only the task's frames
    and audio windows are decoded (each audio window at most its nominal 1 s, AVQA 2 s).

    Args:
        video: Video file, or a sequence of frame images (AVS frame stacks).
        audio: Separate audio file.
        image: Single frame (ARIG input / segmentation target frame).
        mask: Ground-truth mask file.
        task_frames: Frames per video (10 for AVE/AVVP/AVQA/Ref-AVS/AVSS, 5 for S4/MS3/ARIG); also the nominal
            clip length ``tot`` of the ``"uniform"`` / ``"single"`` audio split.
        audio_mode: ``"uniform"``, ``"avqa"``, ``"single"`` or ``None`` (no audio).
        image_size: Side ``S`` of frames, images and masks.
        frame_index: Segment index for ``"single"`` audio.
        audio_segments: Overrides the audio segment count / ``tot`` (default: ``task_frames``).
        mask_kind: ``"binary"``, ``"palette"``, ``"index"`` or ``"auto"``.
        max_bytes: Largest accepted file size.
        max_duration_s: Longest accepted duration of each stream (default 60 s, ``--max-duration``).

    Returns:
        A :class:`MediaClip`.

    Raises:
        MediaError: For any unreadable, unsuitable or too-short input.
        TaskError: For inconsistent arguments (unknown audio mode, audio wanted but no source, ...).
    """
    if audio_mode is not None and audio_mode not in AUDIO_MODES:
        raise TaskError(f"unknown audio_mode {audio_mode!r}; expected one of {AUDIO_MODES} or None")
    if task_frames < 1:
        raise TaskError(f"task_frames must be >= 1, got {task_frames}")
    max_duration_s = validate_limit(max_duration_s)
    clip = MediaClip()
    video_info = None
    if isinstance(video, (str, os.PathLike)):
        video_info = probe(check_file(video, "video", max_bytes=max_bytes))
    if video is not None:
        if isinstance(video, (str, os.PathLike)):
            frames, clip.duration_s = read_video(
                video,
                task_frames,
                image_size,
                max_bytes=max_bytes,
                max_duration_s=max_duration_s,
                durations=video_info,
            )
            clip.frames = clip_preprocess(frames, image_size)
            clip.sources["video"] = str(video)
        else:
            clip.frames = _frames_from_images(list(video), task_frames, image_size, max_bytes)
            clip.sources["video"] = ", ".join(str(v) for v in video)
        clip.num_frames = int(clip.frames.shape[0])
    if audio_mode is None and audio is not None:
        logger.warning("audio file %s ignored: this task takes no audio (audio_mode=None)", audio)
    if audio_mode is not None:
        source = audio if audio is not None else (video if isinstance(video, (str, os.PathLike)) else None)
        if source is None:
            raise TaskError("this task needs audio: give an audio file or a video with an audio track")
        separate = audio is not None
        info = probe(check_file(audio, "audio", max_bytes=max_bytes)) if separate else video_info
        clip.audio, audio_s = _audio(
            source,
            audio_mode,
            audio_segments or task_frames,
            frame_index,
            max_bytes,
            max_duration_s,
            separate,
            info,
        )
        clip.sources["audio"] = str(source)
        if separate and video_info is not None:
            note = length_mismatch_note(video, clip.duration_s, audio, audio_s)
            if note:
                clip.notes.append(note)
        if clip.duration_s is None:
            clip.duration_s = audio_s
    if image is not None:
        clip.image = load_image(image, image_size, max_bytes=max_bytes)
        clip.sources["image"] = str(image)
    if mask is not None:
        clip.mask = mask_from_any(mask, image_size, mask_kind, max_bytes=max_bytes)
        clip.sources["mask"] = str(mask)
    return clip
