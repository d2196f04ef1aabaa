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


class InternalError(CrabError, RuntimeError):
    """A bug in Crab Studio itself, not a problem with the user's input.

    It is a :class:`CrabError` so every front end still reports it in one line, but its message always
    starts with ``internal error`` and says the input is not to blame (the app shows it as such).
    """

    PREFIX = "internal error (a bug in Crab Studio, not a problem with your input)"

    def __init__(self, message: str = "") -> None:
        text = str(message)
        if not text.startswith("internal error"):
            text = f"{self.PREFIX}: {text}" if text else self.PREFIX
        super().__init__(text)


class InterpretError(InternalError):
    """An interpretability read-out (attention maps, attribution) failed on an input the model ran on."""


class OutputError(CrabError):
    """An output file cannot be written (missing or read-only folder, wrong extension, a folder in its
    place)."""
