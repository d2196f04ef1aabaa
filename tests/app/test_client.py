"""Every API endpoint through gradio_client against an in-process app (random-weight crab-tiny)."""

from __future__ import annotations

import pytest
from gradio_client import Client, handle_file

TOKENS = 4


@pytest.fixture(scope="module")
def client(app_url):
    return Client(app_url, verbose=False)


def _run(client, video, task, question="", frame=0, gt=None, tokens=TOKENS):
    return client.predict(
        handle_file(str(video)),
        None,
        None,
        task,
        question,
        frame,
        handle_file(str(gt)) if gt else None,
        tokens,
        "all",
        "all",
        "weights",
        "unit",
        "all",
        api_name="/run",
    )


def test_all_endpoints(client, examples_dir):
    q, frame, tokens, help_text, gt = client.predict("ref-avs", api_name="/task_changed")
    assert (
        frame["visible"] is True
        and q["visible"] is True
        and "Referring" in help_text
        and gt["visible"] is True
    )
    assert client.predict("ave", api_name="/task_changed")[4]["visible"] is False  # no GT mask upload for AVE
    out = _run(client, examples_dir / "ave.mp4", "ave")
    status, answer, summary, timeline, image, legend, heat, summ, contrib = out
    assert "Random weights" in status and isinstance(answer, list) and timeline["type"] == "plotly"
    assert "Expected answer" in summary and "Against the ground truth" in summary  # bundled example's GT
    assert heat["type"] == "plotly" and "Router weight" in heat["plot"]
    again = _run(client, examples_dir / "ave.mp4", "ave")  # re-uploaded: same content -> cached features
    assert "from cache" in again[0]
    views = client.predict("1", "q_proj", "norms", "token", "audio", api_name="/update_views")
    assert len(views) == 3 and "layer 1" in views[0]["plot"]
    variant = client.predict("ablate", ["head 0"], ["all"], False, "all", "all", api_name="/intervene")
    assert "without head(s) 0" in variant[0] and variant[6]["type"] == "plotly" and "Normal run" in variant[7]
    grid = client.predict(api_name="/compare")
    assert grid.count('class="crab-card"') == 1 + 2 * 3 and 'data-variant="only h2"' in grid and "NLL" in grid
    strip, audio, inter, note = client.predict("only 1", api_name="/attention")
    assert (
        strip
        and audio["type"] == "plotly"
        and "total 100%" in note
        and "forced to head(s) 1" in note
        and "ave answer" in note
    )
    bars = client.predict(2, "without 0", api_name="/attribution")
    assert (
        "audio seconds" in bars["plot"]
        and "convergence" in bars["plot"]
        and "delta" in bars["plot"]  # the title wraps between the two words
        and "without head(s) 0" in bars["plot"]
    )
    assert "I-LoRA" in client.predict(api_name="/model_info")
    rows = client.predict(api_name="/list_examples")
    assert isinstance(rows, list)


def test_seg_run_gives_mask_and_score(client, examples_dir):
    out = _run(client, examples_dir / "s4.mp4", "s4", frame=3, gt=examples_dir / "s4_mask.png")
    assert out[4] is not None  # the overlay image
    assert "iou" in out[2]


def test_bad_media_is_a_clear_message(client, tmp_path):
    from gradio_client.exceptions import AppError

    bad = tmp_path / "clip.mp4"
    bad.write_text("this is not a video")
    with pytest.raises(AppError) as err:
        _run(client, bad, "ave")
    msg = str(err.value)
    assert "Traceback" not in msg and ("clip.mp4" in msg or "video" in msg.lower())
    with pytest.raises(AppError, match="needs a question"):
        _run(client, tmp_path / "clip.mp4", "avqa")
