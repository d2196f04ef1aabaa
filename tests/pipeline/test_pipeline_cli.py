"""The one inference path end to end on a random crab-tiny: pipeline, infer and eval CLIs, bad input."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from crab_core.errors import MediaError, TaskError
from crab_core.evaluation import evaluate, read_manifest
from crab_core.pipeline import CrabPipeline
from crab_core.tasks import TASKS
from tests._helpers import REPO


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    from crab_core.synthav import generate_split

    out = tmp_path_factory.mktemp("synth")
    manifest, _ = generate_split(out, "test", len(TASKS), seed=3)
    return manifest


@pytest.fixture(scope="module")
def pipe():
    return CrabPipeline.random_tiny()


def test_every_task_runs(pipe, synth):
    rows = read_manifest(synth)
    assert {r["task"] for r in rows} == set(TASKS)
    for r in rows:
        res = pipe.run(
            r["task"],
            video=r.get("video"),
            audio=r.get("audio"),
            image=r.get("image"),
            question=r.get("question"),
            frame_index=r.get("frame_index"),
            max_new_tokens=4,
        )
        assert isinstance(res.text, str) and res.parsed is not None
        assert set(res.timings) >= {"load", "encode", "generate", "total"}


def test_features_are_cached_for_follow_up_questions(pipe, synth):
    row = next(r for r in read_manifest(synth) if r["task"] == "avqa")
    first = pipe.run(
        "avqa", video=row["video"], question="How many instruments are sounding?", max_new_tokens=2
    )
    again = pipe.run("avqa", video=row["video"], question="Is the drum making sound?", max_new_tokens=2)
    assert not first.cached or again.cached
    assert again.cached and again.timings["encode"] == 0.0


def test_evaluate_reports_metrics_and_baselines(pipe, synth):
    report = evaluate(pipe, read_manifest(synth), progress=False, max_new_tokens=8)
    assert not report.errors, report.errors
    assert set(report.metrics) == set(TASKS)
    assert "accuracy" in report.metrics["ave"] and "accuracy" in report.baselines["ave"]
    assert "miou" in report.metrics["s4"] and "miou" in report.baselines["s4"]
    assert "ave" in report.table()


@pytest.mark.parametrize("bad", ["missing", "empty", "dir", "image_as_video", "text"])
def test_bad_media_raise_clear_errors(pipe, synth, tmp_path, bad):
    row = next(r for r in read_manifest(synth) if r["task"] == "arig")
    path = {"missing": tmp_path / "nope.mp4", "dir": tmp_path, "image_as_video": row["image"]}.get(bad)
    if bad == "empty":
        path = tmp_path / "empty.mp4"
        path.write_bytes(b"")
    if bad == "text":
        path = tmp_path / "notes.mp4"
        path.write_text("not a video")
    with pytest.raises(MediaError):
        pipe.run("ave", video=str(path), max_new_tokens=2)


def test_task_errors(pipe, synth):
    row = next(r for r in read_manifest(synth) if r["task"] == "ave")
    with pytest.raises(TaskError):
        pipe.run("nope", video=row["video"])
    with pytest.raises(TaskError):
        pipe.run("avqa", video=row["video"])  # needs a question
    with pytest.raises(TaskError):
        pipe.run("avqa", video=row["video"], question="x" * 5000)


def _cli(*args):
    return subprocess.run(
        [sys.executable, "-m", "crab_core", *args], cwd=REPO, capture_output=True, text=True, timeout=300
    )


@pytest.mark.slow
def test_infer_and_eval_cli(synth, tmp_path):
    row = next(r for r in read_manifest(synth) if r["task"] == "ave")
    proc = _cli("infer", "--task", "ave", "--video", row["video"], "--max-new-tokens", "3", "--json")
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["task"] == "ave" and "parsed" in out
    proc = _cli(
        "eval",
        "--data",
        str(synth),
        "--tasks",
        "ave,arig",
        "--json",
        "--no-progress",
        "--max-new-tokens",
        "6",
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    rep = json.loads(proc.stdout.strip().splitlines()[-1])
    assert set(rep["metrics"]) == {"ave", "arig"}
    # bad input: one line, non-zero exit, no traceback
    proc = _cli("infer", "--task", "ave", "--video", str(tmp_path / "missing.mp4"))
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith("error:")
    bad = tmp_path / "bad.jsonl"
    bad.write_bytes(b"\xff\xfe not utf8")
    proc = _cli("eval", "--data", str(bad))
    assert proc.returncode == 1 and "not UTF-8" in proc.stderr and "Traceback" not in proc.stderr
