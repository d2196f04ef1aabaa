"""Real-browser tests: Debian chromium driven by playwright against the in-process app.

Each named view is asserted to render (its plot, image or grid is in the page with its content),
not only that the page loads, and a screenshot of it is saved under ``test-artifacts/`` (the
pictures in docs/app.md are these). Flows: AVE from a clip (answer, timeline with the ground
truth, router views, heads side by side), S4 from a clip (mask, heads side by side, ablation),
S4 from a frame + a wav (mask at the frame's aspect ratio), attention on S4 and MS3, attribution.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="Debian chromium is not installed (apt-get install chromium)"
)
ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts"
#: Real media (a 1280x720 AVSBench frame and its audio) when the shared folder is next to the checkout.
REAL_S4 = ROOT.parent / "shared" / "real-media" / "s4"
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
TIMEOUT = 300_000
#: Seven decodes (normal + 2 per head) take longer than one run, more so on a busy machine.
GRID_TIMEOUT = 600_000


@pytest.fixture()
def page(app_url):
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
    with tempfile.TemporaryDirectory() as profile, sync_api.sync_playwright() as pw:
        ctx = pw.chromium.launch_persistent_context(
            profile,
            executable_path=CHROMIUM,
            args=FLAGS,
            headless=True,
            viewport={"width": 1400, "height": 1000},
        )
        pg = ctx.new_page()
        pg.set_default_timeout(TIMEOUT)
        pg.goto(app_url)
        yield pg
        ctx.close()


def _shot(locator, name: str) -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    locator.scroll_into_view_if_needed()
    locator.screenshot(path=str(path))
    assert path.stat().st_size > 3_000, f"{name}: screenshot is nearly empty"
    return path


def _set_tokens(page, n: int) -> None:
    """A short answer budget for the random-weight model (it rarely stops); a trained model
    (``$CRAB_STUDIO_TEST_MODEL``) keeps the task's own budget so its answers are whole."""
    if os.environ.get("CRAB_STUDIO_TEST_MODEL"):
        return
    box = page.get_by_label("Max answer tokens", exact=False).locator("visible=true").first
    box.fill(str(n))
    box.press("Enter")


def _choose_task(page, label: str) -> None:
    page.locator("#task input").click()
    page.get_by_role("option", name=label, exact=False).first.click()


def _upload_video(page, path: Path) -> None:
    clear = page.locator("#in-video button[aria-label='Clear']")
    if clear.count():
        clear.first.click()
    page.locator("#in-video input[type=file]").set_input_files(str(path))
    page.locator("#in-video video").wait_for()


def _run(page) -> str:
    """Click Run and wait for this run's status line; returns it."""
    before = page.locator("#status").inner_text()
    page.locator("#run").click()
    page.wait_for_function(
        "before => { const t = document.querySelector('#status').innerText;"
        " return t !== before && t.includes('answered in'); }",
        arg=before,
    )
    return page.locator("#status").inner_text()


def _tab(page, name: str) -> None:
    page.get_by_role("tab", name=name, exact=True).click()


def _plot(page, elem: str) -> None:
    """A plotly view rendered with data (an SVG with at least one trace)."""
    page.locator(f"{elem} .js-plotly-plot .main-svg").first.wait_for()
    assert (
        page.locator(
            f"{elem} .js-plotly-plot .plot .trace, {elem} .js-plotly-plot .heatmaplayer image, "
            f"{elem} .js-plotly-plot .barlayer .point"
        ).count()
        > 0
    ), f"{elem} has no data"


def _grid(page, name: str) -> None:
    _tab(page, "Heads side by side")
    page.locator("#compare").click()
    page.locator("#head-grid .crab-card").nth(6).wait_for(timeout=GRID_TIMEOUT)
    cards = page.locator("#head-grid .crab-card")
    assert cards.count() == 7  # normal + only / without each of crab-tiny's 3 heads
    assert page.locator("#head-grid .crab-card[data-variant='normal']").count() == 1
    assert "vs ground truth" in cards.nth(1).inner_text() and "NLL" in cards.nth(1).inner_text()
    _shot(page.locator("#head-grid"), name)


def test_ave_result_router_views_and_heads_grid(page, examples_dir):
    _upload_video(page, examples_dir / "ave.mp4")
    assert not page.locator("#gt-mask").is_visible()  # no ground-truth mask upload for AVE
    assert not page.locator("#result-image").is_visible()  # no empty box / mask panel
    _set_tokens(page, 24)
    _run(page)
    _plot(page, "#timeline")
    assert page.locator("#answer").inner_text().strip()
    summary = page.locator("#summary").inner_text()
    assert "Expected answer" in summary and "Against the ground truth" in summary  # the example's GT
    assert page.locator("#timeline .js-plotly-plot").inner_text().count("truth") >= 1
    _shot(page.locator("#results"), "result-ave")
    _tab(page, "Router")
    for elem in ("#router-heatmap", "#layer-head", "#head-contrib"):
        _plot(page, elem)
    assert "uniform" in page.locator("#router-heatmap").inner_text()
    _shot(page.locator("#router-heatmap"), "router-heatmap")
    _shot(page.locator("#layer-head").locator("xpath=..").first, "router-summary")
    page.get_by_label("per token").check()
    page.wait_for_timeout(1500)
    _plot(page, "#router-heatmap")
    assert "video" in page.locator("#router-heatmap").inner_text()  # modality band labels
    _shot(page.locator("#router-heatmap"), "router-heatmap-tokens")
    _grid(page, "heads-ave")


def test_s4_clip_mask_grid_and_ablation(page, examples_dir):
    _upload_video(page, examples_dir / "s4.mp4")
    _choose_task(page, "S4")
    page.locator("#frame").wait_for()
    page.locator("#gt-mask").wait_for()  # the ground-truth mask upload appears for S4
    page.locator("#gt-mask input[type=file]").set_input_files(str(examples_dir / "s4_mask.png"))
    target = page.locator("#frame input[type=number]")
    target.fill("3")  # the second the example's ground-truth mask is for
    target.press("Enter")
    _set_tokens(page, 12)
    _run(page)
    page.locator("#result-image img").wait_for()
    assert not page.locator("#timeline").is_visible()  # no empty timeline panel
    assert "ground truth" in page.locator("#legend").inner_text()
    _shot(page.locator("#results"), "result-s4")
    _grid(page, "heads-s4")
    assert page.locator("#head-grid .crab-drawing img").count() == 7
    _tab(page, "Ablate / force heads")
    page.locator("#ablate").click()
    page.locator("#variant-image img").wait_for()
    assert "without head(s) 0" in page.locator("#variant-status").inner_text()
    assert "Normal run" in page.locator("#normal-run").inner_text()
    _shot(page.locator("#variant").locator("xpath=../..").first, "ablate")


def _frame_and_wav(examples_dir: Path, tmp: Path) -> tuple[Path, Path]:
    if (REAL_S4 / "0.jpg").is_file() and (REAL_S4 / "audio.wav").is_file():
        return REAL_S4 / "0.jpg", REAL_S4 / "audio.wav"
    frame, wav = tmp / "frame.jpg", tmp / "audio.wav"
    for args in (
        ["-i", str(examples_dir / "s4.mp4"), "-frames:v", "1", "-vf", "scale=320:180", str(frame)],
        ["-i", str(examples_dir / "s4.mp4"), "-vn", "-ac", "1", "-ar", "16000", str(wav)],
    ):
        subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-y", *args], check=True, timeout=60)
    return frame, wav


def test_s4_from_frame_and_wav_then_attention(page, examples_dir, tmp_path):
    frame, wav = _frame_and_wav(examples_dir, tmp_path)
    page.locator("#in-image input[type=file]").set_input_files(str(frame))
    page.locator("#in-audio input[type=file]").set_input_files(str(wav))
    _choose_task(page, "S4")
    page.locator("#frame").wait_for()
    _set_tokens(page, 12)
    _run(page)
    img = page.locator("#result-image img")
    img.wait_for()
    w, h = img.evaluate("i => [i.naturalWidth, i.naturalHeight]")
    from PIL import Image

    with Image.open(frame) as f:
        assert abs(w / h - f.width / f.height) < 0.02  # drawn at the frame's aspect ratio
    _shot(page.locator("#results"), "result-s4-frame-wav")
    _attention(page, "attention-s4-frame", "s4")


def _attention(page, name: str, task: str) -> None:
    _tab(page, "Attention")
    page.locator("#attention").click()
    page.wait_for_function(
        "task => { const t = document.querySelector('#attention-note').innerText;"
        " return (t.includes(task + ' answer)') && !t.includes('queue') && !t.includes('Computing'))"
        " || document.querySelector('.toast-body') !== null; }",
        arg=task,
    )
    toast = page.locator(".toast-body")
    assert not toast.count(), f"attention failed: {toast.first.inner_text()}"
    note = page.locator("#attention-note").inner_text()
    assert "total 100%" in note
    page.locator("#att-frames img").wait_for()
    _plot(page, "#att-audio")
    _shot(page.locator("#att-frames").locator("xpath=../..").first, name)


def test_attention_on_s4_and_ms3_and_attribution(page, examples_dir):
    for task, clip in (("S4", "s4.mp4"), ("MS3", "ms3.mp4")):
        _tab(page, "Router")  # the inputs stay visible above the inner tabs
        _upload_video(page, examples_dir / clip)
        _choose_task(page, task)
        page.locator("#frame").wait_for()
        _set_tokens(page, 8)
        _run(page)
        _attention(page, f"attention-{task.lower()}", task.lower())
        _plot(page, "#att-inter")
    _tab(page, "Attribution")
    page.locator("#attribution").click()
    _plot(page, "#attr-plot")
    title = page.locator("#attr-plot .gtitle").text_content()
    assert "convergence" in title and "delta" in title  # IG's completeness gap is shown
    _shot(page.locator("#attr-plot"), "attribution")
