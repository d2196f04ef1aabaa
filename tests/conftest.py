"""Shared pytest fixtures: locations of the shared reference fixtures and real media."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]


def shared_dir() -> Path:
    """The project's ``shared/`` folder: ``$CRAB_SHARED`` or ``<repo>/../shared``."""
    env = os.environ.get("CRAB_SHARED")
    return Path(env) if env else REPO.parent / "shared"


@pytest.fixture(scope="session")
def fixtures_dir() -> Path:
    path = shared_dir() / "reference-fixtures"
    if not path.is_dir():
        pytest.skip(f"reference fixtures not found at {path}")
    return path


@pytest.fixture(scope="session")
def real_media_dir() -> Path:
    path = shared_dir() / "real-media"
    if not path.is_dir():
        pytest.skip(f"real media not found at {path}")
    return path


@pytest.fixture(autouse=True)
def _deterministic():
    torch.manual_seed(0)
    yield
