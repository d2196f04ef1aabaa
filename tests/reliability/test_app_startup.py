"""``python app.py`` refuses a bad environment or model folder with one logged line and exit status
1, never a traceback (issue #14, app part)."""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests._helpers import REPO
from tests.app._server import SERVER_CAP

TINY = REPO / "assets" / "crab-tiny"


def _app(args: list[str], env: dict, timeout: float = 180) -> subprocess.CompletedProcess:
    def _cap() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (SERVER_CAP, SERVER_CAP))

    full = {
        **{k: v for k, v in os.environ.items() if k != "GRADIO_TEMP_DIR"},
        "GRADIO_ANALYTICS_ENABLED": "False",
        "HF_HUB_OFFLINE": "1",
        "OMP_NUM_THREADS": "1",
        **env,
    }
    return subprocess.run(
        [sys.executable, str(REPO / "app.py"), "--port", "1", *args],
        cwd=REPO,
        env=full,
        capture_output=True,
        text=True,
        timeout=timeout,
        preexec_fn=_cap,
    )


def _errors(out: subprocess.CompletedProcess) -> list[str]:
    text = out.stdout + out.stderr
    assert "Traceback" not in text, text[-3000:]
    return [line for line in text.splitlines() if " ERROR " in line]


def _unwritable(tmp_path: Path) -> Path:
    """A folder this process cannot write to (root ignores permissions: then a path below a file)."""
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    if not os.access(ro, os.W_OK):
        return ro
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    return blocker / "gradio"


def test_unwritable_gradio_temp_dir_fails_before_loading_the_model(tmp_path):
    bad = _unwritable(tmp_path)
    t0 = time.monotonic()
    out = _app(["--random"], {"GRADIO_TEMP_DIR": str(bad), "TMPDIR": str(tmp_path)})
    errors = _errors(out)
    assert out.returncode == 1
    assert len(errors) == 1 and f"GRADIO_TEMP_DIR ({bad}) is not a writable folder" in errors[0]
    assert "ready" not in out.stderr and time.monotonic() - t0 < 60  # no model was loaded
    assert not [p for p in tmp_path.iterdir() if p.name.startswith("crab-")]


@pytest.mark.skipif(not (TINY / "model.safetensors").is_file(), reason="crab-tiny weights absent")
def test_invalid_training_json_is_one_line(tmp_path):
    model = tmp_path / "model"
    model.mkdir()
    for name in ("config.json", "model.safetensors", "tokenizer"):
        os.symlink(TINY / name, model / name)
    (model / "training.json").write_text('{"data": [1, 2,')  # truncated JSON
    json.loads((TINY / "config.json").read_text())  # the rest of the folder is valid
    out = _app(["--model", str(model)], {"TMPDIR": str(tmp_path)})
    errors = _errors(out)
    assert out.returncode == 1
    assert len(errors) == 1 and "cannot load the model" in errors[0] and "training.json" in errors[0]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith("crab-")]  # cleaned up on the way out
