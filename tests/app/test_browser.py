"""Real-browser test: Debian chromium driven by playwright against the in-process app.

Uploads a SynthAV clip, runs AVE (timeline appears) and S4 (mask overlay appears), ablates a head
(the variant result appears) and saves a screenshot to test-artifacts/app.png.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import pytest

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="Debian chromium is not installed (apt-get install chromium)")
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]
TIMEOUT = 90_000


@pytest.fixture()
def page(app_url):
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
    with tempfile.TemporaryDirectory() as profile, sync_api.sync_playwright() as pw:
        ctx = pw.chromium.launch_persistent_context(profile, executable_path=CHROMIUM, args=FLAGS, headless=True,
                                                    viewport={"width": 1400, "height": 1800})
        pg = ctx.new_page()
        pg.set_default_timeout(TIMEOUT)
        pg.goto(app_url)
        yield pg
        ctx.close()


def _set_tokens(page, n: int) -> None:
    box = page.get_by_label("Max answer tokens", exact=False).locator("visible=true").first
    box.fill(str(n))
    box.press("Enter")


def _choose_task(page, label: str) -> None:
    page.locator("#task input").click()
    page.get_by_role("option", name=label, exact=False).first.click()


def test_upload_run_ave_s4_and_ablate(page, examples_dir):
    page.locator("#in-video input[type=file]").set_input_files(str(examples_dir / "ave.mp4"))
    page.locator("#in-video video").wait_for()
    _set_tokens(page, 4)
    page.locator("#run").click()
    page.locator("#timeline .js-plotly-plot").wait_for()
    assert page.locator("#answer").inner_text().strip()

    page.locator("#in-video button[aria-label='Clear']").first.click()
    page.locator("#in-video input[type=file]").set_input_files(str(examples_dir / "s4.mp4"))
    page.locator("#in-video video").wait_for()
    _choose_task(page, "S4")
    page.locator("#frame").wait_for()
    _set_tokens(page, 4)
    page.locator("#run").click()
    page.locator("#result-image img").wait_for()

    page.get_by_role("tab", name="Ablate / force heads").click()
    page.locator("#ablate").click()
    page.locator("#variant-image img").wait_for()
    assert "without head(s) 0" in page.locator("#variant-status").inner_text()
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "app.png"), full_page=True)
    assert (ARTIFACTS / "app.png").stat().st_size > 10_000
