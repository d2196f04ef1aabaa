"""``benchmarks/paper_table.py`` on the miniature layouts with crab-tiny: every test split is imported,
evaluated and tabled beside the paper's numbers; a second run resumes from the per-row results."""

from __future__ import annotations

import json

import pytest

from tests.data import layouts


@pytest.mark.slow
def test_paper_table_on_the_miniature_layouts(tmp_path, real_media_dir, monkeypatch, capsys):
    from benchmarks import paper_table
    from crab_core.pipeline import CrabPipeline

    layouts.build_all(tmp_path / "data", real_media_dir)
    pipe = CrabPipeline.load("crab-tiny")
    calls: list[int] = []
    real = pipe.model.generate
    monkeypatch.setattr(pipe.model, "generate", lambda s, **kw: calls.append(len(s)) or real(s, **kw))
    monkeypatch.setattr(paper_table, "load_pipeline", lambda _args: pipe)
    argv = [
        "--model",
        "crab-tiny",
        "--data-root",
        str(tmp_path / "data"),
        "--limit",
        "1",
        "--out",
        str(tmp_path / "t"),
    ]
    assert paper_table.main(argv) == 0
    rows = json.loads((tmp_path / "t" / "paper_table.json").read_text())["rows"]
    assert [(r["bench"], r["split"]) for r in rows] == [(b, s) for b, s, *_ in paper_table.ROWS]
    assert all(r["n"] == 1 and r["failed"] == 0 and r["metric"] in r["metrics"] for r in rows), rows
    assert {r["bench"]: r["variants"] for r in rows}["s4"] == ["video"]  # frames -> 1-fps video
    assert {r["bench"]: r["variants"] for r in rows}["avss"] == ["image+audio"]
    assert rows[0]["skipped_at_import"] == {"malformed": 3, "missing": 1} and rows[0]["imported"] == 3
    table = (tmp_path / "t" / "paper_table.md").read_text()
    for paper in ("80.15 [unverified]", "78.94 [unverified]", "73.25", "58.21", "26.59"):
        assert paper in table
    assert sum(calls) == len(rows)
    capsys.readouterr()

    calls.clear()  # a second run: every row is in the per-row results already
    assert paper_table.main(argv) == 0
    again = json.loads((tmp_path / "t" / "paper_table.json").read_text())["rows"]
    assert calls == [] and [{**r, "seconds": 0} for r in again] == [{**r, "seconds": 0} for r in rows]
