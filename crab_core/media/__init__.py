"""Media loading: user files -> checked, decoded, normalised tensors (video, audio, image, mask).

``crab_fbank`` lives in :mod:`crab_core.media.fbank` and is imported there on use.
"""

from .audio import (
    AUDIO_MODES,
    FULL_DECODE_MAX_S,
    MIN_AUDIO_SECONDS,
    SAMPLE_RATE,
    audio_features,
    audio_label,
    audio_segments,
    load_audio,
    load_audio_segments,
)
from .clip import MediaClip, check_media, load_clip
from .image import CLIP_MEAN, CLIP_STD, clip_preprocess, load_image, load_image_uint8, resize_rgb
from .limits import (
    DURATION_TOLERANCE_S,
    LIMIT_FLAG,
    Durations,
    check_limit,
    describe_decoder_error,
    probe_durations,
    too_long,
    validate_limit,
)
from .mask import (
    AVSS_NUM_CLASSES,
    avsbench_palette,
    colours_to_classes,
    guess_mask_kind,
    load_binary_mask,
    load_index_mask,
    load_palette_mask,
    mask_from_any,
)
from .probe import (
    AUDIO_EXTENSIONS,
    DEFAULT_MAX_BYTES,
    DEFAULT_MAX_DURATION_S,
    IMAGE_EXTENSIONS,
    MASK_EXTENSIONS,
    VIDEO_EXTENSIONS,
    check_duration,
    check_file,
    sniff,
)
from .video import load_video_frames, read_video, sample_frame_indices, video_duration
from .windows import Window, plan_windows

__all__ = [
    "AUDIO_EXTENSIONS",
    "AUDIO_MODES",
    "AVSS_NUM_CLASSES",
    "CLIP_MEAN",
    "CLIP_STD",
    "DEFAULT_MAX_BYTES",
    "DEFAULT_MAX_DURATION_S",
    "DURATION_TOLERANCE_S",
    "FULL_DECODE_MAX_S",
    "IMAGE_EXTENSIONS",
    "LIMIT_FLAG",
    "MASK_EXTENSIONS",
    "MIN_AUDIO_SECONDS",
    "SAMPLE_RATE",
    "VIDEO_EXTENSIONS",
    "Durations",
    "MediaClip",
    "Window",
    "audio_features",
    "audio_label",
    "audio_segments",
    "avsbench_palette",
    "check_duration",
    "check_file",
    "check_limit",
    "check_media",
    "describe_decoder_error",
    "clip_preprocess",
    "colours_to_classes",
    "guess_mask_kind",
    "load_audio",
    "load_audio_segments",
    "load_binary_mask",
    "load_clip",
    "load_image",
    "load_image_uint8",
    "load_index_mask",
    "load_palette_mask",
    "load_video_frames",
    "mask_from_any",
    "plan_windows",
    "probe_durations",
    "read_video",
    "resize_rgb",
    "sample_frame_indices",
    "sniff",
    "too_long",
    "validate_limit",
    "video_duration",
]
