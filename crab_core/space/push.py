"""Upload a built Space folder to the Hub with huggingface_hub.

The token comes from the environment (``HF_TOKEN``) or huggingface_hub's own login; it is passed to
the API object only and never written to a file.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from ..errors import ConfigError, CrabError

log = logging.getLogger(__name__)


def push_space(folder: str | Path, repo_id: str, private: bool = False, api=None) -> str:
    """Create the Space ``repo_id`` (Gradio SDK) when missing and upload ``folder`` as one commit.

    Args:
        api: an ``HfApi``-like object (tests pass a fake); default ``HfApi(token=$HF_TOKEN)``.

    Returns:
        The Space's URL.

    Raises:
        ConfigError: ``repo_id`` is not ``owner/name`` or ``folder`` is not a built Space folder.
        CrabError: the Hub refused (no token, no rights, network), in one line.
    """
    folder = Path(folder)
    if repo_id.count("/") != 1 or not all(repo_id.split("/")):
        raise ConfigError(f"--push {repo_id!r}: expected a Space id such as your-name/crab-studio")
    if not (folder / "space.json").is_file() or not (folder / "app.py").is_file():
        raise ConfigError(f"{folder}: not a built Space folder (space.json / app.py missing)")
    if api is None:
        from huggingface_hub import HfApi

        api = HfApi(token=os.environ.get("HF_TOKEN") or None)
    try:
        api.create_repo(
            repo_id=repo_id, repo_type="space", space_sdk="gradio", private=private, exist_ok=True
        )
        api.upload_folder(
            folder_path=str(folder),
            repo_id=repo_id,
            repo_type="space",
            commit_message="Crab Studio Space (python -m crab_core space build)",
            ignore_patterns=[".git/*", "**/__pycache__/*"],
        )
    except Exception as exc:  # HfHubHTTPError, LocalTokenNotFoundError, connection errors
        text = " ".join(f"{type(exc).__name__}: {exc}".split())[:300]
        hint = "" if os.environ.get("HF_TOKEN") else " (set HF_TOKEN to a token with write access)"
        raise CrabError(f"cannot push to the Space {repo_id}: {text}{hint}") from None
    url = f"https://huggingface.co/spaces/{repo_id}"
    log.info("pushed %s to %s", folder, url)
    return url
