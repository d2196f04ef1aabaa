"""``eval`` on malformed manifests: per-row errors with line numbers, never a traceback (issue #14).

The library-level tests use a stand-in pipeline that answers every row perfectly, so the metrics of
the valid rows are exact (accuracy 1.0) and any malformed row leaking into them would show.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from crab_core import cli
from crab_core.errors import MediaError, TaskError
from crab_core.evaluation import MAX_MASK_SIDE, _png_size, evaluate, read_manifest
from crab_core.pipeline import TaskResult
from crab_core.tasks.parsers import AVEPrediction, AVQAPrediction

AVE = {"task": "ave", "video": "media/a.mp4", "gt": {"event": "drum", "range": [2, 6]}}
AVQA = {"task": "avqa", "video": "media/q.mp4", "question": "Is the drum sounding?", "gt": {"answer": "yes"}}


class PerfectPipeline:
    """Answers AVE ``drum [2, 6)`` and AVQA ``yes``; raises ``fail`` instead when given."""

    name, trained = "stand-in", True

    def __init__(self, fail: Exception | None = None):
        self.fail, self.calls = fail, 0

    def run(self, task, **_):
        self.calls += 1
        if self.fail is not None:
            raise self.fail
        parsed = AVEPrediction("drum", (2, 6)) if task == "ave" else AVQAPrediction("yes")
        return TaskResult(task=task, text="answer", parsed=parsed)


def _manifest(folder: Path, lines: list) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    text = "\n".join(x if isinstance(x, str) else json.dumps(x) for x in lines) + "\n"
    path = folder / "manifest.jsonl"
    path.write_text(text)
    return path


# (line content, expected reason) -- line numbers are the list index + 1
MALFORMED = [
    ({**AVE, "gt": ["drum", 2, 6]}, "'gt' must be an object, got list"),
    ({**AVE, "gt": "drum"}, "'gt' must be an object, got str"),
    ({**AVE, "gt": {"event": "drum"}}, "gt needs 'segments', or 'event' with 'range'"),
    ({k: v for k, v in AVE.items() if k != "gt"}, "missing 'gt'"),
    ({**AVE, "gt": {"event": "drum", "range": [6, 2]}}, "gt.range must be [start, end) whole seconds"),
    ({**AVE, "gt": {"event": "drum", "range": [0, 11]}}, "0 <= start < end <= 10, got [0, 11]"),
    ({**AVE, "gt": {"event": "drum", "range": "0-3"}}, "gt.range must be"),
    ({**AVE, "gt": {"segments": ["drum"] * 3}}, "gt.segments must be a list of 10 labels"),
    ({**AVE, "video": 5}, "'video' must be a file path (a non-empty string), got int 5"),
    ({**AVQA, "gt": {}}, "missing gt.answer"),
    ({**AVQA, "gt": {"answer": ["yes"]}}, "gt.answer must be a string, got list"),
    ({"task": "arig", "image": "f.png", "gt": {"box": [10, 10, 5, 5]}}, "gt.box must be [x1, y1, x2, y2]"),
    ({"task": "avvp", "video": "v.mp4", "gt": {"audio": "dog"}}, "gt.audio must be a list"),
    (
        {"task": "avvp", "video": "v.mp4", "gt": {"audio": [{"event": "dog", "ranges": [[3, 99]]}]}},
        "gt.audio[0].ranges[0] must be",
    ),
    ({"task": "s4", "video": "v.mp4", "gt": {"object": "dog"}}, "missing gt.mask"),
    ('{"task": "ave", "video": ', "invalid JSON"),
    ("[1, 2, 3]", "a row must be a JSON object, got list"),
    ({**AVE, "task": "dance"}, "unknown task 'dance'"),
    ({"video": "a.mp4"}, "missing 'task'"),
    ({**AVE, "frame_index": "3"}, "'frame_index' must be a non-negative integer"),
    ({**AVE, "video": "../outside.mp4"}, "resolves outside the manifest's folder (pass --allow-outside"),
    ({**AVE, "video": "/etc/passwd"}, "'video' '/etc/passwd' resolves outside the manifest's folder"),
    ({**AVE, "audio": "media/../../x.wav"}, "'audio' 'media/../../x.wav' resolves outside"),
    (
        {"task": "s4", "video": "v.mp4", "gt": {"mask": "../../m.png"}},
        "'gt.mask' '../../m.png' resolves outside",
    ),
]


def test_malformed_rows_are_reported_with_line_and_reason(tmp_path):
    lines = [AVE] + [content for content, _ in MALFORMED] + [AVQA]
    path = _manifest(tmp_path / "data", lines)
    errors: list[dict] = []
    rows = read_manifest(path, errors=errors)
    assert [r["_line"] for r in rows] == [1, len(lines)]
    assert [e["row"] for e in errors] == list(range(2, len(MALFORMED) + 2))
    for err, (_, reason) in zip(errors, MALFORMED):
        assert reason in err["error"], (err, reason)
    report = evaluate(PerfectPipeline(), rows, progress=False, errors=errors)
    assert report.counts == {"ave": 1, "avqa": 1} and report.scored == 2
    assert report.metrics["ave"]["accuracy"] == 1.0 and report.metrics["avqa"]["accuracy"] == 1.0
    assert len(report.errors) == len(MALFORMED)
    table = report.table(max_errors=100)
    assert f"{len(MALFORMED)} row(s) failed" in table
    assert "row 2 (ave): 'gt' must be an object, got list" in table
    assert "row 17: invalid JSON" in table


def test_without_an_error_list_the_first_bad_row_raises(tmp_path):
    path = _manifest(tmp_path, [AVE, {**AVE, "gt": "drum"}])
    with pytest.raises(TaskError, match=r"manifest\.jsonl:2: 'gt' must be an object, got str"):
        read_manifest(path)


def test_allow_outside_accepts_escaping_paths(tmp_path):
    path = _manifest(tmp_path / "data", [{**AVE, "video": "../clips/a.mp4"}, {**AVE, "video": "/abs/b.mp4"}])
    rows = read_manifest(path, allow_outside=True)
    assert [r["video"] for r in rows] == [str(tmp_path / "clips" / "a.mp4"), "/abs/b.mp4"]


def test_symlink_out_of_the_folder_is_refused(tmp_path):
    (tmp_path / "secret").mkdir()
    data = tmp_path / "data"
    data.mkdir()
    os.symlink(tmp_path / "secret", data / "media")
    errors: list[dict] = []
    assert read_manifest(_manifest(data, [AVE]), errors=errors) == []
    assert "resolves outside" in errors[0]["error"]


def test_task_with_no_scored_row_has_no_metric(tmp_path):
    rows = read_manifest(_manifest(tmp_path, [AVE, AVE]))
    report = evaluate(PerfectPipeline(fail=MediaError("a.mp4: no video stream")), rows, progress=False)
    assert report.scored == 0 and report.metrics == {} and report.counts == {}
    assert [e["row"] for e in report.errors] == [1, 2] and "no video stream" in report.errors[0]["error"]
    assert "accuracy" not in report.table()


def test_rows_not_from_a_manifest_with_odd_gt_are_row_errors():
    rows = [
        {"task": "ave", "video": "a.mp4", "gt": {"segments": 5}},
        {"task": "ave", "video": "a.mp4", "gt": AVE["gt"]},
    ]
    report = evaluate(PerfectPipeline(), rows, progress=False)
    assert report.counts == {"ave": 1} and report.metrics["ave"]["accuracy"] == 1.0
    assert report.errors[0]["row"] is None and "cannot score the gt (TypeError" in report.errors[0]["error"]


def test_corrupt_or_huge_gt_mask(tmp_path):
    bad = tmp_path / "m.png"
    bad.write_bytes(b"not a png")
    with pytest.raises(MediaError, match="could not read mask m.png"):
        _png_size(str(bad))
    wide = tmp_path / "wide.png"
    Image.fromarray(np.zeros((2, 5000), np.uint8)).save(wide)
    assert _png_size(str(wide)) == MAX_MASK_SIDE == 1024


def _eval_cli(capsys, *args):
    try:
        rc = cli.main(["eval", "--no-progress", *args])
    except SystemExit as exc:  # argparse
        rc = exc.code
    out = capsys.readouterr()
    return rc, out.out, out.err


def test_cli_all_rows_failed_is_an_error(tmp_path, capsys):
    path = _manifest(tmp_path, [content for content, _ in MALFORMED[:5]])
    rc, out, err = _eval_cli(capsys, "--data", str(path))
    assert rc == 1 and "Traceback" not in err
    assert err.strip().splitlines()[-1] == (
        f"error: {path}: no row could be scored (5 failed; first: row 1 (ave): "
        "'gt' must be an object, got list [\"drum\", 2, 6])"
    )
    assert "5 row(s) failed" in out and "accuracy" not in out
    rc, out, err = _eval_cli(capsys, "--data", str(path), "--json")
    assert rc == 1 and json.loads(out)["scored"] == 0 and json.loads(out)["failed"] == 5


def test_cli_argument_and_empty_manifest_errors(tmp_path, capsys):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n\n")
    rc, _, err = _eval_cli(capsys, "--data", str(empty))
    assert rc == 1 and "the manifest has no rows" in err
    rc, _, err = _eval_cli(capsys, "--data", str(empty), "--tasks", "ave,dance")
    assert rc == 2 and "--tasks: unknown task(s) ['dance']" in err
    rc, _, err = _eval_cli(capsys, "--data", str(empty), "--limit", "0")
    assert rc == 2 and "at least 1" in err
    rc, out, _ = _eval_cli(capsys, "--help")
    flat = " ".join(out.split())
    assert (
        rc == 0
        and "--allow-outside accept media / mask paths that resolve outside the manifest's folder" in flat
    )


@pytest.mark.slow
def test_cli_rows_whose_media_all_fail_exit_nonzero(tmp_path, capsys):
    """Valid rows, but every clip is missing: the model loads, every row fails, exit 1."""
    path = _manifest(tmp_path, [AVE, AVQA])
    rc, out, err = _eval_cli(capsys, "--data", str(path))
    assert rc == 1 and "no row could be scored (2 failed; first: row 1 (ave):" in err
    assert "row 2 (avqa):" in out
