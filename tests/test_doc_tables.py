"""The doc builders quote results files faithfully: verbatim tables with their command, ranges over
every row, verify-reference worst errors, intervals of the head profile, and one-line errors."""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path

import pytest
import torch

from crab_core.checkpoint.verify import Check, write_results
from crab_core.doc_crab_tiny import crab_tiny_facts, crab_tiny_recipe, seg_selection_table
from crab_core.doc_interpret import (
    ablation_table,
    agreement_table,
    attribution_table,
    hoeffding,
    kind_table,
    routing_table,
)
from crab_core.doc_tables import (
    DocContext,
    bootstrap_mean,
    ilora_summary,
    include_section,
    include_tables,
    verify_summary,
    verify_table,
    wilson,
)
from crab_core.errors import ReportError
from tests._helpers import REPO

spec = importlib.util.spec_from_file_location("render_docs_mod", REPO / "scripts" / "render_docs.py")
render_docs = importlib.util.module_from_spec(spec)
spec.loader.exec_module(render_docs)

RESULT_MD = """# Some benchmark

`python benchmarks/some.py --steps 3` · 2026-11-26 15:53 · x86_64

## First

| a | b |
|---|---|
| x | 0.1 |

## Second part

| c | d |
|---|---|
| y | 0.25 |
| z | 0.75 |

Tail line.
"""


@pytest.fixture
def ctx(tmp_path: Path) -> DocContext:
    results = tmp_path / "benchmarks" / "results"
    results.mkdir(parents=True)
    (results / "some.md").write_text(RESULT_MD)
    return DocContext(tmp_path)


def test_include_tables_quotes_the_table_verbatim_with_its_command(ctx):
    out = include_tables("some.md", (1,), heading=True)(ctx)
    assert out == (
        "**Second part**\n\n| c | d |\n|---|---|\n| y | 0.25 |\n| z | 0.75 |\n\n"
        "From `benchmarks/results/some.md`: `python benchmarks/some.py --steps 3` (2026-11-26 15:53).\n"
    )
    with pytest.raises(ReportError, match="has 2 tables, no table 5"):
        include_tables("some.md", (5,))(ctx)
    with pytest.raises(ReportError, match="benchmarks/results/none.md: results file not found"):
        include_tables("none.md")(ctx)


def test_include_section_stops_at_the_next_heading(ctx):
    out = include_section("some.md", "First")(ctx)
    assert out.startswith("| a | b |\n|---|---|\n| x | 0.1 |\n\nFrom `benchmarks/results/some.md`")
    assert "0.25" not in out
    assert "Tail line." in include_section("some.md")(ctx)  # whole body after the title
    with pytest.raises(ReportError, match="no section 'Third'"):
        include_section("some.md", "Third")(ctx)


ILORA_MD = """# I-LoRA

Command: `python benchmarks/ilora.py --seq 8`
Date: 2026-11-26 13:17

| shape (in->out) | pass | ratio | branch ratio |
|---|---|---|---|
| 4->4 | forward | 0.266 | 0.293 |
| 4->11 | forward+backward | 0.101 | 0.168 |
| 11->4 | forward | 0.713 | 0.126 |
"""


def test_ilora_summary_quotes_both_ratios_over_every_row(ctx):
    (ctx.results_dir / "ilora.md").write_text(ILORA_MD)
    out = ilora_summary(ctx)
    assert "over all 3 shape x pass rows" in out
    assert "whole layer 0.10 (4->11 forward+backward) to 0.71 (11->4 forward)" in out
    assert "adapter branch alone 0.13 (11->4 forward) to 0.29 (4->4 forward)" in out
    assert "`python benchmarks/ilora.py --seq 8` (2026-11-26 13:17)" in out
    (ctx.results_dir / "ilora.md").write_text("| a |\n|---|\n| 1 |\n")
    with pytest.raises(ReportError, match="not the I-LoRA benchmark table"):
        ilora_summary(DocContext(ctx.root))


def test_verify_results_file_round_trip(ctx):
    checks = [
        Check("a_ilora", "out", 1.9e-6, 3.7e-7),
        Check("d_fbank", "fbank", 2.4e-5, 1.0e-5),
        Check("g_end2end", "ids", 0.0, 0.0, exact=True),
        Check("f_seg", "-", float("inf"), float("inf"), error="folder missing"),
    ]
    out = ctx.results_dir / "verify_reference.json"
    write_results(out, checks, 1e-4, ["verify-reference", "fixtures", "--out", "x.json"])
    data = json.loads(out.read_text())
    assert data["command"] == "python -m crab_core verify-reference fixtures --out x.json"
    assert data["checks"][3] == {
        "component": "f_seg",
        "name": "-",
        "max_abs": None,
        "max_rel": None,
        "exact": False,
        "ok": False,
        "error": "folder missing",
    }
    summary = verify_summary(ctx)
    assert "3 of 4 compared tensors are within the tolerance" in summary
    assert "worst absolute error is 2.4e-05 (d_fbank, fbank)" in summary
    assert "worst relative error 1.0e-05 (d_fbank)" in summary
    table = verify_table(ctx)
    assert "| d_fbank | 1 | 2.4e-05 | 1.0e-05 | ok |" in table
    assert "| f_seg | 1 | - | - | FAIL |" in table
    out.write_text('{"checks": []}')
    with pytest.raises(ReportError, match="no 'checks' list"):
        verify_summary(DocContext(ctx.root))


def test_seg_selection_table_puts_n_beside_each_value(ctx):
    arm = {
        "s4_miou": 0.76,
        "samples": 30,
        "by_scene": {"several visible objects": {"n": 14, "miou": 0.705}},
        "class_variance_share": 0.71,
        "prompt_swap_iou": 0.14,
        "prompt_swap_iou_several": 0.137,
        "prompt_swap_n_several": 112,
    }
    (ctx.results_dir / "sel.json").write_text(json.dumps({"shipped": arm}))
    out = seg_selection_table([("sel.json", "shipped", "v5")])(ctx)
    assert "| S4 per-frame IoU, all frames | 0.76 (n=30) |" in out
    assert "| S4 per-frame IoU, several visible objects | 0.70 (n=14) |" in out  # 0.705 -> 0.70 (half-even)
    assert "| prompt swap IoU, several-object frames | 0.14 (n=112 pairs) |" in out
    assert "empty target" not in out  # rows without a value anywhere are left out
    with pytest.raises(ReportError, match="no arm 'other'"):
        seg_selection_table([("sel.json", "other", "x")])(ctx)


def test_crab_tiny_facts_and_recipe_read_the_shipped_files(tmp_path):
    folder = tmp_path / "assets" / "crab-tiny"
    folder.mkdir(parents=True)
    from safetensors.torch import save_file

    save_file({"a": torch.zeros(1000, 1000), "b": torch.zeros(500)}, str(folder / "model.safetensors"))
    phase = {
        "name": "seg",
        "steps": 30,
        "batch_size": 8,
        "lr": 0.002,
        "lr_scale": {"lora": 0.25},
        "trainable": ["seg_module", "lora"],
        "objective": "lm",
        "mask_loss": True,
        "seg_swap_weight": 1.0,
        "tasks": {"s4": 1.0, "avss": 2.0},
        "weight_decay": 0.0,
        "warmup_ratio": 0.03,
        "max_grad_norm": 1.0,
    }
    card = {
        "recipe": {"phases": [phase], "data": {"synth_per_task": 7, "user_seed": 0}},
        "train_minutes": 1.5,
        "wall_minutes_with_setup": 2.25,
        "final_losses": {"seg": 0.31},
    }
    (folder / "training.json").write_text(json.dumps(card))
    ctx = DocContext(tmp_path)
    assert crab_tiny_facts(ctx).startswith(
        "1.00 M parameters (4.0 MB of float32 weights); trained from scratch"
    )
    assert "2.25 min wall clock, 1.5 min of them training steps" in crab_tiny_facts(ctx)
    recipe = crab_tiny_recipe(ctx)
    row = "| seg | 30 x 8 | 0.002, lora x0.25 | seg_module, lora | lm + mask, seg swap x1 | s4 1, avss 2 |"
    assert row + " 0.31 |" in recipe
    assert "warm-up 3% of the steps" in recipe and "7 samples per task" in recipe
    (folder / "model.safetensors").write_bytes(b"\xff" * 16)
    with pytest.raises(ReportError, match="not a readable safetensors file"):
        crab_tiny_facts(DocContext(tmp_path))


def test_intervals():
    lo, hi = wilson(6, 10)
    assert (round(lo, 4), round(hi, 4)) == (0.3127, 0.8318)
    assert wilson(0, 10)[0] == 0.0 and wilson(10, 10)[1] == 1.0
    lo, hi = hoeffding(0.5, 30)
    assert hi - 0.5 == pytest.approx((__import__("math").log(40) / 60) ** 0.5)
    vals = [1.0, 2.0, 3.0, 4.0, 10.0]
    b = bootstrap_mean(vals)
    assert b == bootstrap_mean(vals) and b[0] < 4.0 < b[1]
    with pytest.raises(ValueError):
        wilson(1, 0)


def _profile(path: Path, agree=0.2):
    data = {
        "num_heads": 3,
        "layers": [0, 1],
        "projections": ["q_proj", "up_proj"],
        "counts": {"avqa": 10, "avvp": 10},
        "primary_metric": {"avqa": "avqa_accuracy.accuracy", "avvp": "avvp.segment_type_av"},
        "ablation": {
            "avqa": {
                "normal": {"avqa_accuracy.accuracy": 0.6},
                "only_h0": {"avqa_accuracy.accuracy": 0.5},
                "only_h1": {"avqa_accuracy.accuracy": 0.9},
            },
            "avvp": {"normal": {"avvp.segment_type_av": 0.7}, "only_h0": {"avvp.segment_type_av": 0.6}},
        },
        "answers": {"avqa": {"normal": 1.0, "only_h0": agree}, "avvp": {"normal": 1.0, "only_h0": 0.0}},
        "routing_by_kind": {"avqa": {"video": [[[0.25, 0.25, 0.5]]]}, "avvp": {}},
        "routing": {
            "avqa": [[[0.3, 0.3, 0.4], [0.2, 0.3, 0.5]], [[0.35, 0.35, 0.3], [0.3, 0.4, 0.3]]],
            "avvp": [[[1 / 3] * 3] * 2] * 2,
        },
    }
    path.mkdir(parents=True, exist_ok=True)
    (path / "profile.json").write_text(json.dumps(data))


def test_profile_tables_state_n_and_intervals(tmp_path):
    _profile(tmp_path / "p")
    ctx = DocContext(tmp_path)
    abl = ablation_table("p")(ctx)
    assert "| avqa | 10 | avqa_accuracy.accuracy | 0.600 [0.31, 0.83] | 0.500 | **0.900** |" in abl
    assert "| avvp | 10 | avvp.segment_type_av | 0.700 - | 0.600 | - |" in abl  # pooled F1: no interval
    agree = agreement_table("p")(ctx)
    assert "| avqa | 10 | 0.20 [0.06, 0.51] |" in agree and "| avvp | 10 | 0.00 [0.00, 0.28] |" in agree
    kinds = kind_table([("p", "v5")])(ctx)
    assert "| video | 0.250 / 0.250 / 0.500 (1) |" in kinds and "| text |" not in kinds
    routing = routing_table([("p", "v5")])(ctx)
    assert "| avqa | 0.287 / 0.338 / 0.375 (10) | layer 0 up_proj head 2: 0.50 |" in routing
    _profile(tmp_path / "q", agree=0.9)
    two = routing_table([("p", "v4"), ("q", "v5")])(ctx)
    assert "v4: mean weight per head (n) | v5: mean weight per head (n)" in two
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "profile.json").write_text('{"counts": {}}')
    with pytest.raises(ReportError, match="not an `inspect profile` file"):
        ablation_table("bad")(ctx)


def test_attribution_table_skips_missing_levels_and_bootstraps(tmp_path):
    samples = [{"embedding_seconds_sounding": v, "pixel_frames_visible": None} for v in (0.5, 2.0, 3.0, 4.0)]
    path = tmp_path / "a.json"
    path.write_text(
        json.dumps({"num": 4, "n_steps": 8, "samples": samples, "mean_abs_delta": {"fbank": 1.5}})
    )
    out = attribution_table("a.json")(DocContext(tmp_path))
    row = next(x for x in out.splitlines() if x.startswith("| embeddings: seconds the object sounds"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[1] == "4" and cells[2].startswith("2.38 [") and cells[3] == "2.50"
    assert cells[4] == "0.75 [0.30, 0.95]"
    assert "pixels: frames" not in out and "fbank 1.50" in out


def test_every_builder_renders_on_the_repository_and_is_used():
    """Each builder reads committed files only, and each one feeds some doc (no dead builders)."""
    ctx = DocContext(REPO)
    docs = "\n".join(p.read_text(encoding="utf-8") for p in render_docs.doc_files(REPO))
    for name, build in render_docs.BUILDERS.items():
        assert build(ctx).strip(), name
        assert f"<!-- BEGIN generated:{name} -->" in docs, f"builder {name} is used by no doc"


#: decimal numbers (0.5, 1.9e-6, 85.8, 12 %) outside generated regions and code blocks
_NUMBER = re.compile(r"(?<![\w.`/-])\d+\.\d+(?:e-?\d+)?(?![\w.`/])|\b\d+ ?%")


@pytest.mark.parametrize(
    "doc",
    [
        "README.md",
        "assets/crab-tiny/MODEL_CARD.md",
        "docs/crab-tiny.md",
        "docs/benchmarks.md",
        "docs/cli.md",
        "docs/interpret/README.md",
    ],
)
def test_prose_quotes_no_hand_copied_measurements(doc):
    """Measured numbers live only in generated regions; prose refers to them."""
    text = (REPO / doc).read_text(encoding="utf-8")
    text = re.sub(r"<!-- BEGIN generated:([\w-]+) -->.*?<!-- END generated:\1 -->", "", text, flags=re.S)
    text = re.sub(r"```.*?```", "", text, flags=re.S)
    text = re.sub(r"`[^`]*`", "", text)
    found = [x for x in _NUMBER.findall(text) if x.replace(" ", "") != "95%"]  # the interval level
    assert found == [], doc


def test_ilora_ablation_region_quotes_the_report_or_says_it_has_not_run(tmp_path):
    ctx = DocContext(tmp_path)
    (tmp_path / "benchmarks" / "results").mkdir(parents=True)
    assert render_docs.BUILDERS["ilora_ablation"](ctx).startswith("_No results yet:")
    report = (
        "# I-LoRA ablation\n\nGenerated by `python benchmarks/ilora_ablation.py`.\n\n"
        "## Test values\n\n| a |\n|---|\n"
    )
    (ctx.results_dir / "ilora_ablation.md").write_text(report)
    out = render_docs.BUILDERS["ilora_ablation"](DocContext(tmp_path))
    assert out.startswith("Generated by `python benchmarks/ilora_ablation.py`.\n\n#### Test values\n\n| a |")
    assert out.rstrip().endswith(
        "From `benchmarks/results/ilora_ablation.md`: `python benchmarks/ilora_ablation.py`."
    )


def test_architecture_is_read_from_the_config(tmp_path):
    from crab_core.doc_crab_tiny import crab_tiny_architecture

    cfg = json.loads((REPO / "assets" / "crab-tiny" / "config.json").read_text())
    cfg["llm"]["num_hidden_layers"], cfg["lora"]["num_heads"] = 7, 5
    folder = tmp_path / "assets" / "crab-tiny"
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps(cfg))
    out = crab_tiny_architecture(DocContext(tmp_path))
    assert f"- LLM: 7 layers, {cfg['llm']['hidden_size']} wide" in out and "- I-LoRA: 5 heads" in out
    del cfg["vision"]
    (folder / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ReportError, match="not a crab model config"):
        crab_tiny_architecture(DocContext(tmp_path))
