"""``eval`` on imported manifests with crab-tiny, batched and resumable runs (issue #19).

crab-tiny knows only SynthAV scenes, so the numbers are meaningless here; what is tested is the path:
every imported manifest is evaluated, ``--batch-size`` and ``--results`` score exactly like one plain
run, and a run killed half-way resumes without running its finished rows again.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from crab_core import cli
from crab_core.data import import_benchmark
from crab_core.eval_runs import Replay, ResultsFile, decode_mask, encode_mask, generate_rows
from crab_core.evaluation import evaluate, read_manifest
from crab_core.metrics.segmentation import AVSSMetric, BinarySegMetric, NullSMetric
from tests._helpers import REPO
from tests.data import layouts

IMPORTS = [  # (builder, bench, split)
    (layouts.build_ave, "ave", "test"),
    (layouts.build_avvp, "avvp", "test"),
    (layouts.build_music_avqa, "music-avqa", "test"),
    (layouts.build_avsbench_semantic, "s4", "test"),
    (layouts.build_avsbench_semantic, "ms3", "test"),
    (layouts.build_avsbench_semantic, "avss", "test"),
    (layouts.build_avsbench_object, "s4", "test"),
    (layouts.build_ref_avs, "ref-avs", "test"),
]


@pytest.fixture(scope="module")
def tiny():
    from crab_core.pipeline import CrabPipeline

    return CrabPipeline.load("crab-tiny")


def test_mask_codes_score_exactly_like_the_logits():
    every = np.arange(256, dtype=np.uint8).reshape(16, 16)  # each code decodes to logits coding to it
    assert (encode_mask(decode_mask(every, 1), None)[0] == every).all()
    rng = np.random.default_rng(0)
    gt = rng.random((40, 40)) > 0.6
    logits = rng.normal(0, 4, (1, 40, 40)).astype(np.float32)
    logits[0, :4] = [[0.0], [1e-12], [-1e-12], [23.0]]  # at 0.5 and near the thresholds' ends
    code, ch = encode_mask(logits, None)
    back = decode_mask(code, ch)
    for metric in (BinarySegMetric(from_logits=True), NullSMetric(from_logits=True)):
        other = type(metric)(from_logits=True)
        metric.update(logits[0], gt)
        other.update(back[0], gt)
        assert metric.compute() == other.compute()
    import torch
    import torch.nn.functional as F

    classes = rng.normal(0, 1, (71, 20, 20)).astype(np.float32)
    code, ch = encode_mask(classes, 40)  # resized to the GT side first, as the scoring path does
    up = F.interpolate(torch.from_numpy(classes)[None], size=(40, 40), mode="bilinear", align_corners=False)
    gt_classes = rng.integers(0, 71, (40, 40))
    a, b = AVSSMetric(), AVSSMetric()
    a.update(up[0].numpy(), gt_classes)
    b.update(decode_mask(code, ch), gt_classes)
    assert ch == 71 and a.compute() == b.compute()


@pytest.mark.slow
def test_eval_runs_on_every_imported_manifest(tmp_path, real_media_dir, tiny):
    """The first row of each imported split is scored (and the last of AVSS, a v2 clip, and of Ref-AVS,
    a null expression)."""
    for i, (build, bench, split) in enumerate(IMPORTS):
        root = tmp_path / f"{i}-{bench}"
        build(root, real_media_dir)
        report = import_benchmark(bench, root, split)
        rows = read_manifest(report.out)
        budget = (
            None if rows[0]["task"] in ("s4", "ms3", "avss", "ref-avs") else 40
        )  # keep text answers short
        picked = [rows[0], rows[-1]] if bench in ("avss", "ref-avs") else rows[:1]  # v2 clip / null row
        res = evaluate(tiny, picked, progress=False, max_new_tokens=budget)
        assert res.errors == [] and res.scored == len(picked), (bench, res.errors)
        task = rows[0]["task"]
        assert res.metrics[task] and res.baselines[task], bench
        if bench == "ref-avs":
            assert "s" in res.metrics[task] and "miou" in res.metrics[task]  # a seen row and a null row


@pytest.mark.slow
def test_cli_eval_outside_the_root_batched(tmp_path, real_media_dir, capsys):
    layouts.build_ave(tmp_path / "AVE_Dataset", real_media_dir)
    manifest = tmp_path / "manifests" / "ave.jsonl"
    assert (
        cli.main(["data", "import", "ave", "--root", str(tmp_path / "AVE_Dataset"), "--out", str(manifest)])
        == 0
    )
    capsys.readouterr()
    base = ["eval", "--data", str(manifest), "--json", "--no-progress"]
    assert cli.main(base) == 1  # paths are relative to the root, not to the manifest's folder
    assert "no row could be scored" in capsys.readouterr().err
    assert cli.main([*base, "--media-root", str(tmp_path / "AVE_Dataset"), "--batch-size", "2"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["scored"] == 3 and out["failed"] == 0


@pytest.mark.slow
def test_batched_and_resumed_runs_score_like_one_run(tmp_path, real_media_dir, tiny, monkeypatch):
    layouts.build_avsbench_semantic(tmp_path / "avs", real_media_dir)
    layouts.build_ref_avs(tmp_path / "ref", real_media_dir)
    rows = []
    for bench, root, pick in (("avss", "avs", (0, -1)), ("s4", "avs", (0, 1)), ("ref-avs", "ref", (0, -1))):
        got = read_manifest(import_benchmark(bench, tmp_path / root, "test").out)
        rows += [got[i] for i in pick]
    for i, r in enumerate(rows, 1):
        r["_line"] = i
    plain = evaluate(tiny, rows, progress=False)

    calls: list[int] = []
    real = tiny.model.generate
    monkeypatch.setattr(
        tiny.model, "generate", lambda samples, **kw: calls.append(len(samples)) or real(samples, **kw)
    )
    path = tmp_path / "run.jsonl"
    stored = generate_rows(tiny, rows, 2, results=ResultsFile(path, {"run": 1}), progress=False)
    assert calls == [2, 2, 2]  # 2 AVSS, 2 S4, 2 Ref-AVS rows: one call per batch of one task
    batched = evaluate(Replay(tiny, rows, stored), rows, progress=False)
    assert batched.metrics == plain.metrics and batched.baselines == plain.baselines
    assert batched.counts == plain.counts and batched.scored == 6

    # a run killed after two rows: the file ends with a cut line; the resumed run generates the other 4
    lines = path.read_text().splitlines()
    path.write_text("\n".join(lines[:3]) + "\n" + lines[3][:25])
    calls.clear()
    resumed = ResultsFile(path, {"run": 1})
    assert len(resumed.done) == 2
    stored = generate_rows(tiny, rows, 1, results=resumed, progress=False)
    assert calls == [1, 1, 1, 1]
    again = evaluate(Replay(tiny, rows, stored), rows, progress=False)
    assert again.metrics == plain.metrics and again.baselines == plain.baselines
    with pytest.raises(Exception, match="holds the results of another run"):
        ResultsFile(path, {"run": 2})


@pytest.mark.slow
def test_killed_eval_resumes_without_rerunning_finished_rows(tmp_path, real_media_dir, tiny, monkeypatch):
    """A real ``eval --results`` process killed (SIGKILL) mid-run; the rerun skips the rows it finished."""
    layouts.build_ave(tmp_path, real_media_dir)
    lines = [f"Dog&-67UNKFmRLk&good&{i % 9}&10" for i in range(10)]
    (tmp_path / "testSet.txt").write_text("\n".join(lines) + "\n")
    manifest = import_benchmark("ave", tmp_path, "test").out
    results = tmp_path / "results.jsonl"
    args = ["eval", "--data", manifest, "--results", str(results), "--max-new-tokens", "40", "--no-progress"]
    cmd = [sys.executable, "-m", "crab_core", *args]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 600  # a loaded machine loads the model slowly
    while time.monotonic() < deadline and proc.poll() is None:
        if results.exists() and len(results.read_text().splitlines()) >= 3:  # header + 2 finished rows
            break
        time.sleep(0.1)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    finished = len([x for x in results.read_text().splitlines()[1:] if x.endswith("}")])
    assert 2 <= finished < 10, "the run was not caught half-way"

    calls: list[int] = []
    real = tiny.model.generate
    monkeypatch.setattr(
        tiny.model, "generate", lambda samples, **kw: calls.append(len(samples)) or real(samples, **kw)
    )
    monkeypatch.setattr("crab_core.cli_eval.load_pipeline", lambda _args: tiny)
    assert cli.main([*args, "--json"]) == 0
    assert sum(calls) == 10 - finished
    assert len(results.read_text().splitlines()) == 11


class _FakePipe:
    """prepare / generate / result_from_generation of a pipeline that answers every AVE row 'drum 2-6'
    and cannot read the media of a row whose video is 'gone.mp4'."""

    name, trained = "fake", True

    def __init__(self):
        from types import SimpleNamespace

        self.model = SimpleNamespace(generate=self._generate, config=SimpleNamespace(name="fake"))
        self.batches: list[int] = []

    def prepare(self, task, video, *_):
        from types import SimpleNamespace

        from crab_core.errors import MediaError

        if video.endswith("gone.mp4"):
            raise MediaError("video file not found: gone.mp4")
        return SimpleNamespace(sample=video)

    def _generate(self, samples, **_):
        self.batches.append(len(samples))
        return samples

    def result_from_generation(self, task, prep, gen, timings, index=0):
        from crab_core.pipeline import TaskResult
        from crab_core.tasks.parsers import parse

        text = "<event> drum </event> <range> 2,6 </range>"
        return TaskResult(task=task, text=text, parsed=parse(task, text))


def test_failed_rows_are_kept_and_reported_like_a_plain_run(tmp_path):
    rows = []
    for i, video in enumerate(["a.mp4", "gone.mp4", "b.mp4", "c.mp4"], 1):
        rows.append({"task": "ave", "video": str(tmp_path / video), "gt": {"event": "drum", "range": [2, 6]}})
        rows[-1]["_line"] = i
    pipe = _FakePipe()
    results = ResultsFile(tmp_path / "r.jsonl", {"run": 1})
    stored = generate_rows(pipe, rows, 2, results=results, progress=False)
    assert pipe.batches == [1, 2]  # the failed row is not sent to the model
    report = evaluate(Replay(pipe, rows, stored), rows, progress=False)
    assert report.scored == 3 and report.metrics["ave"]["accuracy"] == 1.0
    assert [(e["row"], e["error"]) for e in report.errors] == [(2, "video file not found: gone.mp4")]
    pipe.batches.clear()  # resumed: the failed row is in the file too, nothing runs again
    stored = generate_rows(
        pipe, rows, 2, results=ResultsFile(tmp_path / "r.jsonl", {"run": 1}), progress=False
    )
    assert (
        pipe.batches == []
        and evaluate(Replay(pipe, rows, stored), rows, progress=False).errors == report.errors
    )
