"""Docs generated from committed results: the repo's docs are up to date, the table builder's values
and range column on synthetic results, bad results files and markers give one-line errors."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

from crab_core.doc_tables import DocContext
from crab_core.errors import ReportError
from crab_core.reports import (
    MAX_RESULTS_BYTES,
    TARGETS,
    avqa_type_table,
    find_results,
    load_results,
    quality_table,
    weights_digest,
)
from tests._helpers import REPO


def _module(rel: str, name: str):
    spec = importlib.util.spec_from_file_location(name, REPO / rel)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


render_docs = _module("scripts/render_docs.py", "render_docs")


def test_committed_docs_are_up_to_date():
    """CI fails here when README / MODEL_CARD drift from benchmarks/results (fix: python
    scripts/render_docs.py)."""
    proc = subprocess.run(
        [sys.executable, "scripts/render_docs.py", "--check"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-1000:]
    for doc in ("README.md", "assets/crab-tiny/MODEL_CARD.md"):
        text = (REPO / doc).read_text()
        assert "<!-- BEGIN generated:crab-tiny-quality -->" in text, doc
        body = text.split("<!-- BEGIN generated:crab-tiny-quality -->")[1].split("<!-- END")[0]
        assert "| AVE accuracy | >= 0.92 |" in body and "range over seeds: test" in body, doc


def _split(
    seed, ave, ave_base, *, s=0.20, ref=None, n=50, null=10, weights="w1", tasks="all", avqa_types=True
):
    metrics = {"ave": {"accuracy": ave}}
    baselines = {"ave": {"accuracy": ave_base}}
    counts = {"ave": n}
    if tasks == "all":
        metrics |= {
            "avvp": {"segment_audio": 0.5, "segment_visual": 0.9},
            "ref-avs": {"miou": ref or 0.4, "s": s},
        }
        baselines |= {"avvp": {"segment_audio": 0.1, "segment_visual": 0.2}, "ref-avs": {"miou": 0.3}}
        counts |= {"avvp": n, "ref-avs": n}
        if avqa_types:
            metrics["avqa"] = {"accuracy": 0.6, "accuracy/type/Audio/Counting": 0.75}
            baselines["avqa"] = {"accuracy": 0.5, "accuracy/type/Audio/Counting": 0.5}
            counts["avqa"] = n
    return {
        "model": "crab-tiny",
        "trained": True,
        "metrics": metrics,
        "baselines": baselines,
        "counts": counts,
        "errors": [],
        "seed": seed,
        "weights_sha256": weights,
        "ref_avs_null_count": null if tasks == "all" else 0,
        "avqa_type_counts": {"Audio/Counting": 4} if tasks == "all" else {},
        "command": f"python benchmarks/crab_tiny_quality.py --seed-{seed}",
    }


@pytest.fixture
def results_dir(tmp_path: Path) -> Path:
    d = tmp_path / "results"
    d.mkdir()
    files = {
        "crab_tiny_quality": {
            "test": _split(101, 0.93, 0.2, s=0.12),
            "test-compositional": _split(102, 0.80, 0.45),
        },
        "crab_tiny_quality_seeds201": {
            "test": _split(201, 0.90, 0.5),
            "test-compositional": _split(202, 0.85, 0.5),
        },
        "crab_tiny_quality_ave200": {"test": _split(301, 0.87, 0.4, n=200, tasks="ave")},
        "crab_tiny_quality_old": {"test": _split(9, 0.10, 0.4, weights="other")},
    }
    for name, body in files.items():
        (d / f"{name}.json").write_text(json.dumps(body))
    return d


def _row(table: str, label: str) -> list[str]:
    line = next(x for x in table.splitlines() if x.startswith(f"| {label} |"))
    return [c.strip() for c in line.strip("|").split("|")]


def test_quality_table_values_baselines_n_and_range(results_dir):
    results = load_results(find_results(results_dir))
    assert [r.source for r in results][:2] == ["crab_tiny_quality", "crab_tiny_quality"]  # primary first
    table = quality_table(results)
    header = _row(table, "metric")
    assert header[2:] == [
        "test (seed 101, n=50)",
        "test-compositional (seed 102, n=50)",
        "test (seed 201, n=50)",
        "test-compositional (seed 202, n=50)",
        "range over seeds: test",
        "range over seeds: test-compositional",
    ]  # the AVE-only file and the other weights get no column
    ave = _row(table, "AVE accuracy")
    assert ave[1] == ">= 0.92"
    assert ave[2:6] == ["**0.930** (0.200)", "0.800 (0.450)", "0.900 (0.500)", "0.850 (0.500)"]
    # test range: seeds 101, 201 and the 200-sample AVE run; never the other weights' 0.100
    assert ave[6] == "0.870–0.930 (3 runs, n=300)"
    assert ave[7] == "0.800–0.850 (2 runs, n=100)"
    null_s = _row(table, "Ref-AVS null S (lower is better)")
    assert null_s[1] == "<= 0.15"
    assert null_s[2] == "**0.120** (-), n=10"  # lower is better; no baseline in the JSON; null rows only
    assert _row(table, "Ref-AVS mIoU")[2] == "0.400 (0.300), n=40"
    assert _row(table, "S4 mIoU")[2:] == ["-"] * 6
    assert "Left out (another model or other weights" in table and "crab_tiny_quality_old [test]" in table
    assert "on some: AVE accuracy (1 of 5)" in table and "Ref-AVS null S (lower is better) (1 of 4)" in table
    assert "AVVP segment F1 visual" in table.split("on every result: ")[1].split(";")[0]
    assert (
        "`benchmarks/results/crab_tiny_quality_ave200.json`: "
        "`python benchmarks/crab_tiny_quality.py --seed-301`" in table
    )


def test_avqa_type_table_has_n_and_majority(results_dir):
    results = load_results(find_results(results_dir))
    table = avqa_type_table(results)
    row = _row(table, "Audio/Counting")
    assert row[1] == "0.750 (0.500), n=4"
    assert row[-2] == "0.750 (2 runs, n=8)"
    assert avqa_type_table([r for r in results if "avqa" not in r.metrics]) == ""


def test_results_without_recorded_seed_take_it_from_the_markdown(tmp_path):
    body = _split(0, 0.5, 0.1)
    del body["seed"], body["command"]
    (tmp_path / "crab_tiny_quality.json").write_text(json.dumps({"test": body}))
    (tmp_path / "crab_tiny_quality.md").write_text(
        "`python benchmarks/crab_tiny_quality.py --model crab-tiny --per-task 50` (same path; split seeds "
        "{'test': 777, 'test-compositional': 778})."
    )
    (r,) = load_results([tmp_path / "crab_tiny_quality.json"])
    assert (
        r.seed == 777
        and r.command == "python benchmarks/crab_tiny_quality.py --model crab-tiny --per-task 50"
    )


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "not a readable JSON results file"),
        ("[1, 2]", "not a quality results file"),
        ('{"test": {"counts": {}}}', "no 'metrics'"),
        ('{"test": {"metrics": {"ave": {"accuracy": NaN}}}}', "is not a finite number"),
        ('{"test": {"metrics": {"ave": {"accuracy": "high"}}}}', "is not a finite number"),
        ('{"test": {"metrics": {}, "seed": true}}', "'seed' is bool"),
        ('{"test": {"metrics": {}, "counts": {"ave": -1}}}', "'counts' is not"),
    ],
)
def test_bad_results_files_are_one_line_errors(tmp_path, content, message):
    path = tmp_path / "crab_tiny_quality.json"
    path.write_text(content)
    with pytest.raises(ReportError, match=message) as info:
        load_results([path])
    assert "\n" not in str(info.value)


def test_huge_and_missing_results_files_are_refused_without_reading(tmp_path):
    huge = tmp_path / "crab_tiny_quality.json"
    with open(huge, "wb") as f:
        f.truncate(MAX_RESULTS_BYTES + 1)  # sparse: costs no disk, and must not be read
    with pytest.raises(ReportError, match="more than a results file"):
        load_results([huge])
    with pytest.raises(ReportError, match="not found"):
        load_results([tmp_path / "nope.json"])
    with pytest.raises(ReportError, match="not found"):
        find_results(tmp_path / "absent")


DOC = (
    "# Title\nprose 0.5 stays\n<!-- BEGIN generated:crab-tiny-quality -->\nold table\n"
    "<!-- END generated:crab-tiny-quality -->\ntail\n"
)


def test_render_replaces_only_the_region(results_dir):
    results = DocContext(results_dir.parent, results_dir)
    out = render_docs.render_text(DOC, results)
    assert out.startswith("# Title\nprose 0.5 stays\n<!-- BEGIN generated:crab-tiny-quality -->\n| metric |")
    assert out.endswith("\n<!-- END generated:crab-tiny-quality -->\ntail\n") and "old table" not in out
    assert render_docs.render_text(out, results) == out  # idempotent


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        ("<!-- BEGIN generated:nope -->\n<!-- END generated:nope -->", "unknown generated region"),
        ("<!-- BEGIN generated:crab-tiny-quality -->\nx", "has no END marker"),
        ("<!-- END generated:crab-tiny-quality -->", "without its BEGIN"),
    ],
)
def test_broken_markers_are_errors(results_dir, doc, message):
    with pytest.raises(ReportError, match=message):
        render_docs.render_text(doc, DocContext(results_dir.parent, results_dir), "x.md")


def test_check_reports_drift_with_a_diff_and_writes_nothing(tmp_path, results_dir, capsys):
    root = tmp_path / "repo"
    root.mkdir()
    (root / "README.md").write_text(DOC)
    args = ["--root", str(root), "--results", str(results_dir)]
    assert render_docs.main([*args, "--check"]) == 1
    out = capsys.readouterr().out
    assert "-old table" in out and "+| AVE accuracy | >= 0.92 | **0.930** (0.200)" in out
    assert (root / "README.md").read_text() == DOC
    assert render_docs.main(args) == 0 and "old table" not in (root / "README.md").read_text()
    assert render_docs.main([*args, "--check"]) == 0
    (results_dir / "crab_tiny_quality.json").write_text("{broken")
    assert render_docs.main([*args, "--check"]) == 2
    assert "not a readable JSON results file" in capsys.readouterr().err


def test_benchmark_uses_the_report_targets_and_records_its_run(tmp_path):
    bench = _module("benchmarks/crab_tiny_quality.py", "crab_tiny_quality_bench")
    assert bench.HEADLINE == [(t.task, t.key, t.label, t.bound, t.higher_is_better) for t in TARGETS]
    assert [t.bound for t in TARGETS] == [0.92, 0.80, 0.75, 0.85, 0.60, 0.75, 0.65, 0.45, 0.60, 0.15]
    args = bench.argparse.Namespace(model="crab-tiny", per_task=200, tasks="ave", name="q_ave")
    cmd = bench.command_line(args, {"test": 301}, ("ave",))
    assert (
        cmd == "python benchmarks/crab_tiny_quality.py --model crab-tiny --per-task 200 --seeds test=301 "
        "--tasks ave --name q_ave"
    )
    w = tmp_path / "model.safetensors"
    w.write_bytes(b"weights" * 1000)
    assert bench.model_weights_digest(str(tmp_path)) == hashlib.sha256(w.read_bytes()).hexdigest()[:16]
    assert weights_digest(w) == bench.model_weights_digest(str(tmp_path))
    assert bench.model_weights_digest(str(tmp_path / "none")) is None


def test_candidates_table_puts_versions_side_by_side_on_the_same_items(tmp_path):
    from crab_core.doc_crab_tiny import candidates_table

    results = tmp_path / "results"
    for sub, ave in (("", 0.93), ("v9", 0.80)):
        (results / sub).mkdir(parents=True, exist_ok=True)
        body = {"test": _split(501, ave, 0.5), "test-compositional": _split(502, ave - 0.1, 0.4)}
        (results / sub / "crab_tiny_quality.json").write_text(json.dumps(body))
    ctx = DocContext(tmp_path, results_dir=results)
    out = candidates_table([("shipped", ""), ("v9", "v9")])(ctx)
    assert "| AVE accuracy | >= 0.92 | 0.500 / 0.400 | **0.930** / 0.830 | 0.800 / 0.700 |" in out
    assert "| ARIG cIoU | >= 0.60 | - / - | - / - | - / - |" in out  # no result: a dash, not a zero
    assert "test: seed 501" in out and "results/v9/crab_tiny_quality.json" in out
    # the summary under the table is read from the same cells
    assert "Met by some version on both splits: AVVP segment F1 visual." in out
    assert "On one split only: AVE accuracy (shipped test)." in out
    assert "By no version: AVQA accuracy, AVVP segment F1 audio," in out and "Ref-AVS null S" in out
    assert "Not above the majority baseline: none." in out
    (results / "v10").mkdir()
    low = {"test": _split(501, 0.45, 0.5), "test-compositional": _split(502, 0.95, 0.4)}
    (results / "v10" / "crab_tiny_quality.json").write_text(json.dumps(low))
    out = candidates_table([("shipped", ""), ("v10", "v10")])(ctx)
    assert "Not above the majority baseline: AVE accuracy on test (v10)." in out
    assert "On one split only: AVE accuracy (shipped test, v10 test-compositional)." in out
    # a version scored on other items cannot stand in the same table
    other = {"test": _split(601, 0.9, 0.5), "test-compositional": _split(502, 0.8, 0.4)}
    (results / "v9" / "crab_tiny_quality.json").write_text(json.dumps(other))
    with pytest.raises(ReportError, match="differ from the first column"):
        candidates_table([("shipped", ""), ("v9", "v9")])(DocContext(tmp_path, results_dir=results))
