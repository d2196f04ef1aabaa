"""The Model tab's quality section: the crab_core.reports table from the committed results, with
baselines; a clear sentence instead of a failure when there are none or they do not apply."""

from __future__ import annotations

import json

from app import model_card
from tests._helpers import REPO


def test_tab_shows_the_committed_quality_table_with_baselines():
    text = model_card.quality_markdown("crab-tiny", trained=True)
    readme = (REPO / "README.md").read_text().split("<!-- BEGIN generated:crab-tiny-quality -->")[1]
    table = text.split("\n\n")[0].splitlines()
    assert table == [x for x in readme.split("<!-- END")[0].splitlines() if x.startswith("|")]  # README's
    assert len(table) == 12 and "**AVQA accuracy per question type**" in text
    test = json.loads((REPO / "benchmarks/results/crab_tiny_quality.json").read_text())["test"]
    ave, base = test["metrics"]["ave"]["accuracy"], test["baselines"]["ave"]["accuracy"]
    row = next(x for x in text.splitlines() if x.startswith("| AVE accuracy |"))
    assert f"{ave:.3f} ({base:.3f})" in row and ">= 0.92" in row and "range" not in row
    assert "```json" not in text


def _results(folder, weights):
    folder.mkdir()
    split = {
        "model": "crab-tiny",
        "metrics": {"ave": {"accuracy": 0.5}, "s4": {"miou": 0.8}},
        "baselines": {"ave": {"accuracy": 0.25}},
        "counts": {"ave": 20, "s4": 20},
        "seed": 5,
        "weights_sha256": weights,
    }
    (folder / "crab_tiny_quality.json").write_text(json.dumps({"test": split}))
    return folder


def test_tab_keeps_only_results_of_the_loaded_weights(tmp_path, monkeypatch):
    monkeypatch.setattr(model_card, "loaded_weights_digest", lambda name: "abc")
    mine = model_card.quality_markdown("crab-tiny", True, _results(tmp_path / "a", "abc"))
    assert "| AVE accuracy | >= 0.92 | 0.500 (0.250) | 0.500 (1 run, n=20) |" in mine
    assert "| S4 mIoU | >= 0.75 | **0.800** (-) | 0.800 (1 run, n=20) |" in mine
    other = model_card.quality_markdown("crab-tiny", True, _results(tmp_path / "b", "def"))
    assert other.startswith("_No quality results for crab-tiny") and "|" not in other
    assert model_card.quality_markdown("runs/x/model", True, tmp_path / "a").startswith(
        "_No quality results for"
    )


def test_tab_says_why_when_results_are_absent_broken_or_do_not_apply(tmp_path):
    assert "absent in this install" in model_card.quality_markdown("crab-tiny", True, tmp_path / "none")
    (tmp_path / "crab_tiny_quality.json").write_text("{broken")
    assert "could not be read: crab_tiny_quality.json: not a readable JSON" in model_card.quality_markdown(
        "crab-tiny", True, tmp_path
    )
    assert "Random weights" in model_card.quality_markdown("crab-tiny", False)
    assert "Quality: see the table above" in model_card.card_markdown({"metrics": {"ave": 0.9}})
    assert '"ave": 0.9' not in model_card.card_markdown({"metrics": {"ave": 0.9}})


def test_model_tab_has_the_quality_section():
    from crab_core.pipeline import CrabPipeline

    pipe = CrabPipeline.random_tiny()
    pipe.name, pipe.trained = "crab-tiny", True  # as the shipped model is named; weights do not matter here
    text = model_card.model_markdown(pipe)
    quality = text.split("### Quality")[1].split("### Training")[0]
    assert "| AVE accuracy | >= 0.92 |" in quality


def test_ablation_paragraph_and_figure_only_for_the_geometry_they_describe(tmp_path):
    import json

    from app.model_card import ablation_figure, ablation_markdown

    assert ablation_markdown("crab-tiny", tmp_path) == "" and ablation_figure("crab-tiny", tmp_path) is None
    share = {"ilora-h3": {"numbers": 5, "negative": 0, "positive": 3}}
    (tmp_path / "ilora_ablation.json").write_text(
        json.dumps({"share": share, "protocol": {"seeds": [1, 2, 3]}})
    )
    (tmp_path / "ilora_ablation.png").write_bytes(b"\x89PNG")
    text = ablation_markdown("crab-tiny", tmp_path)
    assert "`ilora-h3`: 0 of 5 numbers negative, 3 positive" in text and "3 seeds" in text
    assert ablation_figure("crab-tiny", tmp_path) == tmp_path / "ilora_ablation.png"
    assert ablation_markdown("crab-7b", tmp_path) == "" and ablation_figure("crab-7b", tmp_path) is None
    (tmp_path / "ilora_ablation.json").write_text("{broken")
    assert "could not be read" in ablation_markdown("crab-tiny", tmp_path)
