"""Learning curves (benchmarks/learning_curves.py): snapshot selection, the late-change column and a
run end to end on a micro recipe's snapshots."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks"))

import learning_curves as lc  # noqa: E402

from crab_core.reports import TARGETS  # noqa: E402

PHASES = [{"name": "align", "steps": 1600}, {"name": "instruct", "steps": 2400}]


def _fake_snapshot(run: Path, phase: str, step: int, complete: bool = True) -> None:
    d = run / "snapshots" / f"{phase}-{step:05d}"
    d.mkdir(parents=True)
    (d / "training.json").write_text(json.dumps({"phase": phase, "step": step, "recipe": {"phases": PHASES}}))
    if complete:
        (d / "model.safetensors").write_bytes(b"")


def test_snapshots_in_recipe_order_at_multiples_and_phase_ends(tmp_path):
    for phase, step in [
        ("instruct", 400),
        ("instruct", 800),
        ("instruct", 2400),
        ("align", 1600),
        ("align", 800),
    ]:
        _fake_snapshot(tmp_path, phase, step)
    _fake_snapshot(tmp_path, "align", 400, complete=False)  # still being written: skipped
    got = [(p, s) for p, s, _ in lc.snapshots(tmp_path, 800)]
    assert got == [("align", 800), ("align", 1600), ("instruct", 800), ("instruct", 2400)]
    assert lc.cumulative(PHASES, "instruct", 800) == 2400


def _row(phase, step, value):
    return {"phase": phase, "step": step, "metrics": {"m": value}}


def test_late_change_compares_the_end_with_the_middle_of_each_phase():
    rows = [_row("a", 400, 0.1), _row("a", 800, 0.3), _row("a", 1600, 0.5), _row("b", 100, 0.2)]
    ch = lc.late_change(rows, "m")
    assert ch["a"] == pytest.approx(0.2)  # 0.5 at 1600 minus 0.3 at 800
    assert ch["b"] is None


@pytest.mark.slow
def test_curves_of_a_micro_run(tmp_path):
    from crab_core.training.trainer import Trainer

    from .conftest_recipes import micro_recipe

    run = tmp_path / "run"
    t = Trainer(micro_recipe(steps=2), run, progress=False, cache_dir=tmp_path / "cache", snapshot_every=2)
    t.setup()
    assert t.train()
    out = tmp_path / "out"
    args = ["--run", str(run), "--every", "2", "--per-task", "1", "--data", str(tmp_path / "data")]
    assert lc.main(args + ["--out", str(out), "--threads", "1"]) == 0
    res = json.loads((out / "learning_curves.json").read_text())
    assert [r["snapshot"] for r in res["rows"]] == ["llm-00001", "instruct-00002", "seg-00002"]
    assert [r["total_step"] for r in res["rows"]] == [3, 5, 7]
    assert all(r["counts"][t.task] == 1 for r in res["rows"] for t in TARGETS)
    md = (out / "learning_curves.md").read_text()
    assert all(f"| {t.label} |" in md for t in TARGETS)
    assert (out / "learning_curves.png").stat().st_size > 10_000
    before = (run / "curve-scores" / "seg-00002.json").stat().st_mtime_ns
    assert lc.main(args + ["--out", str(out)]) == 0  # a rerun rescoring nothing
    assert (run / "curve-scores" / "seg-00002.json").stat().st_mtime_ns == before
