"""Start / stop ``python app.py`` as a child process whose PID is the server's own (benchmarks only)."""

from __future__ import annotations

import atexit
import json
import os
import shutil
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
    """Start the app with a private TMPDIR (removed by :func:`stop`); returns ``(process, url, seconds until
    it answers HTTP)``."""
    port = free_port()
    tmp = tempfile.mkdtemp(prefix="crab-bench-")
    env = {k: v for k, v in os.environ.items() if k != "GRADIO_TEMP_DIR"}
    env.update(GRADIO_ANALYTICS_ENABLED="False", PYTHONPATH=str(ROOT), TMPDIR=tmp)
    log = open(Path(tmp) / "server.log", "w")  # noqa: SIM115 - lives with the process
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "app.py"), "--port", str(port), *(extra or [])],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    proc.bench_dir = tmp
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
    proc.kill()  # keep its TMPDIR: the log says why
    proc.wait()
    raise RuntimeError(f"the app did not become ready in time; see {log.name}")


def stop(proc: subprocess.Popen) -> None:
    """Stop the server by its own PID (SIGTERM: it removes its folders) and remove its TMPDIR."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    if getattr(proc, "bench_dir", None):
        shutil.rmtree(proc.bench_dir, ignore_errors=True)


def samples(n: int, tasks: list[str], seed: int = 7) -> list[dict]:
    """``n`` SynthAV manifest rows over ``tasks`` (10-s clips; ``video`` is an absolute path), in a
    temporary folder removed at exit."""
    sys.path.insert(0, str(ROOT))
    from crab_core.synthav import generate_split

    out = Path(tempfile.mkdtemp(prefix="crab-bench-clips-"))
    atexit.register(shutil.rmtree, out, ignore_errors=True)
    manifest, _ = generate_split(out, "test", n, seed, tasks, image_size=112)
    rows = [json.loads(line) for line in manifest.read_text().splitlines()]
    for row in rows:
        row["video"] = str(manifest.parent / row["video"])
    return rows


def clips(n: int, task: str = "ave", seed: int = 7) -> list[Path]:
    """``n`` distinct 10-s SynthAV clips (distinct content, so no upload / encode cache hits)."""
    return [Path(row["video"]) for row in samples(n, [task], seed)]


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
