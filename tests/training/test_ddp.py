"""2-process CPU ``accelerate launch`` (gloo): every rank ends with identical weights."""

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def test_two_process_ranks_agree(tmp_path):
    launcher = Path(sys.executable).with_name("accelerate")
    if not launcher.exists():
        pytest.skip("accelerate launcher not installed")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    cmd = [
        str(launcher),
        "launch",
        "--config_file",
        str(ROOT / "configs/accelerate/cpu-2proc.yaml"),
        "--main_process_port",
        str(port),
        "-m",
        "tests.training._ddp_run",
        str(tmp_path / "run"),
        str(tmp_path / "cache"),
    ]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=230)
    assert proc.returncode == 0, proc.stderr[-3000:]
    ranks = [(tmp_path / "run" / f"rank{i}.txt").read_text().split("\n") for i in range(2)]
    assert ranks[0][0] == ranks[1][0] == "2"
    assert ranks[0][1] == ranks[1][1]  # identical weights on both ranks
    assert ranks[0][2] == ranks[1][2]  # and the same (all-reduced) history
