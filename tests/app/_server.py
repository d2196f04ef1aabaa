"""``python app.py`` in a child process (its PID is the server's own) under an address-space cap,
with a private TMPDIR, for tests of signals, temp folders, limits and memory."""

from __future__ import annotations

import os
import resource
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from tests._helpers import REPO
from tests.app.conftest import free_port

#: Address-space cap of a test server: crab-tiny serving (run + attribution) peaks near 1.8 GiB of
#: address space with one OpenMP thread, far below the 21 GB the 30-minute MP3 once took.
SERVER_CAP = 4 * 1024**3


class Server:
    """A running ``app.py``: ``proc``, ``url``, ``log`` (its stdout + stderr file)."""

    def __init__(
        self, tmpdir: Path, args: list[str] | None = None, cap: int = SERVER_CAP, env: dict | None = None
    ) -> None:
        self.tmpdir = Path(tmpdir)
        self.log = self.tmpdir.parent / f"server-{time.time_ns()}.log"
        port = free_port()
        self.url = f"http://127.0.0.1:{port}"
        base = {k: v for k, v in os.environ.items() if k != "GRADIO_TEMP_DIR"}
        self.env = {
            **base,
            "TMPDIR": str(self.tmpdir),
            "GRADIO_ANALYTICS_ENABLED": "False",
            "HF_HUB_OFFLINE": "1",
            "PYTHONPATH": str(REPO),
            "OMP_NUM_THREADS": "1",
            **(env or {}),
        }

        def _cap() -> None:
            resource.setrlimit(resource.RLIMIT_AS, (cap, cap))

        with open(self.log, "w") as out:
            self.proc = subprocess.Popen(
                [sys.executable, str(REPO / "app.py"), "--port", str(port), *(args or [])],
                cwd=REPO,
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                preexec_fn=_cap,
            )

    def wait_ready(self, timeout: float = 180.0) -> Server:
        t0 = time.monotonic()
        while time.monotonic() - t0 < timeout:
            if self.proc.poll() is not None:
                raise RuntimeError(f"app.py exited with {self.proc.returncode}:\n{self.output()}")
            try:
                with urllib.request.urlopen(self.url + "/config", timeout=2) as r:
                    if r.status == 200:
                        return self
            except OSError:
                time.sleep(0.2)
        self.kill()
        raise RuntimeError(f"app.py did not answer in {timeout} s:\n{self.output()}")

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.is_file() else ""

    def rss_mib(self) -> float:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        raise RuntimeError("no VmRSS")

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(30)


def crab_folders(tmpdir: Path) -> list[str]:
    """Names of the app's temporary folders in ``tmpdir``."""
    return sorted(
        p.name for p in Path(tmpdir).iterdir() if p.name.startswith(("crab-studio-", "crab-uploads-"))
    )


def ffmpeg(*args: str) -> None:
    subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-y", *args], check=True, timeout=120)
