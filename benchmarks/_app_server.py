"""Start / stop ``python app.py`` as a child process whose PID is the server's own (benchmarks only)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(extra: list[str] | None = None, timeout: float = 120.0) -> tuple[subprocess.Popen, str, float]:
    """Start the app; returns ``(process, url, seconds until it answers HTTP)``."""
    port = free_port()
    env = dict(os.environ, GRADIO_ANALYTICS_ENABLED="False", PYTHONPATH=str(ROOT),
               GRADIO_TEMP_DIR=tempfile.mkdtemp(prefix="crab-bench-"))
    log = open(Path(env["GRADIO_TEMP_DIR"]) / "server.log", "w")  # noqa: SIM115 - lives with the process
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, str(ROOT / "app.py"), "--port", str(port), *(extra or [])],
                            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    while time.perf_counter() - t0 < timeout:
        if proc.poll() is not None:
            raise RuntimeError(f"the app exited with {proc.returncode}; see {log.name}")
        try:
            with urllib.request.urlopen(url + "/config", timeout=2) as r:
                if r.status == 200:
                    return proc, url, time.perf_counter() - t0
        except OSError:
            time.sleep(0.1)
    stop(proc)
    raise RuntimeError("the app did not become ready in time")


def stop(proc: subprocess.Popen) -> None:
    """Stop the server by its own PID."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def clips(n: int, task: str = "ave", seed: int = 7) -> list[Path]:
    """``n`` distinct 10-s SynthAV clips (distinct content, so no upload / encode cache hits)."""
    sys.path.insert(0, str(ROOT))
    import json

    from crab_core.synthav import generate_split

    out = Path(tempfile.mkdtemp(prefix="crab-bench-clips-"))
    manifest, _ = generate_split(out, "test", n, seed, [task], image_size=112)
    return [manifest.parent / json.loads(line)["video"] for line in manifest.read_text().splitlines()]


def write_section(title: str, body: str, path: Path = ROOT / "benchmarks" / "results" / "app.md") -> None:
    """Replace (or append) the ``## title`` section of the results file."""
    text = path.read_text() if path.is_file() else "# App benchmarks\n"
    head = f"## {title}\n"
    if head in text:
        before, rest = text.split(head, 1)
        after = rest.split("\n## ", 1)
        text = before + head + body.rstrip() + "\n" + ("\n## " + after[1] if len(after) > 1 else "")
    else:
        text = text.rstrip() + "\n\n" + head + body.rstrip() + "\n"
    path.write_text(text)
