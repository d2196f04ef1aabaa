"""The I-LoRA ablation (issue #17): its statistics, its matched-rank arm and a --smoke run of every arm."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks"))

import ilora_ablation as abl  # noqa: E402
import ilora_ablation_report as rep  # noqa: E402


def _job(arm, seed, values, task=None):
    return {
        "arm": arm,
        "seed": seed,
        "task": task,
        "per_item": {"ave": {"accuracy": list(values)}},
        "lora": {"r": 8, "num_heads": 3},
        "adapter_params": {"all": 10, "effective": 10},
    }


def test_bootstrap_interval_of_a_constant_shift_is_that_shift():
    rng = np.random.default_rng(0)
    single = [rng.random(50) for _ in range(3)]
    multi = [s + 0.2 for s in single]
    lo, hi = rep.bootstrap_transfer(multi, single, rng)
    assert lo == pytest.approx(0.2) and hi == pytest.approx(0.2)


def test_aggregate_calls_negative_positive_and_noise():
    rng = np.random.default_rng(1)
    base = {s: (rng.random(200) < 0.5).astype(float) for s in (1, 2, 3)}
    jobs = []
    for s in (1, 2, 3):
        jobs.append(_job("single-task", s, base[s], task="ave"))
        jobs.append(_job("ilora-h3", s, np.clip(base[s] + 1, 0, 1)))  # every item right: clearly better
        jobs.append(_job("ilora-h1", s, np.zeros(200)))  # every item wrong: clearly worse
        noise = base[s].copy()  # three items lost, three gained: a zero-mean change
        noise[np.flatnonzero(base[s] == 1)[:3]] = 0
        noise[np.flatnonzero(base[s] == 0)[:3]] = 1
        jobs.append(_job("lora-matched", s, noise))
    res = rep.aggregate(jobs)
    assert res["transfer"]["ilora-h3"]["ave/accuracy"]["verdict"] == "positive"
    assert res["transfer"]["ilora-h1"]["ave/accuracy"]["verdict"] == "negative"
    assert res["transfer"]["lora-matched"]["ave/accuracy"]["verdict"] == "within noise"
    assert res["share"]["ilora-h1"] == {"numbers": 1, "negative": 1, "positive": 0}
    want = np.mean([np.clip(base[s] + 1, 0, 1).mean() - base[s].mean() for s in (1, 2, 3)])
    assert res["transfer"]["ilora-h3"]["ave/accuracy"]["diff"] == pytest.approx(want)


def test_matched_rank_matches_the_ilora_parameter_count():
    from crab_core.model.builder import build_model
    from crab_core.training.recipe import micro_config

    cfg = micro_config()
    ilora = abl.adapter_params(build_model(cfg, seed=0), cfg.lora.num_heads)["effective"]
    r = abl.matched_rank(cfg)
    plain_cfg = abl.arm_recipe(abl.SMOKE, 1, "lora-matched").model
    assert plain_cfg.lora.num_heads == 1 and plain_cfg.lora.r == r
    plain = abl.adapter_params(build_model(plain_cfg, seed=0), 1)["effective"]
    lower = abl.adapter_params(build_model(abl.arm_recipe(abl.SMOKE, 1, "ilora-h1").model, seed=0), 1)
    assert abs(plain - ilora) / ilora < 0.1  # the nearest rank
    assert lower["effective"] < 0.6 * ilora  # H=1 at the same rank is the smaller adapter


def test_single_task_steps_follow_the_multi_task_share():
    shares = abl.task_shares(abl.FULL)
    assert sum(shares.values()) == pytest.approx(1.0)
    r = abl.arm_recipe(abl.FULL, 1, "single-task", "avqa")
    assert r.phases[0].tasks == {"avqa": 1.0}
    assert r.phases[0].steps == round(abl.FULL.instruct_steps * shares["avqa"])
    assert r.phases[0].batch_size == abl.arm_recipe(abl.FULL, 1, "ilora-h3").phases[0].batch_size


@pytest.mark.slow
def test_smoke_runs_every_arm_and_writes_the_report(tmp_path):
    out, stem = tmp_path / "jobs", tmp_path / "res" / "ilora_ablation"
    cmd = [sys.executable, str(ROOT / "benchmarks" / "ilora_ablation.py"), "--smoke", "--out", str(out)]
    proc = subprocess.run(
        [*cmd, "--results", str(stem)], cwd=ROOT, capture_output=True, text=True, timeout=2400
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    res = json.loads(stem.with_suffix(".json").read_text())
    assert set(res["values"]) == set(abl.ARMS)
    assert set(res["transfer"]) == set(abl.MULTI_ARMS)
    assert {j["task"] for j in res["jobs"] if j["arm"] == "single-task"} == set(abl.SCORED)
    ent = res["router"]["ilora-h3"][0]["entropy"]
    assert 0.0 <= ent <= 1.0 + 1e-6
    assert stem.with_suffix(".png").stat().st_size > 5000
    assert "Negative-transfer share" in stem.with_suffix(".md").read_text()
    # rerunning finds every job finished and only rewrites the report
    again = subprocess.run(
        [*cmd, "--results", str(stem)], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert again.returncode == 0 and "phase" not in again.stderr
