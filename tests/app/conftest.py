"""Shared fixtures: one in-process app (random-weight crab-tiny) per test session, and example clips."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def examples_dir(tmp_path_factory) -> Path:
    """assets/examples when generated, else a fresh copy made by scripts/make_examples.py."""
    shipped = ROOT / "assets" / "examples"
    if (shipped / "examples.json").is_file():
        return shipped
    import importlib.util

    spec = importlib.util.spec_from_file_location("make_examples", ROOT / "scripts" / "make_examples.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    out = tmp_path_factory.mktemp("examples")
    mod.make_examples(out)
    return out


@pytest.fixture(scope="session")
def app_url(tmp_path_factory):
    """Launch the app in this process on a free loopback port; yields its URL (random-weight
    crab-tiny, or the model folder in ``$CRAB_STUDIO_TEST_MODEL``)."""
    import os

    os.environ.setdefault("GRADIO_TEMP_DIR", str(tmp_path_factory.mktemp("gradio")))
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    from app.cli import launch, make_demo
    from crab_core.pipeline import CrabPipeline

    folder = os.environ.get("CRAB_STUDIO_TEST_MODEL")  # e.g. assets/crab-tiny for the docs' screenshots
    demo = make_demo(CrabPipeline.load(folder) if folder else CrabPipeline.random_tiny())
    _, url, _ = launch(demo, port=free_port(), prevent_thread_lock=True, quiet=True)
    yield url.rstrip("/")
    demo.close()
