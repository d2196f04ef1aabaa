"""Eight concurrent gradio_client users for 60 s on loopback against ``python app.py`` (crab-tiny):
every request must get its answer, each answer must be the user's own, and the server's memory
must stay bounded. Writes its section of benchmarks/results/app.md.

Each user has its own clip and task (AVE, AVQA, AVVP, ARIG, Ref-AVS, ... on different SynthAV
clips), chosen so that the users' correct answers all differ. Each user first runs alone (its
``/run`` answer and its ``/intervene`` answer with one head ablated); under load every reply must
equal the one that user got alone, so a reply computed on another user's clip or run fails.

Usage: ``python benchmarks/app_concurrency.py [--users 8] [--seconds 60] [--tokens 32]``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _app_server as srv  # noqa: E402

TASKS = ["ave", "avqa", "avvp", "arig", "ref-avs", "caption"]
VIEW = ("all", "all", "weights", "unit", "all")


def _text(pieces) -> str:
    return "".join(p["token"] for p in pieces) if isinstance(pieces, list) else repr(pieces)


class User:
    """One client: its sample, its answers when alone, and what it saw under load."""

    def __init__(self, url: str, row: dict, idx: int, tokens: int) -> None:
        from gradio_client import Client

        self.row, self.idx, self.tokens = row, idx, tokens
        self.client = Client(url, verbose=False)
        self.alone: tuple[str, str] | None = None
        self.latency: list[float] = []
        self.errors: list[str] = []
        self.checked = 0

    def run(self) -> str:
        from gradio_client import handle_file

        r = self.row
        out = self.client.predict(
            handle_file(r["video"]),
            None,
            None,
            r["task"],
            r.get("question") or "",
            r.get("frame_index") or 0,
            None,
            self.tokens,
            *VIEW,
            api_name="/run",
        )
        return _text(out[1])

    def intervene(self) -> str:
        out = self.client.predict(
            "ablate", [f"head {self.idx % 3}"], ["all"], False, "all", "all", api_name="/intervene"
        )
        return _text(out[1])

    def measure_alone(self) -> None:
        self.alone = (self.run(), self.intervene())

    def load(self, seconds: float) -> None:
        end = time.perf_counter() + seconds
        k = 0
        while time.perf_counter() < end:
            t0 = time.perf_counter()
            try:
                got, want = (self.run(), self.alone[0]) if k % 2 == 0 else (self.intervene(), self.alone[1])
                self.latency.append(time.perf_counter() - t0)
                self.checked += 1
                if got != want:
                    self.errors.append(
                        f"user {self.idx} ({self.row['task']}) got {got[:60]!r}, alone {want[:60]!r}"
                    )
            except Exception as exc:  # noqa: BLE001 - counted and reported
                self.errors.append(repr(exc)[:200])
            k += 1


def pick_users(url: str, n: int, tokens: int, seed: int) -> list[User]:
    """``n`` users whose alone answers (``/run``) are pairwise different, over varied tasks."""
    rows = srv.samples(3 * n, TASKS, seed=seed)
    users, seen = [], set()
    for row in rows:
        user = User(url, row, len(users), tokens)
        user.measure_alone()
        if user.alone[0] and user.alone[0] not in seen:
            seen.add(user.alone[0])
            users.append(user)
        if len(users) == n:
            return users
    raise RuntimeError(f"only {len(users)} of {n} candidate clips gave distinct answers")


def sample_rss(pid: int, stop: threading.Event, samples: list) -> None:
    import psutil

    proc = psutil.Process(pid)
    while not stop.is_set():
        samples.append((time.perf_counter(), proc.memory_info().rss / 2**20))
        stop.wait(1.0)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--users", type=int, default=8)
    p.add_argument("--seconds", type=float, default=60.0)
    p.add_argument("--tokens", type=int, default=32)
    p.add_argument("--seed", type=int, default=11)
    args = p.parse_args(argv)
    proc, url, _ = srv.start()
    stop, rss = threading.Event(), []
    try:
        users = pick_users(url, args.users, args.tokens, args.seed)
        mon = threading.Thread(target=sample_rss, args=(proc.pid, stop, rss), daemon=True)
        mon.start()
        threads = [threading.Thread(target=u.load, args=(args.seconds,)) for u in users]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        stop.set()
        mon.join()
    finally:
        srv.stop(proc)
    lat = [x for u in users for x in u.latency]
    errs = [e for u in users for e in u.errors]
    per_user = [u.checked for u in users]
    mem = [m for _, m in rss]
    first_half = mem[: len(mem) // 2] or mem
    ok = bool(lat) and not errs and all(per_user)
    text = "\n".join(
        [
            f"{args.users} gradio_client users, {args.seconds:.0f} s, "
            "each on its own 10-s SynthAV clip and task "
            f"({', '.join(u.row['task'] for u in users)}), "
            "alternating `/run` (uploaded every call) and `/intervene` "
            f"(head {{0,1,2}} ablated), answers capped at {args.tokens} tokens, queue concurrency 1; "
            f"{time.strftime('%Y-%m-%d %H:%M')}. Every reply is compared with the answer that user got when "
            "alone (the users' answers all differ, so a reply for another user's clip or run fails).",
            "",
            f"- requests answered and checked: {len(lat)} (per user: {per_user}); "
            f"wrong or failed: {len(errs)}" + (f" (first: {errs[0]})" if errs else ""),
            f"- latency under load: median {statistics.median(lat):.2f} s, max {max(lat):.2f} s"
            if lat
            else "- no answers",
            f"- server RSS: start {mem[0]:.0f} MiB, max {max(mem):.0f} MiB, end {mem[-1]:.0f} MiB "
            f"(max of first half {max(first_half):.0f} MiB)"
            if mem
            else "- no memory samples",
            f"- every user answered, each with its own answer: {'yes' if ok else '**no**'}",
        ]
    )
    srv.write_section("Concurrency (benchmarks/app_concurrency.py)", text)
    sys.stdout.write(text + "\n")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
