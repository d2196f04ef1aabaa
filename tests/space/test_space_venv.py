"""The built Space runs on its own: build the folder, create a fresh virtual environment from the
folder's requirements.txt only, start its app.py on loopback (crab-tiny, CPU) and answer a /run with
gradio_client.

pip installs into the new environment from a wheel cache (``$CRAB_WHEELS``, default
``~/.cache/crab-studio/space-wheels``) filled by ``pip download`` of the same requirements.txt when
the cache does not satisfy it, so a warm run downloads nothing. On this project's machines
``torch==2.13.0`` resolves to the local CPU wheel (scripts/setup.sh), never the multi-GB CUDA build.
The phases' times (wall, and the install's CPU time, which the machine's load does not change) are
printed (``pytest -s``) and written to test-artifacts/space_venv.json.
"""

from __future__ import annotations

import json
import os
import resource
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from crab_core.space.build import build_space
from tests._helpers import REPO

pytestmark = pytest.mark.slow
START_TIMEOUT_S = 300


def _wheels() -> Path:
    return Path(os.environ.get("CRAB_WHEELS") or Path.home() / ".cache" / "crab-studio" / "space-wheels")


def _pip(python: Path, *args: str, timeout: float = 1500) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(python), "-m", "pip", "--disable-pip-version-check", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def _install(venv: Path, req: Path) -> str:
    """Install ``req`` into ``venv`` from the wheel cache, filling the cache first when it falls short."""
    py = venv / "bin" / "python"
    wheels = _wheels()
    wheels.mkdir(parents=True, exist_ok=True)
    # --no-compile: modules are byte-compiled when first imported, not all of torch at install time
    local = ("install", "-q", "--no-compile", "--no-index", "--find-links", str(wheels), "-r", str(req))
    if _pip(py, *local).returncode == 0:
        return "cache"
    fill = _pip(py, "download", "-q", "-d", str(wheels), "-r", str(req))
    assert fill.returncode == 0, fill.stderr[-3000:]
    done = _pip(py, *local)
    assert done.returncode == 0, done.stderr[-3000:]
    return "downloaded"


def _child_cpu() -> float:
    use = resource.getrusage(resource.RUSAGE_CHILDREN)
    return use.ru_utime + use.ru_stime


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_ready(proc: subprocess.Popen, url: str, log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"the Space exited with {proc.returncode}:\n{log.read_text()[-4000:]}")
        try:
            with urllib.request.urlopen(url, timeout=5) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(2)
    pytest.fail(f"the Space did not answer within {START_TIMEOUT_S} s:\n{log.read_text()[-4000:]}")


def test_built_space_installs_and_answers_run(tmp_path):
    from gradio_client import Client, handle_file

    times: dict[str, float] = {}
    t0 = time.perf_counter()
    folder = build_space(tmp_path / "space", "crab-tiny").out
    times["build_s"] = time.perf_counter() - t0
    t, cpu = time.perf_counter(), _child_cpu()
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    source = _install(venv, folder / "requirements.txt")
    times["venv_and_install_s"] = time.perf_counter() - t
    times["venv_and_install_cpu_s"] = _child_cpu() - cpu  # the machine's load does not count
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "CRAB_", "SPACE", "GRADIO_"))}
    env.update(GRADIO_SERVER_PORT=str(port), GRADIO_ANALYTICS_ENABLED="False", HF_HUB_OFFLINE="1")
    env["GRADIO_TEMP_DIR"] = str(tmp_path / "gradio")
    log = tmp_path / "space.log"
    t, cpu = time.perf_counter(), _child_cpu()
    with open(log, "w") as out:
        proc = subprocess.Popen(
            [str(venv / "bin" / "python"), "app.py"],
            cwd=folder,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        url = f"http://127.0.0.1:{port}/"
        _wait_ready(proc, url, log)
        times["start_s"] = time.perf_counter() - t
        t = time.perf_counter()
        client = Client(url, verbose=False)
        clip = handle_file(str(folder / "assets" / "examples" / "ave.mp4"))
        views = ("all", "all", "weights", "unit", "all")
        status, answer, *_ = client.predict(clip, None, None, "ave", "", 0, None, 64, *views, api_name="/run")
        times["run_s"] = time.perf_counter() - t
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    times["server_cpu_s"] = _child_cpu() - cpu  # start-up (imports, first byte-compiles) and the /run
    text = "".join(part["token"] for part in answer)
    assert status.startswith("answered") and "<event>" in text and "<range>" in text, (status, text)
    assert "serving crab-tiny on cpu" in log.read_text()
    times["total_s"] = time.perf_counter() - t0
    record = {"wheels": source, **{k: round(v, 1) for k, v in times.items()}}
    print("space venv test:", record)
    (REPO / "test-artifacts").mkdir(exist_ok=True)
    (REPO / "test-artifacts" / "space_venv.json").write_text(json.dumps(record, indent=2) + "\n")
