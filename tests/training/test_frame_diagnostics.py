"""Diagnostics of where the signal dies: box IoU, the grid projector, a frame_token_boxes smoke run."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks"))

import frame_token_boxes as ftb  # noqa: E402
from signal_paths import box_iou  # noqa: E402


def test_box_iou():
    a = torch.tensor([[0.0, 0.0, 2.0, 2.0], [0.0, 0.0, 1.0, 1.0], [0.0, 0.0, 1.0, 1.0]])
    b = torch.tensor([[1.0, 0.0, 3.0, 2.0], [0.0, 0.0, 1.0, 1.0], [2.0, 2.0, 3.0, 3.0]])
    assert box_iou(a, b).tolist() == pytest.approx([2 / 6, 1.0, 0.0])


def test_grid_projector_keeps_each_cell_in_its_token():
    proj = ftb.GridProjector(width=3, d_model=5, grid=2)
    x = torch.zeros(1, 16, 3)  # a 4 x 4 patch map
    x[0, 15] = torch.tensor([1.0, -1.0, 0.5])  # bottom-right patch -> last cell only
    out = proj(x)
    assert out.shape == (1, 4, 5)
    assert not torch.allclose(out[0, 3], out[0, 0])
    torch.testing.assert_close(out[0, 0], out[0, 1])
    torch.testing.assert_close(out[0, 0], out[0, 2])


def test_smoke_run_scores_every_design(tmp_path):
    args = ["--steps", "2", "--train-per-task", "1", "--test-per-task", "1", "--out", str(tmp_path)]
    assert ftb.main(args + ["--readout", "mlp", "--designs", "shipped-4,qformer-4,grid-2"]) == 0
    res = json.loads((tmp_path / "frame_token_boxes.json").read_text())
    assert [r["design"] for r in res["rows"]] == ["shipped-4", "qformer-4", "grid-2"]
    assert [r["tokens_per_frame"] for r in res["rows"]] == [4, 4, 4]
    assert all(0 <= r["boxes_iou_gt_0_5"] <= 1 and r["boxes"] > 0 for r in res["rows"])
    assert "--readout mlp" in (tmp_path / "frame_token_boxes.md").read_text()


def test_llm_side_arms_differ_only_in_the_llm_base():
    import llm_side

    from crab_core.training.recipe import get_recipe

    base = get_recipe("crab-tiny")
    inst = next(p for p in base.phases if p.name == "instruct")
    arms = {name: llm_side.arm_recipe(base, 30, 5e-4, extra) for name, extra in llm_side.ARMS.items()}
    for r in arms.values():
        (phase,) = r.phases
        assert (phase.steps, phase.lr, phase.tasks, phase.batch_size) == (
            30,
            5e-4,
            inst.tasks,
            inst.batch_size,
        )
    assert set(arms["lora+base"].phases[0].trainable) - set(arms["lora"].phases[0].trainable) == {"llm_base"}
    assert tuple(arms["lora"].phases[0].trainable) == tuple(inst.trainable)
