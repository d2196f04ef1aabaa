"""What a user may read in an error message: their own file names, never a server path or a
decoder's internals (``threaded_decoder.cc:218: Check failed ...``)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import PurePosixPath

MAX_CHARS = 300
#: Where decoder internals start: C/C++ source locations, assertion and abort texts, log prefixes.
_INTERNALS = re.compile(
    r"(\[\d{2}:\d{2}:\d{2}\]|[\w./-]+\.(?:cc|cpp|cxx|c|h|hpp):\d+|Check failed|terminate called|"
    r"Stack trace|Traceback \(most recent|DECORDError|DECORD|at 0x[0-9a-f]+|errno \d+|\bAVERROR)",
    re.IGNORECASE,
)
#: An absolute path (POSIX, or a Windows drive path) standing alone in the text.
_PATH = re.compile(r"(?<![\w.:/])(?:[A-Za-z]:\\|/)(?:[^\s'\"()\[\]{}<>,;:]+)")
UNREADABLE = "the file is damaged or not in a supported format"


def _replace_known(text: str, names: Mapping[str, str]) -> str:
    for server, shown in sorted(names.items(), key=lambda kv: -len(kv[0])):
        text = text.replace(server, shown)
        base = PurePosixPath(server).name
        if base and base != shown:
            text = re.sub(rf"(?<![\w.-]){re.escape(base)}(?![\w.-])", shown, text)
    return text


def _basename(match: re.Match) -> str:
    name = PurePosixPath(match.group(0).replace("\\", "/")).name
    return name or "a server folder"


def user_message(text: str, names: Mapping[str, str] | None = None) -> str:
    """Rewrite ``text`` for the user.

    Args:
        text: a library / decoder message. names: ``{server path: the user's file name}`` of the
            request's uploads (their content-addressed copies and Gradio's upload paths).

    Returns:
        One line of at most :data:`MAX_CHARS` characters: known paths replaced by the user's file
        names, other absolute paths by their last component, and anything from a decoder's
        internals by :data:`UNREADABLE`.
    """
    text = " ".join(str(text).split())
    text = _replace_known(text, names or {})
    cut = _INTERNALS.search(text)
    if cut is not None:
        head = text[: cut.start()].rstrip(" :;,-([")
        text = f"{head}: {UNREADABLE}" if head else f"could not read the file: {UNREADABLE}"
    text = _PATH.sub(_basename, text)
    if len(text) > MAX_CHARS:
        text = text[: MAX_CHARS - 1].rstrip() + "…"
    return text or "the request could not be processed"


#: What each handler was doing, for internal-error messages.
ACTIONS = {
    "run": "running the task",
    "intervene": "re-running with the routing change",
    "compare": "running the heads side by side",
    "attention": "computing attention",
    "attribution": "computing attributions",
    "update_views": "drawing the router views",
    "task_changed": "switching the task",
    "model_info": "describing the model",
    "list_examples": "listing the examples",
}


def internal_message(handler: str) -> str:
    """The message for a failure that is the app's fault, not the input's (one line, no details:
    those go to the server log)."""
    action = ACTIONS.get(handler, "processing this request")
    return (
        f"Internal error in Crab Studio while {action}. This is not a problem with your file or "
        "input; the details are in the server log."
    )
