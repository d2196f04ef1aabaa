"""Error types. Every user-facing failure raises a subclass of ``CrabError`` with a clear message."""

from __future__ import annotations


class CrabError(Exception):
    """Base class for errors a user can act on (bad file, bad config, bad input)."""


class ConfigError(CrabError, ValueError):
    """A configuration is invalid or cannot be read."""


class CheckpointError(CrabError):
    """A checkpoint file is missing, corrupt, of the wrong kind, or does not fit the model."""


class MediaError(CrabError):
    """A media file is missing, empty, corrupt, of the wrong kind, or too short."""


class TaskError(CrabError, ValueError):
    """Unknown task or inputs that do not fit the task."""


class EvaluationError(CrabError):
    """An evaluation produced no result: no manifest row could be run and scored."""


class SynthError(ConfigError):
    """Bad SynthAV generation arguments (sample count, image size, output folder)."""


class ReportError(CrabError):
    """A results file cannot be read or is not a results file, or a generated docs region is malformed."""
