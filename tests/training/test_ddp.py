"""2-process CPU training (gloo) equals one process on the same global batch: DDP and FSDP.

:func:`tests.training.conftest_recipes.dist_recipe` gives every process one item per micro-step
and no dropout, so two processes averaging their gradients compute what one process accumulating
twice as many micro-steps over the same items computes (``_dist_run.ReferenceTrainer``). Tight
gradient clipping makes the clip coefficient matter (under FSDP a per-shard norm, the bug this
guards against, moves weights by ~2e-3); evaluation and export must see the full weights.
"""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from crab_core.checkpoint.io import read_state_dict

ROOT = Path(__file__).resolve().parents[2]
LAUNCHER = Path(sys.executable).with_name("accelerate")
ENV = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1", CUDA_VISIBLE_DEVICES="")


def _port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _read(out: Path) -> tuple[dict, dict[str, torch.Tensor]]:
    return json.loads((out / "run.json").read_text()), read_state_dict(out / "model" / "model.safetensors")


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("dist-cache")


@pytest.fixture(scope="module")
def reference(tmp_path_factory, cache):
    out = tmp_path_factory.mktemp("dist") / "reference"
    cmd = [sys.executable, "-m", "tests.training._dist_run", str(out), str(cache), "reference"]
    proc = subprocess.run(cmd, cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return _read(out)


def _launch(tmp_path: Path, cache: Path, mode: str) -> tuple[dict, dict[str, torch.Tensor]]:
    if not LAUNCHER.exists():
        pytest.skip("accelerate launcher not installed")
    cmd = [
        str(LAUNCHER),
        "launch",
        "--config_file",
        str(ROOT / "configs/accelerate/cpu-2proc.yaml"),
        "--main_process_port",
        str(_port()),
        "-m",
        "tests.training._dist_run",
        str(tmp_path / "run"),
        str(cache),
        mode,
    ]
    proc = subprocess.run(cmd, cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return _read(tmp_path / "run")


def _assert_same_training(run: dict, weights: dict, reference: tuple[dict, dict]) -> None:
    ref_run, ref_weights = reference
    assert ref_run["processes"] == 1 and run["processes"] == 2
    assert len(run["history"]) == len(ref_run["history"]) == 6
    assert run["history"] == pytest.approx(ref_run["history"], abs=1e-5)
    assert weights.keys() == ref_weights.keys()
    moved = max(float((ref_weights[k] - w).abs().max()) for k, w in _initial_weights().items())
    assert moved > 1e-3  # training moved the weights 100x further than the tolerance below
    for k, w in weights.items():
        torch.testing.assert_close(w, ref_weights[k], rtol=0, atol=2e-5, msg=k)
    # the trainer's evaluation ran on the full weights: the same as the exported model's and the reference's
    assert run["eval"] == run["eval_exported"] == ref_run["eval"]
    assert run["answers"] == run["answers_exported"] == ref_run["answers"]


_INIT: dict[str, torch.Tensor] = {}


def _initial_weights() -> dict[str, torch.Tensor]:
    """The recipe's initial model weights (what training starts from)."""
    if not _INIT:
        from crab_core.training.module import build_train_module
        from tests.training.conftest_recipes import dist_recipe

        model = build_train_module(dist_recipe()).model
        _INIT.update({k: v for k, v in model.state_dict().items() if "rotary" not in k})
    return _INIT


def test_two_process_ddp_equals_one_process_on_the_same_global_batch(tmp_path, cache, reference):
    run, weights = _launch(tmp_path, cache, "dist")
    assert run["distributed_type"] == "DistributedType.MULTI_CPU"
    _assert_same_training(run, weights, reference)


def test_two_process_fsdp_equals_one_process_on_the_same_global_batch(tmp_path, cache, reference):
    run, weights = _launch(tmp_path, cache, "fsdp")
    assert run["distributed_type"] == "DistributedType.FSDP" and run["wrapped"] == "FullyShardedDataParallel"
    _assert_same_training(run, weights, reference)
